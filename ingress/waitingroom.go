package ingress

import (
	"context"
	"encoding/hex"
	"net/http"
	"regexp"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale"
)

// WaitingLine is the book of record's part in the waiting rooms' lines (see
// docs/protocols.md, "The waiting room"): what the sale view and the draw's
// endpoints read.
type WaitingLine interface {
	// LineEntries counts the tickets waiting in the sale's line.
	LineEntries(ctx context.Context, saleID string) (int, error)
	// DrawnEntries counts the tickets of the sale's draw: those waiting in
	// its line at starts_at.
	DrawnEntries(ctx context.Context, sale *flashsale.Sale) (int, error)
	// DrawScores returns at most limit of the draw's scores greater than
	// after ("" for the first), ascending.
	DrawScores(ctx context.Context, sale *flashsale.Sale, after string, limit int) ([]string, error)
}

// MaxDrawScores is the most scores /draw/scores answers at once, and its
// default page.
const MaxDrawScores = 1000

// lowerHex is the shape of a score: lower-case hex.
var lowerHex = regexp.MustCompile(`^[0-9a-f]{1,64}$`)

// lineEntries is the sale view's waiting_room.entries (0 without a
// WaitingLine).
func (s *Server) lineEntries(ctx context.Context, sale *flashsale.Sale) (int, error) {
	if s.cfg.WaitingLine == nil {
		return 0, nil
	}
	n, err := s.cfg.WaitingLine.LineEntries(ctx, sale.ID)
	if err != nil {
		return 0, flashsale.Unavailable(err, "cannot count the line now; retry")
	}
	return n, nil
}

// drawnSale finds the sale of a draw request: 404 for an unknown sale or one
// without a waiting room, 409 not_started before its starts_at.
func (s *Server) drawnSale(c *gin.Context) (*flashsale.Sale, error) {
	sale, err := s.cfg.Sales.Get(c.Request.Context(), c.Param("id"))
	if err != nil {
		return nil, err
	}
	if sale.WaitingRoom == nil || s.cfg.WaitingLine == nil {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "sale %q has no waiting room", sale.ID)
	}
	if !sale.Drawn(s.cfg.Now()) {
		return nil, flashsale.Errorf(flashsale.CodeNotStarted, "the line of sale %q is drawn at its starts_at", sale.ID)
	}
	return sale, nil
}

// getDraw is GET /api/v1/sales/{id}/draw: the commitment, the revealed
// seed and the number of drawn entries.
func (s *Server) getDraw(c *gin.Context) {
	sale, err := s.drawnSale(c)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	n, err := s.cfg.WaitingLine.DrawnEntries(c.Request.Context(), sale)
	if err != nil {
		s.WriteError(c, flashsale.Unavailable(err, "cannot count the draw now; retry"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"commitment": sale.WaitingRoom.Commitment(),
		"seed": hex.EncodeToString(sale.WaitingRoom.Seed), "entries": n})
}

// getDrawScores is GET /api/v1/sales/{id}/draw/scores?after=&limit=: a page
// of the draw's scores, ascending.
func (s *Server) getDrawScores(c *gin.Context) {
	after, hasAfter := c.GetQuery("after")
	if hasAfter && !lowerHex.MatchString(after) {
		s.WriteError(c, invalid("after", "must be 1 to 64 lower-case hex digits"))
		return
	}
	limit := MaxDrawScores
	if v, ok := c.GetQuery("limit"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxDrawScores {
			s.WriteError(c, invalid("limit", "must be between 1 and %d", MaxDrawScores))
			return
		}
		limit = n
	}
	sale, err := s.drawnSale(c)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	scores, err := s.cfg.WaitingLine.DrawScores(c.Request.Context(), sale, after, limit)
	if err != nil {
		s.WriteError(c, flashsale.Unavailable(err, "cannot read the draw now; retry"))
		return
	}
	if scores == nil {
		scores = []string{}
	}
	c.JSON(http.StatusOK, gin.H{"scores": scores})
}
