-- +goose Up
-- One row per (sale, user) of this shard's users: the lock that serialises the
-- transactions deciding how many units a user has in a sale, so that the
-- per_user_limit read in one of them counts what the others committed (see
-- mysqlstore/userlocks.go). The order transaction and a late payment's
-- transaction take their rows first, with INSERT ... ON DUPLICATE KEY UPDATE
-- (an exclusive lock on the row, created on first use). The rows carry nothing
-- else; expiry, cancel and returns only lower a user's units and take no lock.
CREATE TABLE user_sale_locks (
  sale_id VARCHAR(64) NOT NULL,
  user_id VARCHAR(64) NOT NULL,
  PRIMARY KEY (sale_id, user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE user_sale_locks;
