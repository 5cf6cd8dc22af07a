package admission

import (
	"testing"
	"time"
)

func TestWindowLimiterAdmitsLimitPerWindowPerKey(t *testing.T) {
	l := newWindowLimiter(3, 10*time.Millisecond)
	base := time.Unix(1700000000, 0)
	admitted := 0
	for i := 0; i < 10; i++ {
		if l.Allow("a", base.Add(time.Duration(i)*time.Millisecond/2)) {
			admitted++
		}
	}
	if admitted != 3 {
		t.Fatalf("admitted %d in one window, want 3", admitted)
	}
	if !l.Allow("b", base) {
		t.Fatal("another sale shares the window of the first")
	}
	for i := 0; i < 3; i++ {
		if !l.Allow("a", base.Add(10*time.Millisecond)) {
			t.Fatal("the next window did not admit")
		}
	}
	if l.Allow("a", base.Add(9*time.Millisecond)) {
		t.Fatal("a late request of a past window was admitted beyond the current window's limit")
	}
}

func TestWindowLimiterZeroDisables(t *testing.T) {
	l := newWindowLimiter(0, 10*time.Millisecond)
	for i := 0; i < 1000; i++ {
		if !l.Allow("a", time.Unix(0, 0)) {
			t.Fatal("a limit of 0 rejected a request")
		}
	}
}
