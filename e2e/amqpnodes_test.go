package e2e

import (
	"testing"
	"time"
)

// TestBrokerNodeGoesAway: FLASHSALE_AMQP_URL names two nodes (two proxies in
// front of the one local broker, standing in for two nodes of a RabbitMQ
// cluster whose quorum queues keep working on the remaining majority). The
// processes connect to the first; mid-sale that node goes away for good. The
// publishers and consumers move to the other node: purchases are accepted
// again within seconds, and every accepted ticket reaches a final status,
// none failed. Before several URLs were taken, the pipeline stopped for as long
// as the node was down.
func TestBrokerNodeGoesAway(t *testing.T) {
	e := newEnv(t)
	nodeA, urlA := amqpProxy(t)
	_, urlB := amqpProxy(t)
	p := e.start("all", map[string]string{"FLASHSALE_AMQP_URL": urlA + "," + urlB})
	c := p.client()
	const stock = 300
	s := fxStartSale(t, e, c, stock, 0, 0, 60*time.Second)
	w := scStartWatch(t, e, s)
	defer w.stop()

	w.phase("crowd 1 on node A")
	s.scCrowd("c1", 100, time.Second).Wait()
	s.scFinal(time.Minute)
	before := s.accepted()

	w.phase("node A gone for good; crowd 2")
	nodeA.Down()
	gone := time.Now()
	crowd := s.scCrowd("c2", 400, 4*time.Second)
	s.awaitAccepted(before+1, 30*time.Second)
	t.Logf("a purchase was accepted again %s after node A went away", time.Since(gone).Round(time.Millisecond))
	crowd.Wait()
	out := s.settle(scSaleSettle...)
	scNoFailed(t, out)
	if units := scMustLiveUnits(t, e, s.ID); units != stock {
		t.Errorf("%d units in orders once the crowd is done, want all %d (the crowd asked for more)", units, stock)
	}
}
