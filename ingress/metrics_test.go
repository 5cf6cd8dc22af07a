package ingress

import "testing"

func TestOutcomeOf(t *testing.T) {
	for _, c := range []struct {
		status int
		code   string
		want   string
	}{
		{202, "", "admitted"}, {200, "", "existing"}, {429, "rate_limited", "rate_limited"},
		{409, "sold_out", "sold_out"}, {409, "limit_reached", "limit_reached"}, {403, "not_qualified", "not_qualified"},
		{403, "blocked", "blocked"}, {503, "unavailable", "unavailable"},
		{409, "not_started", ""}, {409, "ended", ""}, {422, "invalid_quantity", ""}, {404, "not_found", ""},
		{400, "bad_request", ""}, {401, "unauthorized", ""},
	} {
		if got := outcomeOf(c.status, c.code); got != c.want {
			t.Errorf("outcomeOf(%d, %q) = %q, want %q", c.status, c.code, got, c.want)
		}
	}
}
