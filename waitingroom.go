package flashsale

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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
