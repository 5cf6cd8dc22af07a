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
)

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

// OrderOutcome is what creating one order did.
type OrderOutcome int

const (
	// OrderCreated: the order and its order.created outbox row were committed now.
	OrderCreated OrderOutcome = iota
	// OrderExisted: the order was already stored (a redelivery); nothing was written.
	OrderExisted
	// OrderLiveConflict: the user already has another unpaid order in the sale;
	// nothing was written.
	OrderLiveConflict
)

// OrderResult is the outcome of creating one order; Current is the order as stored
// afterwards (nil for OrderLiveConflict).
type OrderResult struct {
	Outcome OrderOutcome
	Current *Order
}
