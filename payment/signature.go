package payment

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Sign returns the X-Flashsale-Signature header value for body at t with secret:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>".
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks header against body: one v1 entry must match one of secrets
// (several secrets while one is rotated; several v1 entries while the provider
// rotates), and only then must t be within tolerance of now. Comparisons are
// constant-time. Its errors say which check failed, for the logs only: the
// caller answers every one of them the same (see badSignature), and since the
// clock is looked at only once the HMAC matched, neither the answer nor its
// timing tells someone without the secret anything of the server's clock.
func Verify(header string, body []byte, secrets []string, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	if ts == "" || len(sigs) == 0 {
		return fmt.Errorf("signature header needs t= and v1=")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("t is not a number")
	}
	if !matches(sigs, secrets, ts, body) {
		return fmt.Errorf("no v1 signature matches")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("t is %s from the server's clock, beyond the tolerance of %s", d.Round(time.Second), tolerance)
	}
	return nil
}

// matches reports whether one of sigs is the HMAC of ts and body under one of
// secrets.
func matches(sigs [][]byte, secrets []string, ts string, body []byte) bool {
	for _, secret := range secrets {
		want := mac(secret, ts, body)
		for _, sig := range sigs {
			if hmac.Equal(sig, want) {
				return true
			}
		}
	}
	return false
}
