-- +goose Up
-- Stock of sales with inventory 'mysql': one hot row per sale, held with a
-- conditional update (the simple design flashsale bench compares against).
CREATE TABLE inventory (
  sale_id   VARCHAR(64) NOT NULL PRIMARY KEY,
  total     INT         NOT NULL,
  available INT         NOT NULL,
  held      INT         NOT NULL,
  sold      INT         NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Per-ticket hold state of those sales (H held, S sold, R released, X sold out),
-- so that every operation on the hot row is idempotent per ticket.
CREATE TABLE inventory_holds (
  ticket_id  VARCHAR(64) NOT NULL PRIMARY KEY,
  sale_id    VARCHAR(64) NOT NULL,
  quantity   INT         NOT NULL,
  state      CHAR(1)     NOT NULL,
  updated_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE inventory_holds;
DROP TABLE inventory;
