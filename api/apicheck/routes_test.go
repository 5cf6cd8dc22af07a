package apicheck_test

import (
	"io"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale/api/apicheck"
	"github.com/flashsale/flashsale/ingress"
	"github.com/flashsale/flashsale/ops"
	"github.com/flashsale/flashsale/payment"
)

// The roles' dependencies, never called: building the routers calls nothing.
// (stockStore names ingress.Stock, whose method Stock a field of that name
// would hide.)
type stockStore = ingress.Stock

type (
	noSales     struct{ ingress.Sales }
	noStock     struct{ stockStore }
	noOrders    struct{ ingress.Orders }
	noQueue     struct{ ingress.Queue }
	noLifecycle struct{ ingress.Lifecycle }
	noPayer     struct{ payment.Payer }
)

// served lists "METHOD /path" of every route the binary's routers have, as
// cmd/flashsale wires them: the ingress (with /readyz and /metrics, the
// payment webhook and the live page on it, as without FLASHSALE_OPS_ADDR) and
// the operations listener (which adds pprof). Path parameters are written
// {} (gin's :id and *file alike).
func served(t *testing.T) []string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	srv, err := ingress.New(ingress.Config{Sales: noSales{}, Stock: noStock{}, Orders: noOrders{}, Queue: noQueue{},
		Lifecycle: noLifecycle{}, AdminToken: "admin-token-0123456789", Registry: reg, Gatherer: reg, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	pay, err := payment.New(payment.Config{Payer: noPayer{}, Secrets: []string{"secret-0123456789"}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	pay.Register(srv.Router())
	live, err := ops.NewLive(ops.LiveConfig{Gatherer: reg, AdminToken: "admin-token-0123456789", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	live.Register(srv.Router())
	h, err := ops.Handler(ops.HandlerConfig{Gatherer: reg, Live: live, Pprof: true, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range []*gin.Engine{srv.Router(), h.(*gin.Engine)} {
		for _, r := range e.Routes() {
			seen[r.Method+" "+ginParam.ReplaceAllString(r.Path, "{}")] = true
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var (
	ginParam     = regexp.MustCompile(`[:*][A-Za-z_]+`)
	openAPIParam = regexp.MustCompile(`\{[^}]+\}`)
)

// described lists "METHOD /path" of every operation of the description,
// and apart those marked x-flashsale-status: planned (in the contract, not
// served yet).
func described(t *testing.T) (ops, planned []string) {
	t.Helper()
	c, err := apicheck.New()
	if err != nil {
		t.Fatal(err)
	}
	for path, item := range c.Doc().Paths.Map() {
		for method, op := range item.Operations() {
			k := method + " " + openAPIParam.ReplaceAllString(path, "{}")
			if op.Extensions["x-flashsale-status"] == "planned" {
				planned = append(planned, k)
			} else {
				ops = append(ops, k)
			}
		}
	}
	sort.Strings(ops)
	sort.Strings(planned)
	return ops, planned
}

// TestRoutesMatchTheDescription: every route the routers serve is described,
// and every described operation is served, but those planned: the waiting
// room's routes are in the contract and the description, and not built yet;
// each must move out of the planned ones
// (and into this comparison) once it is served.
func TestRoutesMatchTheDescription(t *testing.T) {
	got := served(t)
	want, planned := described(t)
	for _, r := range got {
		if slices.Contains(planned, r) {
			t.Errorf("%s is served but marked x-flashsale-status: planned in the description: remove the mark", r)
		} else if !slices.Contains(want, r) {
			t.Errorf("%s is served but not in the description (api/openapi.yaml)", r)
		}
	}
	for _, r := range want {
		if !slices.Contains(got, r) {
			t.Errorf("%s is in the description but no router serves it", r)
		}
	}
	var wantPlanned []string // none: every operation of the contract is served
	if !slices.Equal(planned, wantPlanned) {
		t.Errorf("planned operations %v, want %v", planned, wantPlanned)
	}
	if len(got) < 20 || !slices.Contains(got, "POST /api/v1/sales/{}/purchase") {
		t.Fatalf("the routers serve only %v: the comparison sees nothing", got)
	}
	t.Logf("%d routes served and described, both ways; %d planned: %s", len(got), len(planned), strings.Join(planned, ", "))
}
