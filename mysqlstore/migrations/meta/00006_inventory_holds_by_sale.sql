-- +goose Up
-- The reconciler reads a mysql-inventory sale's hold of every ticket.
ALTER TABLE inventory_holds ADD KEY ix_sale (sale_id);

-- +goose Down
ALTER TABLE inventory_holds DROP KEY ix_sale;
