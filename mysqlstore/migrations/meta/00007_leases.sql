-- +goose Up
-- Leases of the singleton jobs whose work is in MySQL (each shard's outbox
-- relay, the expiry sweeper): a lease lives where its job works, so an outage
-- of Redis never stops them (mysqlstore/leases.go). until is by the
-- database's clock.
CREATE TABLE leases (
  name  VARCHAR(255) NOT NULL PRIMARY KEY,
  token CHAR(32)     NOT NULL,
  until DATETIME(6)  NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE leases;
