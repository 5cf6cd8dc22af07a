package bench

import (
	"net/http"
	"testing"
	"time"
)

func TestSignPaymentKnownVector(t *testing.T) {
	body := []byte(`{"payment_id":"p1","order_id":"o1","amount_cents":19900,"status":"succeeded"}`)
	// Computed independently: printf '1700000000.<body>' | openssl dgst -sha256 -hmac whsec_test
	want := "t=1700000000,v1=5fc8fe0a1a793835c06e6f54de187240b17429036b4efcc070ff43543c164535"
	if got := SignPayment("whsec_test", 1700000000, body); got != want {
		t.Fatalf("SignPayment = %q\nwant            %q", got, want)
	}
}

func TestSignPaymentVerifies(t *testing.T) {
	body := []byte(`{"payment_id":"pay-1","order_id":"o9","amount_cents":5,"status":"succeeded"}`)
	now := time.Now()
	h := SignPayment("s3cret", now.Unix(), body)
	if !verifySignature("s3cret", h, body, now) {
		t.Fatal("a fresh signature does not verify")
	}
	if verifySignature("other", h, body, now) {
		t.Error("verifies with the wrong secret")
	}
	if verifySignature("s3cret", h, append(body, ' '), now) {
		t.Error("verifies a different body")
	}
	if verifySignature("s3cret", SignPayment("s3cret", now.Add(-301*time.Second).Unix(), body), body, now) {
		t.Error("verifies a stale timestamp")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1", time.Second, true},
		{"0", 0, true},
		{"0.25", 250 * time.Millisecond, true},
		{" 2 ", 2 * time.Second, true},
		{"99999", maxRetryAfter, true},
		{now.Add(3 * time.Second).Format(http.TimeFormat), 3 * time.Second, true},
		{now.Add(-3 * time.Second).Format(http.TimeFormat), 0, true},
		{"-1", 0, false},
		{"soon", 0, false},
	} {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestStockViewAcceptsNumberOrObject(t *testing.T) {
	var a, b saleView
	if err := decode(&apiResponse{Status: 200, Body: []byte(`{"stock":{"total":10,"available":4,"held":3,"sold":3}}`)}, &a); err != nil {
		t.Fatal(err)
	}
	if a.Stock != (stockView{Total: 10, Available: 4, Held: 3, Sold: 3}) {
		t.Errorf("object: %+v", a.Stock)
	}
	if err := decode(&apiResponse{Status: 201, Body: []byte(`{"stock":1000}`)}, &b); err != nil {
		t.Fatal(err)
	}
	if b.Stock.Total != 1000 {
		t.Errorf("number: %+v", b.Stock)
	}
}

func TestResponseKey(t *testing.T) {
	if k := (&apiResponse{Status: 409, Code: "sold_out"}).key(); k != "409 sold_out" {
		t.Errorf("key = %q", k)
	}
	if k := (&apiResponse{Status: 202}).key(); k != "202" {
		t.Errorf("key = %q", k)
	}
}
