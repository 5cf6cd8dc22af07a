package flashsale

// ClaimOutcome is what a claim on a user's live-ticket slot decided.
type ClaimOutcome int

const (
	// Claimed: the new ticket is now the user's live ticket; publish it.
	Claimed ClaimOutcome = iota
	// Existing: the user already has a live ticket; answer with it.
	Existing
	// LimitReached: the user holds or bought per_user_limit units.
	LimitReached
	// SoldOut: fewer than the requested units are available.
	SoldOut
	// Refused: the user's live ticket was refused by its hold (sold out, or
	// failed); it stays live until its refusal is recorded in the book of
	// record, which says whether it is final yet (see admission's claim).
	Refused
	// Unconfirmed: the user's live ticket is claimed but its publish is not
	// confirmed yet: it is being queued right now (a double click), or the
	// ingress that claimed it died before publishing. Its id must not be
	// handed out until it is (see admission's claim).
	Unconfirmed
)

// TicketClaim is the ticket a claim asks for: ID when it is known (a
// bundle's later lines claim the id its first line got), else one the stock
// store mints from Sales (the ticket's sale ids, in order), the user and what
// the sale knows of their earlier tickets, so that a purchase retried while
// its ticket is queued comes out as the same ticket whatever Redis lost
// meanwhile. Nonce names the request, so that a claim run twice for it (a
// retried command) is still its own.
type TicketClaim struct {
	ID    string
	Sales []string
	Nonce string
}

// HoldKind is a ticket's state in the stock store.
type HoldKind byte

const (
	HoldNone     HoldKind = 0
	HoldHeld     HoldKind = 'H' // units held for the ticket's unpaid order
	HoldSold     HoldKind = 'S' // units sold: the order is paid
	HoldReleased HoldKind = 'R' // units given back (expired, cancelled, dead-lettered); never held again
	HoldSoldOut  HoldKind = 'X' // refused: not enough units were available
	HoldRefused  HoldKind = 'F' // refused: not the user's live ticket, or over the per-user limit
)

// Hold is a ticket's state in the stock store; Quantity is set for held and sold.
type Hold struct {
	Kind     HoldKind
	Quantity int
}

// CreateOutcome is what creating one order did.
type CreateOutcome int

const (
	// CreateNew: the order and its order.created outbox row were committed now.
	CreateNew CreateOutcome = iota
	// CreateExisted: the order was already stored (a redelivery); nothing was written.
	CreateExisted
	// CreateLiveConflict: the user already has another unpaid order in the sale;
	// nothing was written.
	CreateLiveConflict
	// CreateDecided: the ticket was already given up without an order (a dead
	// letter, a released hold, an earlier refusal recorded its decision first);
	// nothing was written. OrderResult.Decision is that decision.
	CreateDecided
	// CreateSoldOut: the sale's stock cap in MySQL has no unit left for the order,
	// on its shard or any other; nothing was written. Redis said otherwise, so
	// Redis is behind MySQL.
	CreateSoldOut
	// CreateOverLimit: the user's pending and paid orders of the sale leave no room
	// under per_user_limit; nothing was written.
	CreateOverLimit
)

// OrderResult is the outcome of creating one order; Current is the order as stored
// afterwards (set for CreateNew and CreateExisted only).
type OrderResult struct {
	Outcome CreateOutcome
	Current *Order
	// Decision is the recorded final status of a ticket that made no order
	// (CreateDecided only): TicketSoldOut or TicketFailed.
	Decision TicketStatus
}
