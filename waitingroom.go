package flashsale

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// DrawSeedBytes is the length of a waiting room's secret draw seed.
const DrawSeedBytes = 32

// WaitingRoom is a sale's optional fair line: from OpensAt to the sale's
// StartsAt a purchase enters the line instead of racing for stock, and at
// StartsAt the line is drawn by DrawScore with Seed. Waitlist tickets after the
// last admitted one keep waiting once every unit is held or sold.
//
// Seed is secret until StartsAt: it never leaves the server in JSON (only
// Commitment does, from creation on).
type WaitingRoom struct {
	OpensAt  time.Time `json:"opens_at"`
	Waitlist int       `json:"waitlist"`
	Seed     []byte    `json:"-"`
}

// Commitment is the draw's published commitment: lower-case hex of SHA-256
// over the seed's bytes.
func (w *WaitingRoom) Commitment() string { return DrawCommitment(w.Seed) }

// Drawn reports whether the line is drawn at now (the seed may be revealed).
func (s *Sale) Drawn(now time.Time) bool {
	return s.WaitingRoom != nil && !now.Before(s.StartsAt)
}

// DrawCommitment returns lower-case hex of SHA-256(seed).
func DrawCommitment(seed []byte) string {
	sum := sha256.Sum256(seed)
	return hex.EncodeToString(sum[:])
}

// DrawScore returns a user's place-deciding value in a drawn line:
// lower-case hex of HMAC-SHA256(key = seed bytes, message = user id bytes).
// The line is ordered by it, lowest first.
func DrawScore(seed []byte, userID string) string {
	m := hmac.New(sha256.New, seed)
	m.Write([]byte(userID))
	return hex.EncodeToString(m.Sum(nil))
}

// LineKey is the place-deciding key of a ticket that enters the sale's line
// at `at` (the ingress's clock): keys order the line, lowest first, bytewise.
// Before StartsAt it is "0" + DrawScore (arrival inside the window gives no
// advantage); from StartsAt on "1" + the arrival in µs since the Unix epoch
// (20 digits) + the ticket id: behind every drawn ticket, in arrival order.
func (s *Sale) LineKey(userID, ticketID string, at time.Time) string {
	if at.Before(s.StartsAt) {
		return "0" + DrawScore(s.WaitingRoom.Seed, userID)
	}
	return fmt.Sprintf("1%020d%s", at.UnixMicro(), ticketID)
}

// NewTicketID mints a random ticket id for user, of the shape MintedFor
// recognises (a UUID of version 8 whose last 8 hex digits are the user's
// tag). The stock store mints the ids of purchases (see TicketClaim); a
// waiting room's line, which claims nothing there, mints its own.
func NewTicketID(userID string) string {
	var b [11]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	h := hex.EncodeToString(b[:])
	tag := sha1.Sum([]byte("u|" + userID))
	return h[:8] + "-" + h[8:12] + "-8" + h[12:15] + "-8" + h[15:18] + "-" + h[18:22] + hex.EncodeToString(tag[:4])
}
