-- +goose Up
-- A rebuild of a sale's Redis keys reads every ticket of the sale that MySQL
-- decided (redisstore's rebuild.go, mysqlstore.SaleTickets), so the outcomes
-- are read by sale.
CREATE INDEX ix_sale ON ticket_outcomes (sale_id);

-- +goose Down
DROP INDEX ix_sale ON ticket_outcomes;
