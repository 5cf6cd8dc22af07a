package mysqlstore

import (
	"context"
	"database/sql"
	"sort"

	"github.com/flashsale/flashsale"
)

// The per-user limit under concurrency.
//
// A user's units in a sale (pending_payment and paid orders, less returned)
// go up in two transactions on the user's shard: the order transaction
// (createTx) and a late payment that revives an expired order (Pay). Each
// reads the units, then writes an order that counts. Two of them at once
// would both read before either committed (write skew): a user paying two
// expired orders at the same moment, or paying one while the worker commits
// a new one, would pass per_user_limit. So both take the rows of their
// (sale, user) pairs in user_sale_locks as their first statement, and the
// holder of a pair's row is alone in raising that user's units in that sale
// until it commits. InnoDB takes a transaction's snapshot at its first plain
// read, which comes after the lock, so the limit read sees everything an
// earlier holder committed; nothing else makes those reads locking.
//
// Transitions that lower a user's units (expiry, cancel, return) take no
// lock: a limit read that misses one refuses what a later read would allow,
// never the other way round.

// userSale is a user's place in one sale: the key of the per-user limit and of
// its lock.
type userSale struct{ sale, user string }

// userSalesOf lists the (sale, user) pairs of the orders' items: a bundle has
// one per sale line.
func userSalesOf(orders ...*flashsale.Order) []userSale {
	var keys []userSale
	for _, o := range orders {
		for _, it := range o.Items {
			keys = append(keys, userSale{it.SaleID, o.UserID})
		}
	}
	return keys
}

// lockUserSales takes, in tx, the lock of every pair in keys (see above) and
// holds them until tx ends. One statement however many pairs: an insert of
// their rows (a row is made on first use) whose duplicates update nothing but
// take the existing row's exclusive lock. The pairs are locked in one order
// (sale, then user; duplicates dropped) in every transaction, so two
// transactions locking overlapping sets wait for each other instead of
// deadlocking. It must be tx's first statement that reads a table without a
// lock (see above). keys is reordered.
func lockUserSales(ctx context.Context, tx *sql.Tx, keys []userSale) error {
	if len(keys) == 0 {
		return nil
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].sale != keys[j].sale {
			return keys[i].sale < keys[j].sale
		}
		return keys[i].user < keys[j].user
	})
	args := make([]any, 0, 2*len(keys))
	for i, k := range keys {
		if i > 0 && k == keys[i-1] {
			continue
		}
		args = append(args, k.sale, k.user)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO user_sale_locks (sale_id, user_id) VALUES `+
		placeholders(len(args)/2, 2)+` ON DUPLICATE KEY UPDATE user_id = user_id`, args...)
	return err
}
