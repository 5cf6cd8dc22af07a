package mock

import (
	"fmt"
	"sync"
)

// Steps records, in order, what fakes were asked to do ("hold a", "decide
// sold_out", "release a"). Fakes that share one (a Stock and a Book built
// with the same Steps) record their calls interleaved, so a test can check
// the order of effects across dependencies. Safe for concurrent use.
type Steps struct {
	mu   sync.Mutex
	list []string
}

// Add records one step.
func (s *Steps) Add(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, fmt.Sprintf(format, args...))
}

// List returns the steps so far.
func (s *Steps) List() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.list...)
}

// String is the steps as fmt prints a []string: "[hold a release a]".
func (s *Steps) String() string { return fmt.Sprint(s.List()) }

// Reset forgets the steps so far.
func (s *Steps) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = nil
}
