package bench

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/flashsale/flashsale/api/apicheck"
)

// checkAPI is the report's check that the server's answers match the API's
// description.
const checkAPI = "answers match the API description"

// loadSample is how many answers of each endpoint and status (e.g.
// "purchase 409 sold_out") are checked during the load: checking all of them
// would spend a share of the cores the server under test needs.
const loadSample = 20

// apiChecks checks the bench's exchanges against the API's description
// (api/apicheck): the first loadSample answers of each endpoint and status
// while the crowd buys, and every exchange from the verification on (all).
// Its tally is the report's checkAPI. Safe for concurrent use; a nil
// *apiChecks checks nothing.
type apiChecks struct {
	checker *apicheck.Checker
	loadErr error // the description could not be loaded: the check fails
	all     atomic.Bool

	mu      sync.Mutex
	seen    map[string]int
	checked int
	drifts  int
	first   []string // the first drifts, for the report
}

func newAPIChecks() *apiChecks {
	c, err := apicheck.New()
	return &apiChecks{checker: c, loadErr: err, seen: map[string]int{}}
}

// checkAll makes every exchange from now on checked (the verification).
func (a *apiChecks) checkAll() {
	if a != nil {
		a.all.Store(true)
	}
}

// check checks one exchange of ep whose answer's status-mix key is key.
func (a *apiChecks) check(ep endpoint, key string, req *http.Request, sent []byte, resp *http.Response, body []byte) {
	if a == nil || a.checker == nil {
		return
	}
	if !a.all.Load() {
		a.mu.Lock()
		k := string(ep) + " " + key
		n := a.seen[k]
		a.seen[k] = n + 1
		a.mu.Unlock()
		if n >= loadSample {
			return
		}
	}
	err := a.checker.Check(context.Background(), req, sent, resp.StatusCode, resp.Header, body)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.checked++
	if err != nil {
		a.drifts++
		if len(a.first) < 3 {
			a.first = append(a.first, err.Error())
		}
	}
}

// result is the report's checkAPI.
func (a *apiChecks) result() Check {
	c := Check{Name: checkAPI}
	if a.loadErr != nil {
		c.Detail = a.loadErr.Error()
		return c
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	scope := fmt.Sprintf("every exchange of the verification and the first %d of each endpoint and answer during the load", loadSample)
	switch {
	case a.checked == 0:
		c.Detail = "no exchange was checked"
	case a.drifts == 0:
		c.Pass = true
		c.Detail = fmt.Sprintf("%d exchanges checked (%s), none drifted", a.checked, scope)
	default:
		c.Detail = fmt.Sprintf("%d of %d exchanges checked (%s) do not match api/openapi.yaml; first: %v", a.drifts, a.checked, scope, a.first)
	}
	return c
}
