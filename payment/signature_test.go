package payment

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale"
)

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"payment_id":"p1","order_id":"o1","amount_cents":100,"status":"succeeded"}`)
	good := Sign("new", now, body)
	old := Sign("old", now, body)
	ts := strconv.FormatInt(now.Unix(), 10)
	cases := []struct {
		name    string
		header  string
		body    []byte
		secrets []string
		now     time.Time
		ok      bool
	}{
		{"valid", good, body, []string{"new"}, now, true},
		{"rotation: old secret still configured", old, body, []string{"old", "new"}, now, true},
		{"rotation: several v1 entries, one matches", "t=" + ts + ",v1=00ff,v1=" + strings.Split(good, "v1=")[1], body, []string{"new"}, now, true},
		{"tampered body", good, append([]byte(nil), append(body[:len(body)-2], []byte(`X"}`)...)...), []string{"new"}, now, false},
		{"wrong secret", good, body, []string{"other"}, now, false},
		{"missing header", "", body, []string{"new"}, now, false},
		{"no v1", "t=" + ts, body, []string{"new"}, now, false},
		{"t 301 s old", good, body, []string{"new"}, now.Add(301 * time.Second), false},
		{"t 300 s old", good, body, []string{"new"}, now.Add(300 * time.Second), true},
		{"t 301 s in the future", good, body, []string{"new"}, now.Add(-301 * time.Second), false},
		{"t not a number", "t=abc,v1=" + strings.Split(good, "v1=")[1], body, []string{"new"}, now, false},
		{"signature over another t", "t=" + strconv.FormatInt(now.Unix()+1, 10) + ",v1=" + strings.Split(good, "v1=")[1], body, []string{"new"}, now, false},
	}
	for _, c := range cases {
		err := Verify(c.header, c.body, c.secrets, c.now, 300*time.Second)
		if (err == nil) != c.ok {
			t.Errorf("%s: Verify = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

type refusingPayer struct{ calls int }

func (p *refusingPayer) Pay(context.Context, flashsale.Payment) (flashsale.PayOutcome, *flashsale.Order, error) {
	p.calls++
	return "", nil, flashsale.ErrNotFound
}

// TestVerifyHidesClock: every refused signature is answered the same, byte
// for byte (status, headers, body): a stale t with a valid HMAC, a valid t
// with a bad HMAC, a t in the future with a valid HMAC, a malformed header and
// none at all. So nobody learns the server's clock by trying ts, signed or not.
// The HMAC is checked first: a bad one is reported as such (in the logs) whatever t.
func TestVerifyHidesClock(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	const secret = "secret-0123456789"
	payer := &refusingPayer{}
	h, err := New(Config{Payer: payer, Secrets: []string{secret}, Now: func() time.Time { return now },
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	h.Register(e)
	body := []byte(`{"payment_id":"p1","order_id":"o1","amount_cents":100,"status":"succeeded"}`)
	answer := func(header string) string {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/payments/callback", bytes.NewReader(body))
		if header != "" {
			req.Header.Set("X-Flashsale-Signature", header)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		var hdr strings.Builder
		rec.Result().Header.Write(&hdr)
		return strconv.Itoa(rec.Code) + "\n" + hdr.String() + "\n" + rec.Body.String()
	}
	badMAC := "t=" + strconv.FormatInt(now.Unix(), 10) + ",v1=" + strings.Repeat("ab", 32)
	cases := []struct{ name, header string }{
		{"old t, valid HMAC", Sign(secret, now.Add(-1234*time.Second), body)},
		{"valid t, bad HMAC", badMAC},
		{"future t, valid HMAC", Sign(secret, now.Add(1234*time.Second), body)},
		{"future t, bad HMAC", "t=" + strconv.FormatInt(now.Unix()+1234, 10) + ",v1=" + strings.Repeat("ab", 32)},
		{"malformed header", "t=abc;v1"},
		{"t not a number", "t=abc,v1=" + strings.Repeat("ab", 32)},
		{"no header", ""},
	}
	want := answer(cases[0].header)
	if !strings.HasPrefix(want, "401\n") || !strings.Contains(want, `"bad_signature"`) {
		t.Fatalf("a stale t: %q, want 401 bad_signature", want)
	}
	for _, leak := range []string{"1234", "20m", "34s", "tolerance", "clock"} {
		if strings.Contains(want, leak) {
			t.Errorf("the answer %q reveals the clock (%q)", want, leak)
		}
	}
	for _, c := range cases[1:] {
		if got := answer(c.header); got != want {
			t.Errorf("%s: answered\n%s\nwant the same answer as a stale t:\n%s", c.name, got, want)
		}
	}
	if payer.calls != 0 {
		t.Errorf("the payer was called %d times for refused signatures", payer.calls)
	}
	if got := answer(Sign(secret, now, body)); !strings.HasPrefix(got, "404\n") {
		t.Errorf("a valid signature: %q, want past the check (404 from the payer)", got)
	}
	// The HMAC comes first: with a bad one, t is not looked at.
	if err := Verify(cases[3].header, body, []string{secret}, now, 300*time.Second); err == nil || !strings.Contains(err.Error(), "no v1 signature matches") {
		t.Errorf("a future t with a bad HMAC: %v, want the HMAC's refusal", err)
	}
}
