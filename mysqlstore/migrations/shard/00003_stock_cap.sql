-- +goose Up
-- The stock cap (see mysqlstore/allotments.go): each shard may have at most
-- `allotted` units of a sale in its pending_payment + paid orders; `used` is how
-- many it has. The order transaction moves `used` up only while it stays within
-- `allotted`, and expiry and cancel move it down in the transaction of the
-- transition, so the cap holds whatever state Redis is in. A sale's allotments
-- start as an even split of its stock over the shards (created on first use)
-- and move between shards through logged transfers.
CREATE TABLE sale_allotments (
  sale_id    VARCHAR(64) NOT NULL PRIMARY KEY,
  allotted   INT         NOT NULL,
  used       INT         NOT NULL,
  updated_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Units of allotment moved from shard from_shard to shard to_shard. The donor
-- writes its row (delivered_at NULL) in the transaction that lowers its
-- allotment; the recipient writes a row with the same transfer_id in the
-- transaction that raises its own (the primary key makes the credit happen once);
-- the donor's row is then marked delivered. A donor row still undelivered is a
-- transfer in flight, which any later borrower completes.
CREATE TABLE allotment_transfers (
  transfer_id  CHAR(36)    NOT NULL PRIMARY KEY,
  sale_id      VARCHAR(64) NOT NULL,
  from_shard   INT         NOT NULL,
  to_shard     INT         NOT NULL,
  units        INT         NOT NULL,
  created_at   DATETIME(6) NOT NULL,
  delivered_at DATETIME(6) NULL,
  KEY ix_pending (sale_id, delivered_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- ticket_outcomes becomes the record of every ticket's decision: the order
-- transaction inserts 'ordered' for its ticket, and whatever gives up a ticket
-- that made no order inserts 'failed' or 'sold_out' first, so the primary key
-- decides between a late commit and a release: the first one stands.
INSERT IGNORE INTO ticket_outcomes (ticket_id, sale_id, user_id, quantity, status, created_at)
  SELECT order_id, sale_id, user_id, quantity, 'ordered', created_at FROM orders;

-- +goose Down
DELETE FROM ticket_outcomes WHERE status = 'ordered';
DROP TABLE allotment_transfers;
DROP TABLE sale_allotments;
