-- +goose Up
-- An order holds one row per sale it bought (a bundle has 2 to 10), all with
-- the order's id, status, dates and payment: a transition updates them together
-- in one statement. Per-sale reads (the per-user limit, the unique unpaid order
-- per user and sale, the stock cap, rebuilds and reconciliation) read rows,
-- so a bundle counts in each of its sales exactly as an order of that sale.
-- `returned` is how many of the row's units were given back after payment.
ALTER TABLE orders
  DROP PRIMARY KEY,
  ADD PRIMARY KEY (order_id, sale_id),
  ADD COLUMN returned INT NOT NULL DEFAULT 0;

-- A bundle ticket's lines (JSON), for a decision that made no order.
ALTER TABLE ticket_outcomes ADD COLUMN items VARCHAR(2048) NULL;

-- One row per return applied to an order of this shard, so that the same
-- return_id again changes nothing (see also the meta database's request_keys).
CREATE TABLE order_returns (
  return_id  VARCHAR(128) NOT NULL PRIMARY KEY,
  order_id   VARCHAR(64)  NOT NULL,
  items      VARCHAR(2048) NOT NULL,
  created_at DATETIME(6)  NOT NULL,
  KEY ix_order (order_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE order_returns;
ALTER TABLE ticket_outcomes DROP COLUMN items;
ALTER TABLE orders DROP COLUMN returned, DROP PRIMARY KEY, ADD PRIMARY KEY (order_id);
