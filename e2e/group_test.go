package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
)

// TestGroupMessagePoisonMember: one broker message carries several purchases
// (a group, as the ingress publishes them under a crowd). Three good ones
// sit beside a purchase of an unknown sale and a member that is not a
// purchase at all: the two bad members are dead-lettered alone (the unknown
// sale's ticket ends failed through the dead-letter queue), the three good
// ones make their orders, and both queues drain.
func TestGroupMessagePoisonMember(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", nil)
	c := p.client()
	saleID := c.createSale(t, openSale(10, 1, 500))
	c.sale(t, saleID) // loads the sale's stock

	// Admitted before the stock was loaded, without a claim's load: the
	// hold takes them as claims whose live entries were lost (see holdScript).
	admitted := time.Now().Add(-time.Hour).UTC()
	member := func(sale, user string) (string, json.RawMessage) {
		id := uuid.Must(uuid.NewV7()).String()
		b, _ := json.Marshal(map[string]any{"ticket_id": id, "sale_id": sale, "user_id": user, "quantity": 1, "admitted_at": admitted})
		return id, b
	}
	users := []string{"group-a-" + randHex(3), "group-b-" + randHex(3), "group-c-" + randHex(3)}
	good := make([]string, len(users))
	var bodies []json.RawMessage
	for i, u := range users {
		var b json.RawMessage
		good[i], b = member(saleID, u)
		bodies = append(bodies, b)
	}
	poisonUser := "group-poison-" + randHex(3)
	poison, unknown := member("no-such-sale-"+randHex(4), poisonUser)
	// The bad members sit between the good ones.
	bodies = append(bodies[:1], append([]json.RawMessage{unknown, json.RawMessage(`{"quantity": 1}`)}, bodies[1:]...)...)
	body, _ := json.Marshal(bodies)
	deadBefore := fxMetric(t, c, `flashsale_worker_messages_total{outcome="dead_letter"}`)
	settledBefore := fxMetric(t, c, `flashsale_worker_messages_total{outcome="dead_letter_settled"}`)
	fxPublishMessage(t, e.NS+".purchase", "purchase", amqp.Publishing{ContentType: "application/json",
		DeliveryMode: amqp.Persistent, Type: "flashsale.group", Body: body})

	for i, id := range good {
		var tv ticketView
		if !poll(30*time.Second, pollEvery, func() bool {
			r := c.must(t, http.MethodGet, pathTicket(id), user(users[i]), nil)
			return r.Status == http.StatusOK && r.decode(&tv) == nil && tv.Status == "pending_payment"
		}) {
			t.Errorf("good member %d (ticket %s): %+v, want pending_payment with an order", i, id, tv)
		}
	}
	var tv ticketView
	if !poll(30*time.Second, pollEvery, func() bool {
		r := c.must(t, http.MethodGet, pathTicket(poison), user(poisonUser), nil)
		return r.Status == http.StatusOK && r.decode(&tv) == nil && tv.Status == "failed"
	}) {
		t.Errorf("the unknown sale's member: %+v, want failed", tv)
	}
	var dead, settled float64
	if !poll(30*time.Second, pollEvery, func() bool {
		dead = fxMetric(t, c, `flashsale_worker_messages_total{outcome="dead_letter"}`) - deadBefore
		settled = fxMetric(t, c, `flashsale_worker_messages_total{outcome="dead_letter_settled"}`) - settledBefore
		return dead == 2 && settled == 2
	}) {
		t.Errorf("dead-lettered %v and settled %v members, want the 2 bad ones alone", dead, settled)
	}
	if s := c.sale(t, saleID).Stock; s != (stockView{Total: 10, Available: 7, Held: 3}) {
		t.Errorf("sale stock %+v, want the 3 good members held", s)
	}
	fxAwaitPurchaseQueuesDrained(t, e)
}
