-- +goose Up
-- The sweeper's pass over closed orders (delayq: expired or cancelled orders
-- whose stock and ticket copy Redis has not followed) reads each shard's
-- orders closed since its mark, in (updated_at, order_id) order.
ALTER TABLE orders ADD KEY ix_closed (status, updated_at);

-- +goose Down
ALTER TABLE orders DROP KEY ix_closed;
