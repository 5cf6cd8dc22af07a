// Package sse reads a text/event-stream (server-sent events, as the HTML
// standard defines their parsing): what the ticket event streams send, read
// by the load generator's followers and by the tests.
//
// It reads one stream from an io.Reader; reconnecting (with Last-Event-ID)
// is the caller's. Fields other than id, event, data and retry are ignored,
// as the standard says; an id containing NUL is ignored too.
package sse

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"time"
)

// Event is one event, or one comment line.
type Event struct {
	// Comment is set for a comment line (":" and what follows); the other
	// fields are then empty.
	Comment bool
	// ID is the event's id field; LastID is the stream's last event id as
	// it stands after this event (ids persist across events without one).
	ID, LastID string
	// Type is the event field ("message" when absent); "" for a block
	// without data, which the standard does not dispatch (a retry or id
	// alone).
	Type string
	// Data is the data lines joined with "\n".
	Data string
	// Retry is the reconnection time the stream asked for with this event
	// (0: none).
	Retry time.Duration
}

// Reader reads events from a stream. Not safe for concurrent use.
type Reader struct {
	r      *bufio.Reader
	lastID string
}

// NewReader reads the stream r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 16<<10)} }

// Next returns the next event or comment line. At the end of the stream it
// returns io.EOF (an event not ended by a blank line is dropped, as the
// standard says), or the read error.
func (r *Reader) Next() (Event, error) {
	var ev Event
	var data []string
	seen := false
	for {
		line, err := r.r.ReadString('\n')
		if err != nil {
			if err == io.EOF && line == "" {
				return Event{}, io.EOF
			}
			if err != io.EOF {
				return Event{}, err
			}
			return Event{}, io.EOF // an unterminated line ends the stream
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if !seen {
				continue
			}
			switch {
			case len(data) == 0: // no event (a retry or id alone): Type ""
				ev.Type = ""
			case ev.Type == "":
				ev.Type = "message"
			}
			ev.Data = strings.Join(data, "\n")
			ev.LastID = r.lastID
			return ev, nil
		}
		if strings.HasPrefix(line, ":") && !seen {
			return Event{Comment: true}, nil
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			continue // a comment within an event
		case "id":
			if !strings.Contains(value, "\x00") {
				ev.ID, r.lastID = value, value
			}
		case "event":
			ev.Type = value
		case "data":
			data = append(data, value)
		case "retry":
			if ms, err := strconv.Atoi(value); err == nil {
				ev.Retry = time.Duration(ms) * time.Millisecond
			}
		}
		seen = true
	}
}
