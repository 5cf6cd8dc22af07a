package service

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"
)

// TestHTTPMaxConns: with MaxConns 3, three clients holding keep-alive
// connections leave a fourth connected but unanswered (its connection waits
// to be accepted; the server never holds more than 3), until one of the three
// closes: then the fourth is answered.
func TestHTTPMaxConns(t *testing.T) {
	const maxConns = 3
	var mu sync.Mutex
	open, peak := 0, 0
	srv := &http.Server{Addr: freeLoopback(t), ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			mu.Lock()
			defer mu.Unlock()
			switch s {
			case http.StateNew:
				open++
				peak = max(peak, open)
			case http.StateClosed, http.StateHijacked:
				open--
			}
		}}
	h := &HTTP{Server: srv, MaxConns: maxConns}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h.Stop(context.Background())

	ask := func(c net.Conn, wait time.Duration) error {
		c.SetDeadline(time.Now().Add(wait))
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	var held []net.Conn
	for i := range maxConns + 1 {
		c, err := net.Dial("tcp", srv.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
		if i < maxConns {
			if err := ask(c, 5*time.Second); err != nil {
				t.Fatalf("connection %d of %d: %v", i+1, maxConns, err)
			}
		}
	}
	last := held[maxConns]
	// The fourth is connected (the kernel completed it) but not accepted: no
	// answer within 300 ms.
	if err := ask(last, 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection %d with %d open: %v, want no answer (it waits to be accepted)", maxConns+1, maxConns, err)
	}
	held[0].Close()
	// Its request was written: it is answered once accepted.
	last.SetDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(last), nil)
	if err != nil {
		t.Fatalf("connection %d after one closed: %v, want an answer", maxConns+1, err)
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if peak > maxConns {
		t.Errorf("the server held %d connections at once, cap %d", peak, maxConns)
	}
}

// freeLoopback is a loopback address free a moment ago.
func freeLoopback(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
