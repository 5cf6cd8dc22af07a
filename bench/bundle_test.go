package bench

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseConfigBundleRatio(t *testing.T) {
	base := []string{"--admin-token", "t", "--payment-secret", "s"}
	c, err := parseConfig(base, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.BundleRatio != 0 || c.bundles() || c.BundleStock != 0 {
		t.Errorf("defaults: bundle ratio %v, stock %d: want no bundles", c.BundleRatio, c.BundleStock)
	}
	c, err = parseConfig(append(base, "--bundle-ratio", "0.25", "--stock", "40"), env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.bundles() || c.secondStock() != 40 {
		t.Errorf("--bundle-ratio 0.25: bundles %v, second stock %d (want the --stock, 40)", c.bundles(), c.secondStock())
	}
	c, err = parseConfig(append(base, "--bundle-ratio", "1", "--bundle-stock", "7"), env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.secondStock() != 7 {
		t.Errorf("--bundle-stock 7: second stock %d", c.secondStock())
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bundle-ratio", "1.5"}, "--bundle-ratio"},
		{[]string{"--bundle-ratio", "-0.1"}, "--bundle-ratio"},
		{[]string{"--bundle-ratio", "NaN"}, "--bundle-ratio"},
		{[]string{"--bundle-stock", "5"}, "--bundle-stock"},
		{[]string{"--bundle-ratio", "0.5", "--bundle-stock", "-1"}, "--bundle-stock"},
	} {
		_, err := parseConfig(append(append([]string{}, base...), tc.args...), env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want one naming %s", tc.args, err, tc.want)
		}
	}
}

func TestBundleUsersShare(t *testing.T) {
	for _, tc := range []struct {
		ratio float64
		users int
		want  int
	}{{0, 100, 0}, {0.25, 100, 25}, {0.5, 41, 20}, {1, 30, 30}, {0.3, 1000, 300}} {
		c := Config{BundleRatio: tc.ratio}
		n := 0
		for i := range tc.users {
			if c.bundleUser(i) {
				n++
			}
		}
		if n != tc.want {
			t.Errorf("ratio %v of %d users: %d bundle users, want %d", tc.ratio, tc.users, n, tc.want)
		}
	}
}

// bundleInput is goodInput plus a second sale "b" of stock 3 and bundle
// tickets: u6 paid (both items), u7 pending (both items), u8 sold out (none).
func bundleInput() invariantInput {
	in := goodInput()
	in.SaleID = "a"
	// The first sale now also carries two bundle units: stock 6.
	in.Stock = 6
	both := map[string]int64{"a": 1, "b": 1}
	in.Tickets = append(in.Tickets,
		ticketObservation{UserID: "u6", TicketID: "t6", OrderID: "o6", Status: statusPaid, Quantity: 1, Intent: intentPay, Action: statusPaid, Verified: true, Bundle: true, OrderRead: true, OrderItems: both},
		ticketObservation{UserID: "u7", TicketID: "t7", OrderID: "o7", Status: statusPendingPayment, Quantity: 1, Intent: intentExpire, Verified: true, Bundle: true, OrderRead: true, OrderItems: both},
		ticketObservation{UserID: "u8", TicketID: "t8", Status: statusSoldOut, Quantity: 1, Verified: true, Bundle: true},
	)
	for i := range in.Samples {
		in.Samples[i].Total = 6
		in.Samples[i].Available += 2
	}
	in.Final = &StockSample{T: 3, Total: 6, Available: 1, Held: 2, Sold: 3}
	in.Second = &saleObservation{
		SaleID: "b", Stock: 3,
		Samples: []StockSample{{T: 0, Total: 3, Available: 3}, {T: 1, Total: 3, Available: 1, Held: 2}},
		Final:   &StockSample{T: 3, Total: 3, Available: 1, Held: 1, Sold: 1},
	}
	return in
}

func TestInvariantsBundlesPass(t *testing.T) {
	cs := checkInvariants(bundleInput())
	for _, c := range cs {
		if !c.Pass {
			t.Errorf("%s failed: %s", c.Name, c.Detail)
		}
	}
	for _, name := range []string{checkBundles, checkOversell + secondSale, checkOversellVw + secondSale, checkConserved + secondSale, checkAgrees + secondSale} {
		checkByName(t, cs, name)
	}
	if c := checkByName(t, cs, checkBundles); !strings.Contains(c.Detail, "2 bundle orders: 2 with both items") {
		t.Errorf("bundle check detail %q", c.Detail)
	}
	// Without bundles, no second-sale check and no bundle check.
	for _, c := range checkInvariants(goodInput()) {
		if c.Name == checkBundles || strings.HasSuffix(c.Name, secondSale) {
			t.Errorf("check %q without bundles", c.Name)
		}
	}
}

func TestInvariantsBundlesCatchViolations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		check  string
		mutate func(*invariantInput)
	}{
		{"order holds one item only", checkBundles, func(in *invariantInput) {
			in.Tickets[6].OrderItems = map[string]int64{"a": 1}
		}},
		{"order holds an item twice over", checkBundles, func(in *invariantInput) {
			in.Tickets[6].OrderItems = map[string]int64{"a": 1, "b": 2}
		}},
		{"order holds a foreign sale", checkBundles, func(in *invariantInput) {
			in.Tickets[5].OrderItems = map[string]int64{"a": 1, "b": 1, "c": 1}
		}},
		{"order never read", checkBundles, func(in *invariantInput) {
			in.Tickets[6].OrderRead, in.Tickets[6].OrderItems = false, nil
		}},
		{"sold-out bundle names an order", checkBundles, func(in *invariantInput) {
			in.Tickets[7].OrderID = "o8"
		}},
		{"second sale oversold by orders", checkOversell + secondSale, func(in *invariantInput) {
			in.Second.Stock = 1
			in.Second.Samples = nil
			in.Second.Final = &StockSample{Total: 1, Held: 1, Sold: 1, Available: -1}
		}},
		{"second sale view over total", checkOversellVw + secondSale, func(in *invariantInput) {
			in.Second.Samples = append(in.Second.Samples, StockSample{T: 2, Total: 3, Available: -1, Held: 3, Sold: 1})
		}},
		{"second sale reading unbalanced", checkConserved + secondSale, func(in *invariantInput) {
			in.Second.Samples[1].Available = 2
		}},
		{"second sale view disagrees with orders", checkAgrees + secondSale, func(in *invariantInput) {
			in.Second.Final = &StockSample{T: 3, Total: 3, Available: 2, Held: 0, Sold: 1}
		}},
		{"no quiet reading of the second sale", checkAgrees + secondSale, func(in *invariantInput) {
			in.Second.Final = nil
		}},
		{"bundle user over the limit in the second sale", checkPerUser, func(in *invariantInput) {
			in.Tickets[6].UserID = "u6" // two bundles: 2 units of b (and of a)
		}},
		{"second sale stock not returned after expiry", checkStockReturn + secondSale, func(in *invariantInput) {
			in.WaitExpiry = true
			in.Tickets[2].Status = statusExpired
			in.Tickets[6].Status = statusExpired
			in.Final = &StockSample{T: 9, Total: 6, Available: 3, Held: 0, Sold: 3}
			in.Second.Final = &StockSample{T: 9, Total: 3, Available: 1, Held: 1, Sold: 1}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := bundleInput()
			tc.mutate(&in)
			cs := checkInvariants(in)
			if c := checkByName(t, cs, tc.check); c.Pass {
				t.Errorf("%s passed on bad data: %s", tc.check, c.Detail)
			}
			if allPass(cs) {
				t.Error("allPass = true on bad data")
			}
		})
	}
}

func TestMainBundleRunAgainstFake(t *testing.T) {
	f, srv := newFakeServer(t)
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "r.json")
	code, out, errOut := runMainForTest(t, benchArgs(srv.URL,
		"--users", "40", "--stock", "12", "--bundle-ratio", "0.5", "--bundle-stock", "6",
		"--pay-ratio", "0.5", "--cancel-ratio", "0.5", "--payment-window", "2", "--wait-expiry", "--json", jsonPath))
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"bundles 50% of users", "bundle tickets", "bundle orders", checkBundles, checkAgrees + secondSale, "RESULT: PASS"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	var rep Report
	readReport(t, jsonPath, &rep)
	if !rep.Pass {
		t.Fatalf("report not passing: %+v", rep.Checks)
	}
	b := rep.Bundles
	if rep.SecondSaleID != rep.SaleID+"-b" || b == nil {
		t.Fatalf("second sale %q, bundles %+v", rep.SecondSaleID, b)
	}
	if b.Users != 20 || b.Accepted == 0 || b.Orders == 0 || b.Complete != b.Orders || b.Incomplete != 0 || b.Unread != 0 {
		t.Errorf("bundles %+v: want 20 users, orders all complete", b)
	}
	if rep.Config.BundleRatio != 0.5 || rep.Config.BundleStock != 6 {
		t.Errorf("config in the report: %+v", rep.Config.Config)
	}
	if len(rep.SecondStockSeries) == 0 {
		t.Error("no readings of the second sale")
	} else if last := rep.SecondStockSeries[len(rep.SecondStockSeries)-1]; last.Total != 6 || last.Held != 0 {
		t.Errorf("second sale's last reading %+v, want total 6 and nothing held after the expiry wait", last)
	}
	if ep := endpointOf(&rep, epPurchases); ep.Status["202"] == 0 || ep.Requests < 20 {
		t.Errorf("purchases endpoint %+v: want the 20 bundle users' requests", ep)
	}
	if f.bundleAttempts < 20 {
		t.Errorf("the fake saw %d bundle purchases, want at least 20", f.bundleAttempts)
	}
	// The second sale sold out: 6 units for 20 bundle buyers.
	if b.Tickets[statusSoldOut] == 0 && rep.Users[outcomeSoldOut] == 0 {
		t.Errorf("no bundle buyer was sold out with 6 units for 20: %+v %v", b, rep.Users)
	}
}

func TestMainDetectsHalfHeldBundles(t *testing.T) {
	f, srv := newFakeServer(t)
	f.halfBundles = true
	code, out, _ := runMainForTest(t, benchArgs(srv.URL, "--users", "20", "--stock", "10", "--bundle-ratio", "0.5", "--pay-ratio", "0"))
	if code != 1 {
		t.Fatalf("exit %d, want 1 for a server whose bundles hold one item\n%s", code, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, checkBundles) && !strings.Contains(line, "FAIL") {
			t.Errorf("bundle check did not fail: %s", line)
		}
	}
	if !strings.Contains(out, "FAIL  "+checkBundles) {
		t.Errorf("summary lacks a failing %q:\n%s", checkBundles, out)
	}
}
