package e2e

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/redisstore"
)

// TestRedisClusterMasterFailover: a private Redis Cluster of three masters
// and three replicas (cluster-node-timeout 2 s) under two ingress, two worker,
// two relay and two delayq processes, the buyers spread over both ingresses by
// a load balancer; once with the sale in one slot, once spread over three
// (FLASHSALE_REDIS_SEGMENTS=3, a segment on each master). Mid-sale the master
// serving the sale's home slot dies (spread: the pool and one segment); its
// replica takes over (the promotion: the replica's ROLE turns master). Every
// process finds the new master through its slot map (reloaded every second,
// not the client's default minute), and the promoted replica is a different
// server process, so the sale is rebuilt from MySQL before it admits anyone.
// A purchase of a user served by that master is accepted again within 10 s of
// the promotion (and 20 s of the kill); no oversell at any poll (scWatch); every accepted ticket reaches a
// final status, none failed; every unit is sold; once quiet every guarantee of
// contract section 4 holds and `flashsale reconcile` exits 0 (fxSale.settle),
// again after orders are paid and cancelled; unpaid orders of a second sale
// expire; the processes stop gracefully.
func TestRedisClusterMasterFailover(t *testing.T) {
	for _, segments := range []int{1, 3} {
		t.Run(fmt.Sprintf("segments=%d", segments), func(t *testing.T) { redisClusterFailover(t, segments) })
	}
}

func redisClusterFailover(t *testing.T, segments int) {
	e := newEnv(t)
	nodes, addrs := startRedisCluster(t, 2*time.Second)
	e.setVar("FLASHSALE_REDIS_ADDRS", strings.Join(addrs, ","))
	if segments > 1 {
		e.setVar("FLASHSALE_REDIS_SEGMENTS", strconv.Itoa(segments))
	}
	ingA, ingB := e.start("ingress", nil), e.start("ingress", nil)
	procs := []*proc{ingA, ingB}
	for range 2 {
		procs = append(procs, e.startProc("worker", nil, false), e.startProc("relay", nil, false),
			e.startProc("delayq", nil, false))
	}
	c, lb := lbClient(e, ingA, ingB)
	const stock = 300
	s := fxStartSale(t, e, c, stock, 0, 0, 90*time.Second)
	w := scStartWatch(t, e, s)
	defer w.stop()

	w.phase("crowd 1")
	s.scCrowd("c1", 100, time.Second).Wait()
	s.scFinal(time.Minute)
	if a, b := lb.served(ingA), lb.served(ingB); a == 0 || b == 0 {
		t.Fatalf("precondition: the load balancer used one ingress only (%d and %d connections)", a, b)
	}

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer cc.Close()
	// The home slot: the sale's stock in one piece, or its pool.
	master, err := cc.MasterForKey(context.Background(), e.NS+":{sale:"+s.ID+"}:stock")
	if err != nil {
		t.Fatal(err)
	}
	// The buyers of crowd 2 whose purchases go to that master.
	served := map[string]bool{}
	for _, u := range userNames("c2", 400) {
		m, err := cc.MasterForKey(context.Background(), redisstore.StockKey(e.NS, s.ID, u, segments))
		if err != nil {
			t.Fatal(err)
		}
		served[u] = m.Options().Addr == master.Options().Addr
	}
	victim := nodeOf(nodes, master.Options().Addr)
	if victim == nil {
		t.Fatalf("the sale's master %s is not one of the nodes", master.Options().Addr)
	}
	// The victim's replicas, each with a client of its own for the polls.
	var replicas []*privateRedis
	roles := map[*privateRedis]*redis.Client{}
	for _, n := range nodes {
		if n == victim {
			continue
		}
		rc := n.client()
		defer rc.Close()
		if r := clusterRole(rc); r.role == "slave" && r.master == victim.Addr {
			replicas = append(replicas, n)
			roles[n] = rc
		}
	}
	if len(replicas) == 0 {
		t.Fatalf("precondition: the sale's master %s has no replica", victim.Name)
	}
	eventually(t, 30*time.Second, "a replica of the sale's master "+victim.Name+" in sync", func() (bool, string) {
		var st []string
		for _, n := range replicas {
			r := clusterRole(roles[n])
			if r.state == "connected" {
				return true, ""
			}
			st = append(st, fmt.Sprintf("%s: %+v", n.Name, r))
		}
		return false, fmt.Sprint(st)
	})

	nServed := 0
	for _, ok := range served {
		if ok {
			nServed++
		}
	}
	if nServed == 0 || (segments > 1 && nServed == len(served)) {
		t.Fatalf("precondition: %d of crowd 2's %d buyers are served by the sale's master %s (segments %d)",
			nServed, len(served), victim.Name, segments)
	}
	acceptedServed := func() int {
		n := 0
		for _, r := range s.scRefs() {
			if served[r.User] {
				n++
			}
		}
		return n
	}

	w.phase("the sale's master killed; crowd 2")
	victim.ShutdownNoSave()
	killed := time.Now()
	crowd := s.scCrowd("c2", 400, 4*time.Second)
	// One poll for both moments, 10 ms apart: a replica reports role master
	// (the promotion) and a buyer served by the killed master holds a ticket.
	var promoted, back time.Time
	var promotedNode string
	poll(60*time.Second, 10*time.Millisecond, func() bool {
		now := time.Now()
		if back.IsZero() && acceptedServed() > 0 {
			back = now
		}
		for _, n := range replicas {
			if promoted.IsZero() && clusterRole(roles[n]).role == "master" {
				promoted, promotedNode = now, n.Name
			}
		}
		return !promoted.IsZero() && !back.IsZero()
	})
	if promoted.IsZero() {
		t.Fatalf("no replica of %s (%d of them) reports role master 60s after the kill", victim.Name, len(replicas))
	}
	if back.IsZero() {
		t.Fatalf("no purchase accepted within 60s of the kill of %s (%s after it, %s promoted)",
			victim.Name, promoted.Sub(killed).Round(100*time.Millisecond), promotedNode)
	}
	sincePromotion := back.Sub(promoted)
	t.Logf("master %s killed (it served %d of crowd 2's %d buyers); replica %s promoted %s later; a purchase it served was accepted again %s after the kill, %s after the promotion",
		victim.Name, nServed, len(served), promotedNode, promoted.Sub(killed).Round(10*time.Millisecond),
		back.Sub(killed).Round(10*time.Millisecond), sincePromotion.Round(10*time.Millisecond))
	if sincePromotion > 10*time.Second {
		t.Errorf("a purchase was accepted again only %s after the promotion of %s, want within 10s",
			sincePromotion.Round(10*time.Millisecond), promotedNode)
	}
	if d := back.Sub(killed); d > 20*time.Second {
		t.Errorf("a purchase was accepted again only %s after the kill of %s, want within 20s", d.Round(10*time.Millisecond), victim.Name)
	}
	crowd.Wait()
	w.phase("settle")
	res := s.settle(scSaleSettle...)
	scNoFailed(t, res)
	if units := scMustLiveUnits(t, e, s.ID); units != stock {
		t.Errorf("%d units in orders once the crowd is done, want all %d (the crowd asked for more)", units, stock)
	}
	// The watch reads live units shard by shard: it stops before orders are
	// cancelled (see scLiveUnits).
	w.stop()

	// Units given up go back on sale once, paid ones are sold (checking
	// every guarantee again).
	s.payAndCancel(res, 10)

	// The delayq processes expire unpaid orders of a sale with a 2 s window.
	short, spec := expireShortSale(t, c, "the delayq processes")
	fxReconcileAgrees(t, e, short, stockView{Total: spec.Stock, Available: spec.Stock})

	for _, p := range procs {
		p.Stop() // every process stops gracefully (exit 0), the dead node still in the cluster
	}
}

// startRedisCluster starts a private Redis Cluster of three masters and three
// replicas (redis-cli --cluster create, cluster-node-timeout nodeTimeout: how
// long a master may not answer before its replica takes over) and waits until
// every node reports cluster_state:ok. It returns the nodes and their
// addresses, in the same order.
func startRedisCluster(t *testing.T, nodeTimeout time.Duration) ([]*privateRedis, []string) {
	t.Helper()
	nodes := make([]*privateRedis, 6)
	addrs := make([]string, 6)
	for i := range nodes {
		nodes[i] = startPrivateRedis(t, fmt.Sprintf("node%d", i), "--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", strconv.Itoa(int(nodeTimeout.Milliseconds())))
		addrs[i] = nodes[i].Addr
	}
	out, err := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, addrs...),
		"--cluster-replicas", "1", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	eventually(t, 30*time.Second, "the cluster is ok on every node", func() (bool, string) {
		for _, n := range nodes {
			if st := n.Info("cluster")["cluster_enabled"]; st != "1" {
				return false, n.Name + " cluster_enabled " + st
			}
			info, _ := n.Do("CLUSTER", "INFO").(string)
			if !strings.Contains(info, "cluster_state:ok") {
				return false, n.Name + ": " + info
			}
		}
		return true, ""
	})
	return nodes, addrs
}

// nodeOf returns the node listening on addr (host:port), or nil.
func nodeOf(nodes []*privateRedis, addr string) *privateRedis {
	for _, n := range nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// nodeRole is a Redis node's ROLE: master, or slave of master (host:port)
// with its link's state ("connected" once in sync).
type nodeRole struct {
	role, master, state string
	err                 error
}

// clusterRole reads the node's ROLE within 500 ms.
func clusterRole(c *redis.Client) nodeRole {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	v, err := c.Do(ctx, "ROLE").Slice()
	if err != nil || len(v) == 0 {
		return nodeRole{err: fmt.Errorf("ROLE: %v %v", v, err)}
	}
	r := nodeRole{role: fmt.Sprint(v[0])}
	if r.role == "slave" && len(v) >= 4 {
		r.master = net.JoinHostPort(fmt.Sprint(v[1]), fmt.Sprint(v[2]))
		r.state = fmt.Sprint(v[3])
	}
	return r
}
