package e2e

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// tcpProxy forwards a local port to a target address. Down closes the
// listener and every live connection (the peer sees the service vanish and
// new connections are refused); Up listens on the same port again. It lets a
// test cut one process off a shared service without disturbing anyone else.
type tcpProxy struct {
	t    *testing.T
	Addr string
	// upstream copies what the client sends to the target; nil: io.Copy.
	// Set it before the first connection (see newCommitProxy).
	upstream func(dst io.Writer, src io.Reader)

	mu     sync.Mutex
	target string
	ln     net.Listener
	conns  map[net.Conn]struct{}
}

func newProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &tcpProxy{t: t, target: target, Addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(p.Down)
	return p
}

// amqpProxy puts a proxy in front of the broker of FLASHSALE_AMQP_URL and
// returns it with the URL that goes through it.
func amqpProxy(t *testing.T) (*tcpProxy, string) {
	t.Helper()
	u, err := url.Parse(amqpURL())
	if err != nil {
		t.Fatalf("FLASHSALE_AMQP_URL: %v", err)
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5672")
	}
	p := newProxy(t, target)
	u.Host = p.Addr
	return p, u.String()
}

func (p *tcpProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(ln, c)
		}
	}()
}

// track registers c unless the listener it came from is no longer the live
// one (Down ran meanwhile), in which case it reports false.
func (p *tcpProxy) track(ln net.Listener, cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != ln {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *tcpProxy) pipe(ln net.Listener, c net.Conn) {
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	u, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(ln, c, u) {
		c.Close()
		u.Close()
		return
	}
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			c.Close()
			u.Close()
			p.mu.Lock()
			delete(p.conns, c)
			delete(p.conns, u)
			p.mu.Unlock()
		})
	}
	go func() {
		if p.upstream != nil {
			p.upstream(u, c)
		} else {
			io.Copy(u, c)
		}
		closeBoth()
	}()
	io.Copy(c, u)
	closeBoth()
}

// Down stops accepting and cuts every live connection. Idempotent.
func (p *tcpProxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// Retarget sends every new connection to target from now on and cuts the live
// ones, so that their clients reconnect, now to target (a failover behind a
// stable address).
func (p *tcpProxy) Retarget(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// Up listens on the same port again. Idempotent.
func (p *tcpProxy) Up() {
	p.t.Helper()
	p.mu.Lock()
	up := p.ln != nil
	p.mu.Unlock()
	if up {
		return
	}
	var ln net.Listener
	var err error
	if !poll(10*time.Second, 50*time.Millisecond, func() bool {
		ln, err = net.Listen("tcp", p.Addr)
		return err == nil
	}) {
		p.t.Fatalf("proxy Up on %s: %v", p.Addr, err)
	}
	p.serve(ln)
}
