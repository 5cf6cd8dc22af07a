-- +goose Up
-- How many users reserved each sale: the row the capacity check updates
-- conditionally, in the transaction that inserts the reservation (see
-- mysqlstore/reservations.go). Created lazily by the sale's first reservation.
CREATE TABLE reservation_counts (
  sale_id VARCHAR(64) NOT NULL PRIMARY KEY,
  n       INT         NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Reservations made before this table existed, if any.
INSERT INTO reservation_counts (sale_id, n)
  SELECT sale_id, COUNT(*) FROM reservations GROUP BY sale_id;

-- +goose Down
DROP TABLE reservation_counts;
