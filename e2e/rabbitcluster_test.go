package e2e

import (
	"testing"
	"time"
)

// TestRabbitClusterNodeKilled: a real three-node RabbitMQ cluster of the
// test's own (quorum queues replicated on every node), FLASHSALE_AMQP_URL
// naming all three. The processes connect to the first node; mid-sale that
// node is killed (SIGKILL: its connections, its quorum-queue members and any
// leader on it go at once) and started again later. Purchases are accepted
// again within 10 s of the kill, every accepted ticket reaches a final status
// (none failed: the broker stayed available on the majority), no oversell at
// any poll, every guarantee of contract section 4 once quiet, and every
// committed transition arrives as an event, at least once, to a consumer on
// another node.
func TestRabbitClusterNodeKilled(t *testing.T) {
	t0 := time.Now()
	rc := startRabbitCluster(t, 3)
	e := newEnv(t)
	e.setVar("FLASHSALE_AMQP_URL", rc.URLs())
	first := rc.Nodes[0]
	// The consumer of the events sits on the second node, which stays up.
	sink := newEventSinkAt(t, e, rc.Nodes[1].URL)
	// The queues are declared by the processes, on the cluster that exists
	// by now: quorum queues with a member on every node.
	p := e.start("all", nil)
	c := p.client()
	const stock = 400
	s := fxStartSale(t, e, c, stock, 0, 0, 60*time.Second)
	w := scStartWatch(t, e, s)
	defer w.stop()
	t.Logf("cluster and deployment ready after %s", time.Since(t0).Round(100*time.Millisecond))

	w.phase("crowd 1, every node up")
	s.scCrowd("c1", 100, time.Second).Wait()
	s.scFinal(time.Minute)
	if n := first.clientConnections(); n == 0 {
		t.Fatalf("precondition: no client connection on %s, the first node of FLASHSALE_AMQP_URL", first.Name)
	} else {
		t.Logf("%d client connections on %s before it is killed", n, first.Name)
	}

	w.phase("the processes' node killed; crowd 2")
	before := s.accepted()
	first.Kill()
	killed := time.Now()
	crowd := s.scCrowd("c2", 200, 4*time.Second)
	s.awaitAccepted(before+1, 10*time.Second)
	t.Logf("%s killed; a purchase was accepted again %s later", first.Name, time.Since(killed).Round(10*time.Millisecond))
	crowd.Wait()
	s.scFinal(time.Minute)
	t.Logf("crowd 2 done with %s down: %d tickets accepted so far", first.Name, s.accepted())

	w.phase("the node starts again")
	t1 := time.Now()
	first.Start()
	t.Logf("%s running again after %s (down %s)", first.Name, time.Since(t1).Round(100*time.Millisecond), time.Since(killed).Round(100*time.Millisecond))

	w.phase("crowd 3, the node back")
	s.scCrowd("c3", 300, 3*time.Second).Wait()
	out := s.settle(scSaleSettle...)
	scNoFailed(t, out)
	if units := scMustLiveUnits(t, e, s.ID); units != stock {
		t.Errorf("%d units in orders once the crowds are done, want all %d (the crowds asked for more)", units, stock)
	}
	w.stop()

	// Events: every outbox row of the sale's orders arrived, and nothing else.
	ids := map[string]bool{}
	for _, r := range out.rows {
		ids[r.OrderID] = true
	}
	sink.checkOrders(t, e, ids)
}
