-- +goose Up
-- One row per order; order_id equals the ticket id that made it, so a redelivered
-- purchase can never make a second order. `live` is 1 while the order is unpaid and
-- NULL otherwise, so uq_live allows one unpaid order per user and sale.
CREATE TABLE orders (
  order_id     VARCHAR(64)  NOT NULL PRIMARY KEY,
  sale_id      VARCHAR(64)  NOT NULL,
  user_id      VARCHAR(64)  NOT NULL,
  quantity     INT          NOT NULL,
  amount_cents BIGINT       NOT NULL,
  status       VARCHAR(20)  NOT NULL,
  created_at   DATETIME(6)  NOT NULL,
  pay_by       DATETIME(6)  NOT NULL,
  paid_at      DATETIME(6)  NULL,
  payment_id   VARCHAR(128) NULL,
  updated_at   DATETIME(6)  NOT NULL,
  live         TINYINT AS (IF(status = 'pending_payment', 1, NULL)) PERSISTENT,
  UNIQUE KEY uq_live (sale_id, user_id, live),
  KEY ix_sale_status (sale_id, status),
  KEY ix_due (status, pay_by)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Final outcomes of tickets that made no order (sold_out, failed), so a ticket
-- survives the loss of its Redis copy.
CREATE TABLE ticket_outcomes (
  ticket_id  VARCHAR(64) NOT NULL PRIMARY KEY,
  sale_id    VARCHAR(64) NOT NULL,
  user_id    VARCHAR(64) NOT NULL,
  quantity   INT         NOT NULL,
  status     VARCHAR(20) NOT NULL,
  created_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Transactional outbox: written in the transaction of each order transition and
-- published by the relay; sent_at is set only after the broker confirmed.
CREATE TABLE outbox (
  id          BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
  event_id    CHAR(36)    NOT NULL,
  order_id    VARCHAR(64) NOT NULL,
  event_type  VARCHAR(32) NOT NULL,
  payload     MEDIUMBLOB  NOT NULL,
  created_at  DATETIME(6) NOT NULL,
  sent_at     DATETIME(6) NULL,
  UNIQUE KEY uq_event (event_id),
  KEY ix_unsent (sent_at, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE outbox;
DROP TABLE ticket_outcomes;
DROP TABLE orders;
