-- +goose Up
-- Caller-chosen ids that must name one request across every shard: a payment_id
-- is bound to the order it first paid, a return_id to its order and items.
-- The first request to insert a key owns it; another request with the same key
-- is a conflict.
CREATE TABLE request_keys (
  kind       VARCHAR(16)   NOT NULL,
  key_id     VARCHAR(128)  NOT NULL,
  request    VARCHAR(2048) NOT NULL,
  created_at DATETIME(6)   NOT NULL,
  PRIMARY KEY (kind, key_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE request_keys;
