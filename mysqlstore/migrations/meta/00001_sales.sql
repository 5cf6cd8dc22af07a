-- +goose Up
CREATE TABLE sales (
  id                     VARCHAR(64)  NOT NULL PRIMARY KEY,
  sku                    VARCHAR(128) NOT NULL,
  name                   VARCHAR(255) NOT NULL,
  stock                  INT          NOT NULL,
  price_cents            BIGINT       NOT NULL,
  per_user_limit         INT          NOT NULL,
  starts_at              DATETIME(6)  NOT NULL,
  ends_at                DATETIME(6)  NOT NULL,
  payment_window_seconds INT          NOT NULL,
  res_opens_at           DATETIME(6)  NULL,
  res_closes_at          DATETIME(6)  NULL,
  res_capacity           INT          NULL,
  inventory              VARCHAR(16)  NOT NULL DEFAULT 'redis',
  created_at             DATETIME(6)  NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE reservations (
  sale_id     VARCHAR(64) NOT NULL,
  user_id     VARCHAR(64) NOT NULL,
  reserved_at DATETIME(6) NOT NULL,
  PRIMARY KEY (sale_id, user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE reservations;
DROP TABLE sales;
