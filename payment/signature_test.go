package payment

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"payment_id":"p1","order_id":"o1","amount_cents":100,"status":"succeeded"}`)
	good := Sign("new", now, body)
	old := Sign("old", now, body)
	ts := strconv.FormatInt(now.Unix(), 10)
	cases := []struct {
		name    string
		header  string
		body    []byte
		secrets []string
		now     time.Time
		ok      bool
	}{
		{"valid", good, body, []string{"new"}, now, true},
		{"rotation: old secret still configured", old, body, []string{"old", "new"}, now, true},
		{"rotation: several v1 entries, one matches", "t=" + ts + ",v1=00ff,v1=" + strings.Split(good, "v1=")[1], body, []string{"new"}, now, true},
		{"tampered body", good, append([]byte(nil), append(body[:len(body)-2], []byte(`X"}`)...)...), []string{"new"}, now, false},
		{"wrong secret", good, body, []string{"other"}, now, false},
		{"missing header", "", body, []string{"new"}, now, false},
		{"no v1", "t=" + ts, body, []string{"new"}, now, false},
		{"t 301 s old", good, body, []string{"new"}, now.Add(301 * time.Second), false},
		{"t 300 s old", good, body, []string{"new"}, now.Add(300 * time.Second), true},
		{"t 301 s in the future", good, body, []string{"new"}, now.Add(-301 * time.Second), false},
		{"t not a number", "t=abc,v1=" + strings.Split(good, "v1=")[1], body, []string{"new"}, now, false},
		{"signature over another t", "t=" + strconv.FormatInt(now.Unix()+1, 10) + ",v1=" + strings.Split(good, "v1=")[1], body, []string{"new"}, now, false},
	}
	for _, c := range cases {
		err := Verify(c.header, c.body, c.secrets, c.now, 300*time.Second)
		if (err == nil) != c.ok {
			t.Errorf("%s: Verify = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

// TestVerifyHidesClock: a stale t is refused without saying how far off it is.
func TestVerifyHidesClock(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{}`)
	err := Verify(Sign("secret-0123456789", now, body), body, []string{"secret-0123456789"}, now.Add(1234*time.Second), 300*time.Second)
	if err == nil {
		t.Fatal("a t 1234 s old was accepted")
	}
	for _, leak := range []string{"1234", "20m", "34s"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("message %q reveals the clock offset (%q)", err, leak)
		}
	}
}
