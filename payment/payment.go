// Package payment is the payment provider's webhook: it verifies the signature on
// the raw body before anything else, then applies the notification through the
// lifecycle (one transaction on the order's shard; Redis follows after the
// commit). It does no slow work in the request: one lookup and one short
// transaction.
package payment

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/httpapi"
)

// Payer applies payment notifications.
type Payer interface {
	// Pay returns what the notification did and the order as it stands;
	// errors wrap flashsale.ErrNotFound, flashsale.ErrAmountMismatch or
	// flashsale.ErrConflict (a payment id of another order).
	Pay(ctx context.Context, p flashsale.Payment) (flashsale.PayOutcome, *flashsale.Order, error)
}

// Config for a Handler.
type Config struct {
	Payer Payer // required
	// Secrets verify signatures; any one may match. Empty: the webhook answers 503.
	Secrets []string
	// Tolerance is how far t may be from the server's clock. Default 300 s.
	Tolerance time.Duration
	// Log default slog.Default(); Now default time.Now.
	Log *slog.Logger
	Now func() time.Time
}

// errBadSignature is the one answer to every refused signature (a missing or
// malformed header, no matching HMAC, t out of tolerance): which it was is
// logged, never told, so a caller cannot learn the server's clock from it.
var errBadSignature = flashsale.Errorf(flashsale.CodeBadSignature, "missing or invalid signature")

// Handler serves POST /api/v1/payments/callback.
type Handler struct{ cfg Config }

// New returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Payer == nil {
		return nil, errors.New("payment: Payer is required")
	}
	if cfg.Tolerance == 0 {
		cfg.Tolerance = 300 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Secrets) == 0 {
		cfg.Log.Warn("FLASHSALE_PAYMENT_SECRET is not set: the payment webhook answers 503")
	}
	return &Handler{cfg: cfg}, nil
}

// Register adds the webhook to r.
func (h *Handler) Register(r gin.IRouter) { r.POST("/api/v1/payments/callback", h.callback) }

type notice struct {
	PaymentID   *string `json:"payment_id"`
	OrderID     *string `json:"order_id"`
	AmountCents *int64  `json:"amount_cents"`
	Status      *string `json:"status"`
}

func (h *Handler) callback(c *gin.Context) {
	if len(h.cfg.Secrets) == 0 {
		httpapi.WriteError(c, h.cfg.Log, flashsale.Errorf(flashsale.CodeUnavailable, "the payment webhook is disabled: FLASHSALE_PAYMENT_SECRET is not set"))
		return
	}
	raw, err := httpapi.ReadBody(c)
	if err != nil {
		httpapi.WriteError(c, h.cfg.Log, err)
		return
	}
	if err := Verify(c.GetHeader("X-Flashsale-Signature"), raw, h.cfg.Secrets, h.cfg.Now(), h.cfg.Tolerance); err != nil {
		h.cfg.Log.Info("payment callback refused: bad signature", "why", err)
		httpapi.WriteError(c, h.cfg.Log, errBadSignature)
		return
	}
	var n notice
	if err := httpapi.Decode(raw, &n); err != nil {
		httpapi.WriteError(c, h.cfg.Log, err)
		return
	}
	if n.PaymentID == nil || *n.PaymentID == "" || len(*n.PaymentID) > 128 {
		httpapi.WriteError(c, h.cfg.Log, flashsale.Errorf(flashsale.CodeInvalid, "payment_id: is required (at most 128 bytes)"))
		return
	}
	if n.OrderID == nil || *n.OrderID == "" || len(*n.OrderID) > 64 {
		httpapi.WriteError(c, h.cfg.Log, flashsale.Errorf(flashsale.CodeInvalid, "order_id: is required"))
		return
	}
	if n.AmountCents == nil {
		httpapi.WriteError(c, h.cfg.Log, flashsale.Errorf(flashsale.CodeInvalid, "amount_cents: is required"))
		return
	}
	if n.Status == nil || (*n.Status != "succeeded" && *n.Status != "failed") {
		httpapi.WriteError(c, h.cfg.Log, flashsale.Errorf(flashsale.CodeInvalid, `status: must be "succeeded" or "failed"`))
		return
	}
	outcome, o, err := h.cfg.Payer.Pay(c.Request.Context(), flashsale.Payment{PaymentID: *n.PaymentID, OrderID: *n.OrderID,
		AmountCents: *n.AmountCents, Succeeded: *n.Status == "succeeded"})
	if err != nil {
		httpapi.WriteError(c, h.cfg.Log, err)
		return
	}
	status := string(outcome)
	switch outcome {
	case flashsale.PayRefundRequired:
		h.cfg.Log.Warn("payment for an order that cannot take it: refund required", "order", o.ID, "payment", *n.PaymentID, "order_status", o.Status)
	case flashsale.PayFailed:
		status = string(o.Status) // nothing changed: the order's own status
	}
	c.JSON(http.StatusOK, gin.H{"order_id": o.ID, "status": status})
}
