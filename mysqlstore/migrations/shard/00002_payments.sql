-- +goose Up
-- One row per payment notification that changed something or was answered
-- refund_required, so that a repeat of the same payment_id changes nothing.
CREATE TABLE payments (
  payment_id   VARCHAR(128) NOT NULL PRIMARY KEY,
  order_id     VARCHAR(64)  NOT NULL,
  amount_cents BIGINT       NOT NULL,
  outcome      VARCHAR(20)  NOT NULL,
  created_at   DATETIME(6)  NOT NULL,
  KEY ix_order (order_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE payments;
