package ingress

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/mock"
)

// unreachableCopies is a stock store whose ticket copies cannot be read.
type unreachableCopies struct{ *claimStock }

func (unreachableCopies) GetTicket(context.Context, string) (*flashsale.Ticket, error) {
	return nil, errors.New("redis: connection refused")
}

// A fresh ticket id that neither store knows (what any client can make up)
// is answered 503 "may still be queued" without a WARN line; the same answer
// because Redis cannot be read is a dependency failure, logged at WARN.
func TestUnknownFreshTicketLogsNoWarning(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stock Stock
		warn  bool
	}{
		{"both stores answered", newClaimStock(nil), false},
		{"redis unreachable", unreachableCopies{newClaimStock(nil)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logged bytes.Buffer
			srv, err := New(Config{Sales: mock.Sales{}, Stock: tc.stock, Orders: mock.NewBook(nil), Queue: &recQueue{},
				Lifecycle: fakeLifecycle{}, AdminToken: "admin-token-0123456789", LimitPerWindow: -1,
				Log: slog.New(slog.NewTextHandler(&logged, nil))})
			if err != nil {
				t.Fatal(err)
			}
			id, _ := uuid.NewV7()
			req := httptest.NewRequest(http.MethodGet, "/api/v1/tickets/"+id.String(), nil)
			req.Header.Set("X-User-ID", "u1")
			rec := httptest.NewRecorder()
			srv.Handler().ServeHTTP(rec, req)
			if rec.Code != http.StatusServiceUnavailable {
				t.Fatalf("answered %d %s, want 503", rec.Code, rec.Body)
			}
			if got := strings.Contains(logged.String(), "level=WARN"); got != tc.warn {
				t.Errorf("WARN logged: %v, want %v:\n%s", got, tc.warn, logged.String())
			}
		})
	}
}

// A purchase whose client went away is no purchase outcome (not
// "unavailable").
func TestClientClosedPurchaseNotCounted(t *testing.T) {
	if o := outcomeOf(httpapi.StatusClientClosed, string(httpapi.CodeClientClosed)); o != "" {
		t.Errorf("outcome %q, want none", o)
	}
}
