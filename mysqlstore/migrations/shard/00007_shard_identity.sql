-- +goose Up
-- This database's identity as an order shard: one row (one = 1) holding a
-- random id, written by `flashsale migrate` when it is missing and never
-- changed. It carries no position: the meta database's shard_list alone says
-- which position each shard has (mysqlstore/shardlist.go).
CREATE TABLE shard_identity (
  one        TINYINT     NOT NULL PRIMARY KEY,
  shard_id   CHAR(36)    NOT NULL,
  created_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE shard_identity;
