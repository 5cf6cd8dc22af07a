package bench

import (
	"strings"
	"testing"
)

// goodInput is a consistent picture: stock 4, two paid, one pending, one
// cancelled, one sold out; readings balanced.
func goodInput() invariantInput {
	return invariantInput{
		Stock: 4, PerUserLimit: 1, Completed: true,
		Tickets: []ticketObservation{
			{UserID: "u1", TicketID: "t1", OrderID: "o1", Status: statusPaid, Quantity: 1, Intent: intentPay, Action: statusPaid, Verified: true},
			{UserID: "u2", TicketID: "t2", OrderID: "o2", Status: statusPaid, Quantity: 1, Intent: intentPay, Action: statusPaid, Verified: true},
			{UserID: "u3", TicketID: "t3", OrderID: "o3", Status: statusPendingPayment, Quantity: 1, Intent: intentExpire, Verified: true},
			{UserID: "u4", TicketID: "t4", OrderID: "o4", Status: statusCancelled, Quantity: 1, Intent: intentCancel, Action: statusCancelled, Verified: true},
			{UserID: "u5", TicketID: "t5", Status: statusSoldOut, Quantity: 1, Verified: true},
		},
		Samples: []StockSample{
			{T: 0, Total: 4, Available: 4},
			{T: 1, Total: 4, Available: 0, Held: 4},
			{T: 2, Total: 4, Available: 1, Held: 1, Sold: 2},
		},
		Final: &StockSample{T: 3, Total: 4, Available: 1, Held: 1, Sold: 2},
	}
}

func checkByName(t *testing.T, cs []Check, name string) Check {
	t.Helper()
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, cs)
	return Check{}
}

func TestInvariantsPassOnConsistentData(t *testing.T) {
	cs := checkInvariants(goodInput())
	for _, c := range cs {
		if !c.Pass {
			t.Errorf("%s failed: %s", c.Name, c.Detail)
		}
	}
	if !allPass(cs) {
		t.Error("allPass = false")
	}
	if allPass(nil) {
		t.Error("no checks is not a pass")
	}
}

func TestInvariantsCatchViolations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		check  string
		mutate func(*invariantInput)
	}{
		{"oversold orders", checkOversell, func(in *invariantInput) {
			for i := range in.Tickets {
				if in.Tickets[i].Status == statusCancelled || in.Tickets[i].Status == statusSoldOut {
					in.Tickets[i].Status, in.Tickets[i].OrderID = statusPendingPayment, "ox"+in.Tickets[i].TicketID
				}
			}
		}},
		{"sale view over total", checkOversellVw, func(in *invariantInput) {
			in.Samples = append(in.Samples, StockSample{T: 2.5, Total: 4, Available: -1, Held: 3, Sold: 2})
		}},
		{"unbalanced reading", checkConserved, func(in *invariantInput) {
			in.Samples[1].Available = 1 // 1 + 4 + 0 != 4
		}},
		{"total differs from stock", checkConserved, func(in *invariantInput) {
			in.Final = &StockSample{Total: 5, Available: 2, Held: 1, Sold: 2}
		}},
		{"ticket left queued", checkFinal, func(in *invariantInput) {
			in.Tickets = append(in.Tickets, ticketObservation{UserID: "u6", TicketID: "t6", Status: statusQueued, Quantity: 1, Verified: true})
		}},
		{"ticket never re-read", checkFinal, func(in *invariantInput) {
			in.Tickets[0].Verified = false
		}},
		{"user over the limit", checkPerUser, func(in *invariantInput) {
			in.Tickets[1].UserID = "u1"
		}},
		{"order on two tickets", checkOneOrder, func(in *invariantInput) {
			in.Tickets[1].OrderID = "o1"
		}},
		{"view disagrees with orders", checkAgrees, func(in *invariantInput) {
			in.Final = &StockSample{Total: 4, Available: 2, Held: 0, Sold: 2}
		}},
		{"no final reading", checkAgrees, func(in *invariantInput) { in.Final = nil }},
		{"payment not applied", checkActions, func(in *invariantInput) {
			in.Tickets[0].Status = statusPendingPayment
		}},
		{"run incomplete", checkCompleted, func(in *invariantInput) {
			in.Completed, in.Reason = false, "the load did not finish within --duration"
		}},
		{"pending after expiry wait", checkExpired, func(in *invariantInput) { in.WaitExpiry = true }},
		{"stock not returned after expiry", checkStockReturn, func(in *invariantInput) {
			in.WaitExpiry = true
			in.Tickets[2].Status = statusExpired
			in.Final = &StockSample{Total: 4, Available: 1, Held: 1, Sold: 2}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := goodInput()
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

func TestInvariantsWaitExpiryPass(t *testing.T) {
	in := goodInput()
	in.WaitExpiry = true
	in.Tickets[2].Status = statusExpired
	in.Final = &StockSample{T: 9, Total: 4, Available: 2, Held: 0, Sold: 2}
	for _, c := range checkInvariants(in) {
		if !c.Pass {
			t.Errorf("%s failed: %s", c.Name, c.Detail)
		}
	}
	c := checkByName(t, checkInvariants(in), checkFinal)
	if !strings.Contains(c.Detail, "paid/expired") {
		t.Errorf("detail %q", c.Detail)
	}
}
