package apicheck

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

const (
	tid    = "0196f3a2-7c1e-7b2a-9f4d-3e5a6b7c8d9e"
	ticket = `{"ticket_id":"` + tid + `","sale_id":"s1","quantity":1,"items":[{"sale_id":"s1","quantity":1}],` +
		`"status":"pending_payment","order_id":"` + tid + `","pay_by":"2026-12-06T10:00:00.123456Z"}`
	order = `{"order_id":"` + tid + `","sale_id":"s1","user_id":"alice","quantity":1,"amount_cents":100,"status":"paid",` +
		`"created_at":"2026-12-06T10:00:00.123456Z","pay_by":"2026-12-06T10:15:00.123456Z","paid_at":"2026-12-06T10:01:00Z",` +
		`"payment_id":"pay_1","items":[{"sale_id":"s1","quantity":1,"amount_cents":100,"returned":0}]}`
	notFound = `{"error":{"code":"not_found","message":"no such ticket"}}`
)

var jsonCT = http.Header{"Content-Type": {"application/json; charset=utf-8"}}

func checker(t testing.TB) *Checker {
	t.Helper()
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func request(method, path string, hdr ...string) *http.Request {
	r, _ := http.NewRequest(method, "http://127.0.0.1:8080"+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	return r
}

// TestCheck: answers that match the description pass; every kind of drift
// fails, naming what drifted.
func TestCheck(t *testing.T) {
	c := checker(t)
	user := []string{"X-User-ID", "alice"}
	asJSON := []string{"X-User-ID", "alice", "Content-Type", "application/json"}
	admin := []string{"Authorization", "Bearer t0k3n", "Content-Type", "application/json"}
	sale := `{"sku":"S","name":"n","stock":5,"price_cents":100,"starts_at":"2026-01-01T00:00:00Z","ends_at":"2027-01-01T00:00:00Z"}`
	for _, tc := range []struct {
		name    string
		req     *http.Request
		body    string
		status  int
		header  http.Header
		answer  string
		drifted string // "" when the exchange matches
	}{
		{"a ticket", request("GET", "/api/v1/tickets/"+tid, user...), "", 200, jsonCT, ticket, ""},
		{"an order, paid_at null", request("GET", "/api/v1/orders/"+tid, user...), "", 200, jsonCT,
			strings.Replace(order, `"2026-12-06T10:01:00Z"`, "null", 1), ""},
		{"a renamed field", request("GET", "/api/v1/tickets/"+tid, user...), "", 200, jsonCT,
			strings.Replace(ticket, `"ticket_id"`, `"ticketId"`, 1), "missing property 'ticket_id'"},
		{"a field of another type", request("GET", "/api/v1/orders/"+tid, user...), "", 200, jsonCT,
			strings.Replace(order, `"amount_cents":100,"status"`, `"amount_cents":"100","status"`, 1), "at /amount_cents"},
		{"an unknown status", request("GET", "/api/v1/tickets/"+tid, user...), "", 200, jsonCT,
			strings.Replace(ticket, "pending_payment", "pending", 1), "at /status"},
		{"a time that is not RFC 3339", request("GET", "/api/v1/tickets/"+tid, user...), "", 200, jsonCT,
			strings.Replace(ticket, "2026-12-06T10:00:00.123456Z", "2026-12-06 10:00", 1), "at /pay_by"},
		{"an undeclared status", request("GET", "/api/v1/tickets/"+tid, user...), "", 409, jsonCT,
			`{"error":{"code":"conflict","message":"x"}}`, "status 409 is not declared for operation getTicket"},
		{"a code the status does not carry", request("GET", "/api/v1/tickets/"+tid, user...), "", 404, jsonCT,
			`{"error":{"code":"sold_out","message":"x"}}`, "at /error/code"},
		{"an error without its message", request("GET", "/api/v1/tickets/"+tid, user...), "", 404, jsonCT,
			`{"error":{"code":"not_found"}}`, "missing property 'message'"},
		{"429 with Retry-After", request("GET", "/api/v1/tickets/"+tid, user...), "", 429,
			http.Header{"Content-Type": {"application/json"}, "Retry-After": {"3"}}, `{"error":{"code":"rate_limited","message":"x"}}`, ""},
		{"429 without Retry-After", request("GET", "/api/v1/tickets/"+tid, user...), "", 429, jsonCT,
			`{"error":{"code":"rate_limited","message":"x"}}`, `header "Retry-After" missing`},
		{"a content type not declared", request("GET", "/api/v1/tickets/"+tid, user...), "", 200,
			http.Header{"Content-Type": {"text/plain"}}, ticket, `content type "text/plain" is not declared`},
		{"a purchase", request("POST", "/api/v1/sales/s1/purchase", asJSON...), `{"quantity":1}`, 202, jsonCT,
			`{"ticket_id":"` + tid + `","status":"queued"}`, ""},
		{"a purchase without a body", request("POST", "/api/v1/sales/s1/purchase", user...), "", 202, jsonCT,
			`{"ticket_id":"` + tid + `","status":"queued"}`, ""},
		{"a bad request answered 4xx", request("POST", "/api/v1/sales/s1/purchase", asJSON...), `{"quantity":0}`, 422, jsonCT,
			`{"error":{"code":"invalid_quantity","message":"x"}}`, ""},
		{"a bad request accepted", request("POST", "/api/v1/sales/s1/purchase", asJSON...), `{"quantity":0}`, 202, jsonCT,
			`{"ticket_id":"` + tid + `","status":"queued"}`, "the request does not match the description"},
		{"no identity answered 401", request("POST", "/api/v1/sales/s1/purchase"), "", 401, jsonCT,
			`{"error":{"code":"unauthorized","message":"x"}}`, ""},
		{"no identity accepted", request("POST", "/api/v1/sales/s1/purchase"), "", 202, jsonCT,
			`{"ticket_id":"` + tid + `","status":"queued"}`, "the request does not match"},
		{"bad input meets a dependency away", request("GET", "/api/v1/tickets/not-a-ticket", user...), "", 503, jsonCT,
			`{"error":{"code":"unavailable","message":"x"}}`, ""},
		{"bad input answered 200", request("GET", "/api/v1/tickets/not-a-ticket", user...), "", 200, jsonCT, ticket, "not a 4xx"},
		{"a sale created", request("POST", "/api/v1/sales", admin...), sale, 201, jsonCT,
			`{"id":"s1","sku":"S","name":"n","price_cents":100,"per_user_limit":1,"starts_at":"2026-01-01T00:00:00Z",` +
				`"ends_at":"2027-01-01T00:00:00Z","payment_window_seconds":900,"reservation":null,"inventory":"redis",` +
				`"created_at":"2026-01-01T00:00:00Z","state":"open","server_time":"2026-06-01T00:00:00.5Z",` +
				`"stock":{"total":5,"available":5,"held":0,"sold":0}}`, ""},
		{"an unknown route answered 404", request("GET", "/no/such/thing"), "", 404, jsonCT,
			`{"error":{"code":"not_found","message":"no such endpoint"}}`, ""},
		{"an unknown method answered 404", request("DELETE", "/api/v1/sales/s1"), "", 404, jsonCT,
			`{"error":{"code":"not_found","message":"no such endpoint"}}`, ""},
		{"an unknown route answered 200", request("GET", "/no/such/thing"), "", 200, jsonCT, `{}`, "no operation in the description"},
		{"the metrics", request("GET", "/metrics"), "", 200,
			http.Header{"Content-Type": {"text/plain; version=0.0.4; charset=utf-8; escaping=underscores"}}, "# HELP x\n", ""},
		{"the login form", request("GET", "/ops/live"), "", 401, http.Header{"Content-Type": {"text/html; charset=utf-8"}}, "<form>", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Check(context.Background(), tc.req, []byte(tc.body), tc.status, tc.header, []byte(tc.answer))
			switch {
			case tc.drifted == "" && err != nil:
				t.Errorf("a drift in an exchange that matches: %v", err)
			case tc.drifted != "" && err == nil:
				t.Errorf("no drift, want one about %q", tc.drifted)
			case tc.drifted != "" && (!errors.Is(err, ErrDrift) || !strings.Contains(err.Error(), tc.drifted)):
				t.Errorf("drift %v, want one about %q", err, tc.drifted)
			}
		})
	}
}

// TestRequestsReadAs31: requests are validated by kin-openapi's OpenAPI 3.0
// validator (see Check), which is right only while the request side of the
// description uses no keyword of 3.1 but type arrays with "null": this test
// walks every parameter and request body and refuses the others, and checks
// that a nullable object is read as 3.1 reads it.
func TestRequestsReadAs31(t *testing.T) {
	c := checker(t)
	only31 := func(s *openapi3.Schema) []string {
		var found []string
		if s.Const != nil {
			found = append(found, "const")
		}
		if len(s.PrefixItems) > 0 {
			found = append(found, "prefixItems")
		}
		if s.If != nil || s.Then != nil || s.Else != nil {
			found = append(found, "if/then/else")
		}
		if len(s.DependentSchemas) > 0 || len(s.PatternProperties) > 0 || s.PropertyNames != nil {
			found = append(found, "dependentSchemas/patternProperties/propertyNames")
		}
		if s.Contains != nil || s.UnevaluatedItems.Schema != nil || s.UnevaluatedItems.Has != nil ||
			s.UnevaluatedProperties.Schema != nil || s.UnevaluatedProperties.Has != nil {
			found = append(found, "contains/unevaluated*")
		}
		if s.ExclusiveMin.Value != nil || s.ExclusiveMax.Value != nil {
			found = append(found, "numeric exclusiveMinimum/Maximum")
		}
		return found
	}
	var walk func(where string, ref *openapi3.SchemaRef, seen map[*openapi3.Schema]bool)
	walk = func(where string, ref *openapi3.SchemaRef, seen map[*openapi3.Schema]bool) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		if f := only31(s); len(f) > 0 {
			t.Errorf("%s uses %v, which requests are not validated for (see Check)", where, f)
		}
		if s.Type.IsMultiple() && !(len(*s.Type) == 2 && s.Type.IncludesNull()) {
			t.Errorf("%s has type %v: only [T, null] is read as 3.1 reads it", where, *s.Type)
		}
		for name, p := range s.Properties {
			walk(where+"."+name, p, seen)
		}
		walk(where+"[]", s.Items, seen)
		for _, list := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
			for i, p := range list {
				walk(where+"/"+string(rune('0'+i)), p, seen)
			}
		}
	}
	n := 0
	for path, item := range c.Doc().Paths.Map() {
		for method, op := range item.Operations() {
			for _, p := range append(item.Parameters, op.Parameters...) {
				walk(method+" "+path+" "+p.Value.Name, p.Value.Schema, map[*openapi3.Schema]bool{})
				n++
			}
			if op.RequestBody != nil {
				for mt, m := range op.RequestBody.Value.Content {
					walk(method+" "+path+" "+mt, m.Schema, map[*openapi3.Schema]bool{})
					n++
				}
			}
		}
	}
	if n < 20 {
		t.Fatalf("walked %d parameters and bodies: the walk sees nothing", n)
	}

	admin := []string{"Authorization", "Bearer t0k3n", "Content-Type", "application/json"}
	sale := func(reservation string) string {
		return `{"sku":"S","name":"n","stock":5,"price_cents":100,"starts_at":"2026-01-01T00:00:00Z",` +
			`"ends_at":"2027-01-01T00:00:00Z","reservation":` + reservation + `}`
	}
	created := `{"error":{"code":"conflict","message":"exists"}}` // an answer the request's validity does not change
	created201 := `{"id":"s1","sku":"S","name":"n","price_cents":100,"per_user_limit":1,"starts_at":"2026-01-01T00:00:00Z",` +
		`"ends_at":"2027-01-01T00:00:00Z","payment_window_seconds":900,"reservation":null,"inventory":"redis",` +
		`"created_at":"2026-01-01T00:00:00Z","state":"open","server_time":"2026-06-01T00:00:00.5Z",` +
		`"stock":{"total":5,"available":5,"held":0,"sold":0}}`
	for reservation, valid := range map[string]bool{
		`null`: true,
		`{"opens_at":"2026-01-01T00:00:00Z","closes_at":"2026-01-02T00:00:00Z","capacity":3}`: true,
		`"tomorrow"`:              false,
		`{"opens_at":"tomorrow"}`: false,
	} {
		// A valid request may be accepted; an invalid one never.
		err := c.Check(context.Background(), request("POST", "/api/v1/sales", admin...), []byte(sale(reservation)),
			409, jsonCT, []byte(created))
		if err != nil {
			t.Errorf("reservation %s: %v", reservation, err)
		}
		err = c.Check(context.Background(), request("POST", "/api/v1/sales", admin...), []byte(sale(reservation)),
			201, jsonCT, []byte(created201))
		if got := err == nil; got != valid {
			t.Errorf("reservation %s answered 201: drift %v, want the request valid=%v", reservation, err, valid)
		}
	}
}

// BenchmarkCheck: what one exchange costs (the e2e suite and the bench
// check thousands), new and seen before.
func BenchmarkCheck(b *testing.B) {
	c := checker(b)
	for _, bc := range []struct {
		name   string
		req    *http.Request
		body   string
		status int
		answer string
	}{
		{"ticket", request("GET", "/api/v1/tickets/"+tid, "X-User-ID", "alice"), "", 200, ticket},
		{"purchase 409", request("POST", "/api/v1/sales/s1/purchase", "X-User-ID", "alice", "Content-Type", "application/json"),
			`{"quantity":1}`, 409, `{"error":{"code":"sold_out","message":"x"}}`},
		{"404", request("GET", "/api/v1/orders/"+tid, "X-User-ID", "alice"), "", 404, notFound},
	} {
		b.Run(bc.name, func(b *testing.B) { // a new exchange each time
			for b.Loop() {
				if err := c.check(context.Background(), bc.req, []byte(bc.body), bc.status, jsonCT, []byte(bc.answer)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+" again", func(b *testing.B) { // remembered
			for b.Loop() {
				if err := c.Check(context.Background(), bc.req, []byte(bc.body), bc.status, jsonCT, []byte(bc.answer)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestCheckRemembersOnlyMatches: an exchange seen matching is not checked
// again, a drift is reported every time, and an exchange that differs in
// anything but the answer's Date is checked anew.
func TestCheckRemembersOnlyMatches(t *testing.T) {
	c := checker(t)
	req := request("GET", "/api/v1/tickets/"+tid, "X-User-ID", "alice")
	at := func(date string) http.Header {
		return http.Header{"Content-Type": {"application/json"}, "Date": {date}}
	}
	bad := strings.Replace(ticket, `"ticket_id"`, `"ticketId"`, 1)
	for i := range 2 {
		if err := c.Check(context.Background(), req, nil, 200, at("Mon, 07 Dec 2026 10:00:0"+strconv.Itoa(i)+" GMT"), []byte(ticket)); err != nil {
			t.Fatalf("look %d: %v", i, err)
		}
		if err := c.Check(context.Background(), req, nil, 200, at("x"), []byte(bad)); err == nil {
			t.Fatalf("look %d: a drift not reported", i)
		}
	}
	if len(c.passed) != 1 {
		t.Errorf("%d exchanges remembered, want 1 (the same one, on two Dates)", len(c.passed))
	}
	// The same answer to another user, or with another Retry-After: checked.
	other := request("GET", "/api/v1/tickets/"+tid, "X-User-ID", "bob")
	if err := c.Check(context.Background(), other, nil, 200, at("x"), []byte(ticket)); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(context.Background(), req, nil, 429, http.Header{"Content-Type": {"application/json"}, "Retry-After": {"0"}},
		[]byte(`{"error":{"code":"rate_limited","message":"x"}}`)); err == nil {
		t.Error("Retry-After: 0 not reported (minimum 1)")
	}
	if len(c.passed) != 2 {
		t.Errorf("%d exchanges remembered, want 2", len(c.passed))
	}
}
