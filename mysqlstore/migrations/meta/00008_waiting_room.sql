-- +goose Up
-- A sale's optional waiting room (see docs/protocols.md, "The waiting room"):
-- when the line opens, how many tickets keep waiting once every unit is taken,
-- and the draw's secret 32-byte seed (revealed by the API from starts_at on;
-- its SHA-256 is published at creation). All NULL for a sale without one.
ALTER TABLE sales
  ADD COLUMN wr_opens_at DATETIME(6) NULL,
  ADD COLUMN wr_waitlist INT         NULL,
  ADD COLUMN wr_seed     BINARY(32)  NULL;

-- +goose Down
ALTER TABLE sales DROP COLUMN wr_seed, DROP COLUMN wr_waitlist, DROP COLUMN wr_opens_at;
