package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// /readyz answers 200 while every check passes; a failing check answers 503
// unavailable naming it (not its cause, which may hold internal addresses),
// and its cause is logged.
func TestReadyzNamesAndLogsWhatFailed(t *testing.T) {
	var logged bytes.Buffer
	failing := false
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.GET("/readyz", Readyz(slog.New(slog.NewTextHandler(&logged, nil)), []Check{
		func(context.Context) error { return nil },
		Named("redis", func(context.Context) error {
			if failing {
				return errors.New("dial tcp 10.0.1.11:6379: connection refused")
			}
			return nil
		}),
	}))
	get := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		e.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		return w
	}
	if w := get(); w.Code != 200 || w.Body.String() != `{"status":"ready"}` {
		t.Errorf("ready: %d %s", w.Code, w.Body)
	}
	if logged.Len() > 0 {
		t.Errorf("a ready answer logged %q", logged.String())
	}
	failing = true
	if w := get(); w.Code != 503 || !strings.Contains(w.Body.String(), `"code":"unavailable"`) || !strings.Contains(w.Body.String(), "not ready: redis not answering") ||
		strings.Contains(w.Body.String(), "10.0.1.11") {
		t.Errorf("not ready: %d %s, want the failed check's name only", w.Code, w.Body)
	}
	if !strings.Contains(logged.String(), "answering 503") || !strings.Contains(logged.String(), "redis: dial tcp 10.0.1.11:6379: connection refused") {
		t.Errorf("the cause was not logged: %q", logged.String())
	}
}

// A client that hangs up while a dependency answers is recorded 499 and
// logged at debug only, whatever error the dependency returned; a deadline of
// the server's own still answers 503 unavailable with its cause at WARN.
func TestClientHangupIsNoDependencyFailure(t *testing.T) {
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	statuses := make(chan int, 1)
	e.Use(func(c *gin.Context) {
		c.Next()
		statuses <- c.Writer.Status()
	})
	inHandler := make(chan struct{}, 1)
	e.GET("/slow", func(c *gin.Context) {
		ctx := c.Request.Context()
		if c.Query("deadline") != "" {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			c.Request = c.Request.WithContext(ctx)
		}
		inHandler <- struct{}{}
		<-ctx.Done() // a dependency that answers only when the request ends
		WriteError(c, log, fmt.Errorf("mysql: %w", ctx.Err()))
	})
	srv := httptest.NewServer(e)
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/slow", nil)
	go func() { <-inHandler; cancel() }()
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("the hung-up request got an answer")
	}
	if got := <-statuses; got != StatusClientClosed {
		t.Errorf("a hang-up recorded %d, want %d", got, StatusClientClosed)
	}
	if strings.Contains(logged.String(), "level=WARN") || !strings.Contains(logged.String(), "went away") {
		t.Errorf("a hang-up logged %q, want one debug line", logged.String())
	}

	logged.Reset()
	resp, err := http.Get(srv.URL + "/slow?deadline=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	<-inHandler
	if got := <-statuses; resp.StatusCode != 503 || got != 503 {
		t.Errorf("a deadline: answered %d, recorded %d; want 503", resp.StatusCode, got)
	}
	if !strings.Contains(logged.String(), "level=WARN") || !strings.Contains(logged.String(), "deadline exceeded") {
		t.Errorf("a deadline logged %q, want its cause at WARN", logged.String())
	}
}
