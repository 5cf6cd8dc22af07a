package apicheck

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

func TestSmoke(t *testing.T) {
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://127.0.0.1:9/api/v1/tickets/0196f3a2-7c1e-7b2a-9f4d-3e5a6b7c8d9e", nil)
	req.Header.Set("X-User-ID", "alice")
	h := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
	body := `{"ticket_id":"0196f3a2-7c1e-7b2a-9f4d-3e5a6b7c8d9e","sale_id":"s1","quantity":1,"items":[{"sale_id":"s1","quantity":1}],"status":"pending_payment","order_id":"0196f3a2-7c1e-7b2a-9f4d-3e5a6b7c8d9e","pay_by":"2026-12-06T10:00:00.123456Z"}`
	t.Log(c.Check(context.Background(), req, nil, 200, h, []byte(body)))
	t.Log(c.Check(context.Background(), req, nil, 200, h, []byte(strings.Replace(body, "ticket_id", "ticketId", 1))))
	t.Log(c.Check(context.Background(), req, nil, 404, h, []byte(`{"error":{"code":"not_found","message":"x"}}`)))
	t.Log(c.Check(context.Background(), req, nil, 404, h, []byte(`{"error":{"code":"sold_out","message":"x"}}`)))
	t.Log(c.Check(context.Background(), req, nil, 429, h, []byte(`{"error":{"code":"rate_limited","message":"x"}}`)))
}

func BenchmarkCheckTicket(b *testing.B) {
	c, err := New()
	if err != nil {
		b.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://127.0.0.1:9/api/v1/tickets/0196f3a2-7c1e-7b2a-9f4d-3e5a6b7c8d9e", nil)
	req.Header.Set("X-User-ID", "alice")
	h := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
	body := []byte(`{"ticket_id":"0196f3a2-7c1e-7b2a-9f4d-3e5a6b7c8d9e","sale_id":"s1","quantity":1,"items":[{"sale_id":"s1","quantity":1}],"status":"pending_payment","order_id":"0196f3a2-7c1e-7b2a-9f4d-3e5a6b7c8d9e","pay_by":"2026-12-06T10:00:00.123456Z"}`)
	for b.Loop() {
		if err := c.Check(context.Background(), req, nil, 200, h, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckPurchase409(b *testing.B) {
	c, err := New()
	if err != nil {
		b.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://127.0.0.1:9/api/v1/sales/s1/purchase", nil)
	req.Header.Set("X-User-ID", "alice")
	req.Header.Set("Content-Type", "application/json")
	h := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
	body := []byte(`{"error":{"code":"sold_out","message":"x"}}`)
	for b.Loop() {
		if err := c.Check(context.Background(), req, []byte(`{"quantity":1}`), 409, h, body); err != nil {
			b.Fatal(err)
		}
	}
}
