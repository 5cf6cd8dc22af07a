// Package reservation is the reservation phase of sales: users reserve during
// [opens_at, closes_at), and only those who reserved may buy once the sale opens.
//
// MySQL (the Book) is the book of record and makes the capacity exact: a
// reservation and the increment of its sale's counter commit in one transaction,
// the increment conditional on the counter being below the capacity, so no
// number of concurrent users ever pushes the count past it and a retrying user is
// never counted twice. After the commit the user is added to the sale's
// qualified set in Redis (the Cache), which is all the purchase path reads. When
// Redis lost that set, the first check rebuilds it from MySQL (one rebuild per
// sale per process at a time; across processes a lease in Redis serialises them,
// and the set's union semantics keep concurrent rebuilds correct).
//
// If the Redis write after a commit fails, Reserve returns an error: the
// reservation stands, and the user's retry (answered as "already reserved")
// writes the qualification again. Reservations are never cancelled, so the set
// only grows and a full sale stays full.
package reservation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/flashsale/flashsale"
)

// Book is the book of record of reservations (MySQL).
type Book interface {
	// Reserve records r unless the user already reserved the sale, counting it
	// against capacity (0 = unlimited), atomically. It returns the stored
	// reservation and created=true, or the existing one and created=false; an
	// error with code reservations_full when the sale has capacity reservations.
	Reserve(ctx context.Context, r *flashsale.UserReservation, capacity int) (*flashsale.UserReservation, bool, error)
	// GetReservation returns an error with code not_found when the user did not
	// reserve the sale.
	GetReservation(ctx context.Context, saleID, userID string) (*flashsale.UserReservation, error)
	// ReservedUsers pages through the users who reserved the sale, in byte
	// order: up to limit ids greater than after.
	ReservedUsers(ctx context.Context, saleID, after string, limit int) ([]string, error)
	// ReservationCount is how many users reserved the sale.
	ReservationCount(ctx context.Context, saleID string) (int, error)
}

// Cache is the purchase path's view of who reserved (Redis).
type Cache interface {
	// Qualified reports whether the user is in the sale's qualified set, or
	// returns an error wrapping flashsale.ErrNotLoaded when the set is not loaded.
	Qualified(ctx context.Context, saleID, userID string) (bool, error)
	// AddQualified adds users to the set (idempotent).
	AddQualified(ctx context.Context, saleID string, userIDs ...string) error
	// LoadQualified fills the set from the book of record unless it is loaded,
	// then marks it loaded; it returns nil once the set is loaded.
	LoadQualified(ctx context.Context, saleID string, fill func(ctx context.Context, add func(userIDs ...string) error) error) error
}

// Config for a Service.
type Config struct {
	Book  Book  // required
	Cache Cache // required
	// PageSize is how many users a rebuild reads from the Book at a time.
	// Default 5000.
	PageSize int
	// CountTTL is how long this process reuses a sale's reservation count for
	// sale views. Default 1 s; a reservation made through this process refreshes
	// it at once.
	CountTTL time.Duration
	// LoadTimeout bounds a rebuild of a lost qualified set. Default 60 s.
	LoadTimeout time.Duration
	// Log default slog.Default().
	Log *slog.Logger
	// Now is the clock the window is checked against; default time.Now.
	Now func() time.Time
}

// Service runs the reservation phase. Safe for concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	loading  map[string]*load       // sale id -> the rebuild in flight
	counts   map[string]cachedCount // sale id -> its count for sale views
	versions map[string]uint64      // sale id -> reservations made here
	full     map[string]bool        // sales known to be full (they stay full)
}

type load struct {
	done chan struct{}
	err  error
}

type cachedCount struct {
	n  int
	at time.Time
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Book == nil || cfg.Cache == nil {
		return nil, errors.New("reservation: Book and Cache are required")
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = 5000
	}
	if cfg.PageSize < 1 {
		return nil, errors.New("reservation: PageSize must be positive")
	}
	if cfg.CountTTL == 0 {
		cfg.CountTTL = time.Second
	}
	if cfg.LoadTimeout == 0 {
		cfg.LoadTimeout = 60 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, log: cfg.Log, loading: map[string]*load{},
		counts: map[string]cachedCount{}, versions: map[string]uint64{}, full: map[string]bool{}}, nil
}

// Reserve reserves the sale for userID. It returns the reservation and
// created=true, or the user's existing reservation and created=false. Errors
// with a code: no_reservation (the sale has no reservation phase),
// reservation_closed (outside [opens_at, closes_at) by the server's clock),
// reservations_full (capacity reached). Any other error leaves the user free to
// retry: a retry never counts them twice.
func (s *Service) Reserve(ctx context.Context, sale *flashsale.Sale, userID string) (*flashsale.UserReservation, bool, error) {
	phase := sale.Reservation
	if phase == nil {
		return nil, false, flashsale.Errorf(flashsale.CodeNoReservation, "sale %q has no reservation phase", sale.ID)
	}
	now := s.cfg.Now().UTC()
	if now.Before(phase.OpensAt) {
		return nil, false, flashsale.Errorf(flashsale.CodeReservationClosed, "reservations open at %s",
			phase.OpensAt.UTC().Format(time.RFC3339))
	}
	if !now.Before(phase.ClosesAt) {
		return nil, false, flashsale.Errorf(flashsale.CodeReservationClosed, "reservations closed at %s",
			phase.ClosesAt.UTC().Format(time.RFC3339))
	}
	var r *flashsale.UserReservation
	var created bool
	var err error
	if s.isFull(sale.ID) {
		// Full for good: only a user who already reserved gets an answer other
		// than reservations_full, and that is a read by primary key instead of a
		// wait on the sale's counter row.
		r, err = s.cfg.Book.GetReservation(ctx, sale.ID, userID)
		if flashsale.ErrorCode(err) == flashsale.CodeNotFound {
			return nil, false, fullError(sale)
		}
	} else {
		r, created, err = s.cfg.Book.Reserve(ctx, &flashsale.UserReservation{SaleID: sale.ID, UserID: userID,
			ReservedAt: now.Truncate(time.Microsecond)}, phase.Capacity)
		if flashsale.ErrorCode(err) == flashsale.CodeReservationsFull {
			s.mu.Lock()
			s.full[sale.ID] = true
			s.mu.Unlock()
		}
	}
	if err != nil {
		return nil, false, err
	}
	if created {
		s.mu.Lock()
		delete(s.counts, sale.ID)
		s.versions[sale.ID]++
		s.mu.Unlock()
	}
	// After the commit, and again on every retry: the purchase path reads only
	// this copy.
	if err := s.cfg.Cache.AddQualified(ctx, sale.ID, userID); err != nil {
		return nil, false, fmt.Errorf("reservation: recorded, but not yet qualified for purchase (retry): %w", err)
	}
	return r, created, nil
}

func fullError(sale *flashsale.Sale) error {
	return flashsale.Errorf(flashsale.CodeReservationsFull, "all %d reservations of sale %q are taken",
		sale.Reservation.Capacity, sale.ID)
}

func (s *Service) isFull(saleID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.full[saleID]
}

// Reservation returns the user's reservation of the sale, or an error with code
// not_found (also for a sale without a reservation phase). It re-asserts the
// user's qualification in Redis, best effort.
func (s *Service) Reservation(ctx context.Context, sale *flashsale.Sale, userID string) (*flashsale.UserReservation, error) {
	if sale.Reservation == nil {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "sale %q has no reservation phase", sale.ID)
	}
	r, err := s.cfg.Book.GetReservation(ctx, sale.ID, userID)
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Cache.AddQualified(ctx, sale.ID, userID); err != nil {
		s.log.Warn("cannot re-assert a qualification", "sale", sale.ID, "user", userID, "err", err)
	}
	return r, nil
}

// Qualified reports whether userID may buy the sale: always for a sale without
// a reservation phase, else whether they reserved it. It reads Redis only,
// unless Redis lost the sale's qualified set, which it then rebuilds from the
// Book first.
func (s *Service) Qualified(ctx context.Context, sale *flashsale.Sale, userID string) (bool, error) {
	if sale.Reservation == nil {
		return true, nil
	}
	ok, err := s.cfg.Cache.Qualified(ctx, sale.ID, userID)
	if !errors.Is(err, flashsale.ErrNotLoaded) {
		return ok, err
	}
	if err := s.load(ctx, sale.ID); err != nil {
		return false, err
	}
	return s.cfg.Cache.Qualified(ctx, sale.ID, userID)
}

// Count is how many users reserved the sale, as the Book counts them; a sale
// view may see it up to CountTTL late.
func (s *Service) Count(ctx context.Context, sale *flashsale.Sale) (int, error) {
	now := time.Now()
	s.mu.Lock()
	c, ok := s.counts[sale.ID]
	version := s.versions[sale.ID]
	s.mu.Unlock()
	if ok && now.Sub(c.at) < s.cfg.CountTTL {
		return c.n, nil
	}
	n, err := s.cfg.Book.ReservationCount(ctx, sale.ID)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	if len(s.counts) > 10000 {
		clear(s.counts)
	}
	// Not if a reservation was made here meanwhile: n may miss it.
	if s.versions[sale.ID] == version {
		s.counts[sale.ID] = cachedCount{n: n, at: now}
	}
	s.mu.Unlock()
	return n, nil
}

// load rebuilds the sale's qualified set. Concurrent callers in this process
// share one rebuild; each waits for it as long as its own ctx allows.
func (s *Service) load(ctx context.Context, saleID string) error {
	s.mu.Lock()
	l, running := s.loading[saleID]
	if !running {
		l = &load{done: make(chan struct{})}
		s.loading[saleID] = l
		go func() {
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.LoadTimeout)
			defer cancel()
			l.err = s.cfg.Cache.LoadQualified(lctx, saleID, func(ctx context.Context, add func(...string) error) error {
				return s.fill(ctx, saleID, add)
			})
			s.mu.Lock()
			delete(s.loading, saleID)
			s.mu.Unlock()
			close(l.done)
		}()
	}
	s.mu.Unlock()
	select {
	case <-l.done:
		return l.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fill adds every user who reserved the sale, page by page.
func (s *Service) fill(ctx context.Context, saleID string, add func(...string) error) error {
	after := ""
	for {
		users, err := s.cfg.Book.ReservedUsers(ctx, saleID, after, s.cfg.PageSize)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			if err := add(users...); err != nil {
				return err
			}
			after = users[len(users)-1]
		}
		if len(users) < s.cfg.PageSize {
			return nil
		}
	}
}
