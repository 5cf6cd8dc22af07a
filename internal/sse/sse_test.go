package sse

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestReaderReadsEventsCommentsAndIDs(t *testing.T) {
	stream := "retry: 1000\n\n" +
		"id: 7\nevent: ticket\ndata: {\"a\":1}\n\n" +
		": keep-alive\n\n" +
		"data: one\r\ndata: two\r\n\r\n" +
		"id: 8\nevent: ticket\ndata: cut"
	r := NewReader(strings.NewReader(stream))
	want := []Event{
		{Retry: time.Second},
		{ID: "7", LastID: "7", Type: "ticket", Data: `{"a":1}`},
		{Comment: true},
		{LastID: "7", Type: "message", Data: "one\ntwo"},
	}
	for i, w := range want {
		got, err := r.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if got != w {
			t.Fatalf("event %d = %+v, want %+v", i, got, w)
		}
	}
	if ev, err := r.Next(); err != io.EOF {
		t.Fatalf("an event cut short = %+v %v, want io.EOF (not dispatched)", ev, err)
	}
}
