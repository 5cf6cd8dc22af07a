package inventory

import (
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"slices"
	"testing"

	"github.com/flashsale/flashsale/redisstore"
)

// passThrough are the Redis store's methods the Router does not route, each
// with why its answer does not depend on a sale's inventory mode. Router
// embeds *redisstore.Store, so a method added there reaches every role
// through the Router unrouted; TestEveryStoreMethodIsRoutedOrPassedOnPurpose
// makes whoever adds one decide.
var passThrough = map[string]string{
	"Claim":           "claims (one live ticket per user) live in Redis in both modes",
	"Unclaim":         "ditto",
	"GetTicket":       "ticket copies live in Redis in both modes",
	"PutTickets":      "ditto",
	"Queued":          "ditto: a queued ticket's copy",
	"Places":          "a queued ticket's place: the queue, not the stock",
	"FollowDecisions": "decided tickets' announcements, for streams in both modes",
	"Released":        "a waiting ticket's release announcement",
	"Reassert":        "the Redis mirror of a hold MySQL decided (called by Router.Hold itself for mysql sales)",
	"InitSale":        "the Redis side of a new sale: for mysql sales the mirror and the claims",
	"Resync":          "rebuilds the Redis side from MySQL, which it reads itself whatever the mode",
	"RepairSale":      "the reconciler's repair of the Redis side; it covers mysql sales on its own",
	"Snapshot":        "the reconciler's read of the Redis side",
	"Strikes":         "unpaid strikes are per user, not per stock",
	"AddQualified":    "reservations: who may buy, not how many",
	"LoadQualified":   "ditto",
	"Qualified":       "ditto",
	"Leases":          "leases of jobs, not stock",
	"Holder":          "ditto",
	"CheckEviction":   "a start-up check of the server",
	"Ping":            "readiness",
	"Client":          "the raw client, for tests and tools",
	"Close":           "the connection",
}

func TestEveryStoreMethodIsRoutedOrPassedOnPurpose(t *testing.T) {
	routed := routerMethods(t)
	st := reflect.TypeOf((*redisstore.Store)(nil))
	for i := range st.NumMethod() {
		name := st.Method(i).Name
		_, passed := passThrough[name]
		switch {
		case slices.Contains(routed, name) && passed:
			t.Errorf("%s is routed by Router and listed as passed through", name)
		case !slices.Contains(routed, name) && !passed:
			t.Errorf("redisstore.Store.%s reaches every role through Router unrouted: route it for mysql sales, or add it to passThrough with why it does not depend on the inventory mode", name)
		}
	}
	for name := range passThrough {
		if _, ok := st.MethodByName(name); !ok {
			t.Errorf("passThrough lists %s, which redisstore.Store no longer has", name)
		}
	}
	if len(routed) == 0 {
		t.Fatal("found no method declared on Router")
	}
}

// routerMethods are the exported methods this package declares on *Router.
func routerMethods(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "inventory.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Recv == nil || !fn.Name.IsExported() {
			continue
		}
		if star, ok := fn.Recv.List[0].Type.(*ast.StarExpr); ok {
			if id, ok := star.X.(*ast.Ident); ok && id.Name == "Router" {
				names = append(names, fn.Name.Name)
			}
		}
	}
	return names
}
