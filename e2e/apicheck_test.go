package e2e

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/flashsale/flashsale/api/apicheck"
)

// theDescription is the API's description, loaded once for the whole run.
var theDescription = sync.OnceValues(apicheck.New)

// apiChecks checks a client's exchanges against the API's description
// (api/openapi.yaml): every request the client sends and every answer it
// receives, errors included. A drift fails the test that made the client,
// when the test ends (a drift may be seen on any goroutine, also one that
// outlives the test's body); the first few are quoted in full.
type apiChecks struct {
	checker *apicheck.Checker

	mu      sync.Mutex
	drifts  []string
	checked int
}

// checkedClient returns a client of a process of the binary whose every
// exchange is checked against the description, failing t on a drift.
func checkedClient(t *testing.T, base, adminToken string) *client {
	t.Helper()
	checker, err := theDescription()
	if err != nil {
		t.Fatalf("the API description: %v", err)
	}
	c := newClient(base, adminToken)
	c.api = &apiChecks{checker: checker}
	t.Cleanup(func() { c.api.report(t) })
	return c
}

// check checks one exchange; the answer's body b has been read whole.
func (a *apiChecks) check(req *http.Request, body []byte, resp *http.Response, b []byte) {
	err := a.checker.Check(context.Background(), req, body, resp.StatusCode, resp.Header, b)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.checked++
	if err != nil {
		a.drifts = append(a.drifts, err.Error())
	}
}

// report fails t with the drifts seen.
func (a *apiChecks) report(t *testing.T) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.drifts) == 0 {
		t.Logf("%d exchanges with the service matched the API description", a.checked)
		return
	}
	for i, d := range a.drifts[:min(len(a.drifts), 5)] {
		t.Errorf("API drift %d of %d (api/openapi.yaml): %s", i+1, len(a.drifts), d)
	}
	t.Errorf("%d of %d exchanges with the service did not match the API description", len(a.drifts), a.checked)
}
