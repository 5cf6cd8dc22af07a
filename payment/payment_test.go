package payment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/mock"
)

// These tests drive the webhook through httptest with a fake lifecycle
// (mock.Payer): the signature is checked on the raw body before anything
// else, and every outcome and error has the contract's answer.

var now = time.Unix(1_800_000_000, 0)

// payer answers by order id: "o-pending" is paid, "o-cancelled" needs a
// refund, "o-unknown" is not found, "o-other" has another amount, "o-taken"
// has its payment id bound elsewhere, "o-away" finds MySQL away.
func payer() *mock.Payer {
	return &mock.Payer{PayFn: func(_ context.Context, p flashsale.Payment) (flashsale.PayOutcome, *flashsale.Order, error) {
		o := &flashsale.Order{ID: p.OrderID, Status: flashsale.OrderPendingPayment}
		switch p.OrderID {
		case "o-unknown":
			return "", nil, flashsale.Errorf(flashsale.CodeNotFound, "no order %q", p.OrderID)
		case "o-other":
			return "", nil, flashsale.ErrAmountMismatch
		case "o-taken":
			return "", nil, flashsale.Errorf(flashsale.CodeConflict, "payment %q was used for another order", p.PaymentID)
		case "o-away":
			return "", nil, errors.New("dial tcp 127.0.0.1:3306: connection refused")
		case "o-cancelled":
			o.Status = flashsale.OrderCancelled
			return flashsale.PayRefundRequired, o, nil
		}
		if !p.Succeeded {
			return flashsale.PayFailed, o, nil
		}
		o.Status = flashsale.OrderPaid
		return flashsale.PayPaid, o, nil
	}}
}

func newHandler(t *testing.T, p Payer, secrets ...string) http.Handler {
	t.Helper()
	gin.SetMode(gin.TestMode)
	h, err := New(Config{Payer: p, Secrets: secrets, Now: func() time.Time { return now },
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	e := gin.New()
	h.Register(e)
	return e
}

// post sends body with signature header sig and returns the status and the
// answer's body.
func post(h http.Handler, body, sig string) (int, map[string]any) {
	req := httptest.NewRequest(http.MethodPost, "/api/v1/payments/callback", strings.NewReader(body))
	if sig != "" {
		req.Header.Set("X-Flashsale-Signature", sig)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]any
	json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

func callbackBody(order, status string) string {
	return fmt.Sprintf(`{"payment_id":"pay_1","order_id":%q,"amount_cents":250,"status":%q}`, order, status)
}

func codeOf(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func TestCallbackAppliesASignedNotification(t *testing.T) {
	p := payer()
	h := newHandler(t, p, "secret-0123456789abcdef")
	body := callbackBody("o-pending", "succeeded")
	code, out := post(h, body, Sign("secret-0123456789abcdef", now, []byte(body)))
	if code != http.StatusOK || len(out) != 2 || out["order_id"] != "o-pending" || out["status"] != "paid" {
		t.Fatalf("signed payment: %d %v, want 200 {order_id, status: paid}", code, out)
	}
	want := flashsale.Payment{PaymentID: "pay_1", OrderID: "o-pending", AmountCents: 250, Succeeded: true}
	if len(p.Calls) != 1 || p.Calls[0] != want {
		t.Errorf("lifecycle called with %+v, want once with %+v", p.Calls, want)
	}
	for _, c := range []struct{ body, want string }{
		{callbackBody("o-cancelled", "succeeded"), "refund_required"},
		{callbackBody("o-pending", "failed"), "pending_payment"}, // nothing changed: the order's own status
	} {
		code, out := post(h, c.body, Sign("secret-0123456789abcdef", now, []byte(c.body)))
		if code != http.StatusOK || out["status"] != c.want {
			t.Errorf("%s: %d %v, want 200 %s", c.body, code, out, c.want)
		}
	}
}

func TestCallbackRefusesABadSignatureBeforeAnythingElse(t *testing.T) {
	p := payer()
	h := newHandler(t, p, "secret-0123456789abcdef", "rotated-0123456789abcdef")
	body := callbackBody("o-pending", "succeeded")
	for name, sig := range map[string]string{
		"missing":              "",
		"another secret":       Sign("wrong-0123456789abcdef", now, []byte(body)),
		"over another body":    Sign("secret-0123456789abcdef", now, []byte(callbackBody("o-pending", "failed"))),
		"t 301 s old":          Sign("secret-0123456789abcdef", now.Add(-301*time.Second), []byte(body)),
		"garbage":              "v1=zz",
		"over a malformed one": Sign("secret-0123456789abcdef", now, []byte("{")),
	} {
		code, out := post(h, body, sig)
		if code != http.StatusUnauthorized || codeOf(out) != "bad_signature" {
			t.Errorf("signature %s: %d %v, want 401 bad_signature", name, code, out)
		}
	}
	// A malformed body with a bad signature is still 401, not 400: the
	// signature comes first.
	if code, _ := post(h, "{", ""); code != http.StatusUnauthorized {
		t.Errorf("malformed and unsigned: %d, want 401", code)
	}
	if len(p.Calls) != 0 {
		t.Errorf("the lifecycle was called %d times, want never", len(p.Calls))
	}
	if code, _ := post(h, body, Sign("rotated-0123456789abcdef", now, []byte(body))); code != http.StatusOK {
		t.Errorf("signed with the second secret: %d, want 200", code)
	}
}

func TestCallbackAnswers(t *testing.T) {
	p := payer()
	h := newHandler(t, p, "secret-0123456789abcdef")
	for _, c := range []struct {
		body string
		want string
	}{
		{`{"payment_id":"pay_1",`, "400 bad_request"},
		{`[]`, "400 bad_request"},
		{`{"payment_id":"pay_1","order_id":"o-pending","amount_cents":"250","status":"succeeded"}`, "400 bad_request"},
		{`{"order_id":"o-pending","amount_cents":250,"status":"succeeded"}`, "400 invalid"},
		{`{"payment_id":"pay_1","amount_cents":250,"status":"succeeded"}`, "400 invalid"},
		{`{"payment_id":"pay_1","order_id":"o-pending","status":"succeeded"}`, "400 invalid"},
		{callbackBody("o-pending", "refunded"), "400 invalid"},
		{callbackBody("o-unknown", "succeeded"), "404 not_found"},
		{callbackBody("o-other", "succeeded"), "422 amount_mismatch"},
		{callbackBody("o-taken", "succeeded"), "409 conflict"},
		{callbackBody("o-away", "succeeded"), "503 unavailable"},
	} {
		code, out := post(h, c.body, Sign("secret-0123456789abcdef", now, []byte(c.body)))
		if got := fmt.Sprintf("%d %s", code, codeOf(out)); got != c.want {
			t.Errorf("%s: %s (%v), want %s", c.body, got, out, c.want)
		}
	}
	if n := len(p.Calls); n != 4 {
		t.Errorf("the lifecycle was called %d times, want 4 (only for well-formed notices)", n)
	}
}

// Without a secret the webhook is off: 503, never a payment applied.
func TestCallbackWithoutSecretIsUnavailable(t *testing.T) {
	p := payer()
	h := newHandler(t, p)
	body := callbackBody("o-pending", "succeeded")
	if code, out := post(h, body, Sign("", now, []byte(body))); code != http.StatusServiceUnavailable || len(p.Calls) != 0 {
		t.Errorf("no secret: %d %v, %d calls; want 503 and none", code, out, len(p.Calls))
	}
}
