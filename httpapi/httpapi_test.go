package httpapi

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

// /readyz answers 200 while every check passes; a failing check answers 503
// unavailable naming it, and its cause is logged.
func TestReadyzNamesAndLogsWhatFailed(t *testing.T) {
	var logged bytes.Buffer
	failing := false
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.GET("/readyz", Readyz(slog.New(slog.NewTextHandler(&logged, nil)), []Check{
		func(context.Context) error { return nil },
		func(context.Context) error {
			if failing {
				return errors.New("redis: connection refused")
			}
			return nil
		},
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
	if w := get(); w.Code != 503 || !strings.Contains(w.Body.String(), `"code":"unavailable"`) || !strings.Contains(w.Body.String(), "redis: connection refused") {
		t.Errorf("not ready: %d %s", w.Code, w.Body)
	}
	if !strings.Contains(logged.String(), "answering 503") || !strings.Contains(logged.String(), "redis: connection refused") {
		t.Errorf("the cause was not logged: %q", logged.String())
	}
}
