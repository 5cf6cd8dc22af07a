-- +goose Up
-- The waiting rooms' lines (see docs/protocols.md, "The waiting room"): the
-- truth of each line, so that a Redis loss can neither reorder nor forget it.
-- One row per ticket that entered a line. line_key orders the line (binary
-- collation, lowest first): '0' + the draw's HMAC hex for a ticket that entered
-- before starts_at, '1' + the arrival in µs (20 digits) + the ticket id after.
-- live_user is the user id while the ticket waits (NULL once it left the
-- line), so a user has at most one waiting ticket per sale. A ticket is drawn
-- (its score published by /draw/scores) when its key starts with 0 and it had
-- not left the line before starts_at.
CREATE TABLE waiting_line (
  ticket_id  CHAR(36)    NOT NULL PRIMARY KEY,
  sale_id    VARCHAR(64) NOT NULL,
  user_id    VARCHAR(64) NOT NULL,
  quantity   INT         NOT NULL,
  line_key   VARCHAR(96) NOT NULL,
  status     VARCHAR(16) NOT NULL,
  entered_at DATETIME(6) NOT NULL,
  left_at    DATETIME(6) NULL,
  live_user  VARCHAR(64) NULL,
  UNIQUE KEY ux_live (sale_id, live_user),
  KEY ix_line (sale_id, line_key, left_at),
  KEY ix_status (sale_id, status, line_key)
) ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin;

-- How many tickets wait in each line: the row a late arrival's entry updates
-- conditionally (fewer than available + waitlist waiting), in the transaction
-- that inserts it, and every ticket leaving the line decrements. Created with
-- the sale.
CREATE TABLE waiting_counts (
  sale_id VARCHAR(64) NOT NULL PRIMARY KEY,
  n       INT         NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin;

-- +goose Down
DROP TABLE waiting_counts;
DROP TABLE waiting_line;
