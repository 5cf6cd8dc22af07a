-- +goose Up
-- The order shards of this deployment, in the order of the configured list (a
-- user's shard is flashsale.ShardOf(user_id, N) over it): one row per position,
-- naming the shard by the id in its own shard_identity row. Written once, by
-- the first `flashsale migrate` that finds it empty, and never changed; every
-- process compares its list with it before it starts (mysqlstore/shardlist.go).
-- label (database and address when recorded: a database name is at most 64
-- characters, a host name 253) is for messages only: it holds no
-- password and is never compared.
CREATE TABLE shard_list (
  position    INT          NOT NULL PRIMARY KEY,
  shard_id    CHAR(36)     NOT NULL,
  label       VARCHAR(512) NOT NULL,
  recorded_at DATETIME(6)  NOT NULL,
  UNIQUE KEY uq_shard (shard_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE shard_list;
