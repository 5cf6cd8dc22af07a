// Package catalog is the read-through cache of sales every role consults on its
// hot path. Sales never change after creation, so a sale once read is kept for
// the life of the process (bounded by MaxEntries).
//
// Unknown ids cost no query each: the catalog also keeps the set of every sale
// id, and an id outside it is answered not found only after a refresh of the
// set that started after the request arrived (one index-only scan, at most one
// per MinRefresh however many unknown ids are asked for; a request may wait up
// to MinRefresh for it). A sale whose creation committed on another process
// before the request arrived is therefore always found. Should the set be
// unreadable, the catalog falls back to one lookup per id, remembering an
// unknown id for NegativeTTL.
package catalog

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/flashsale/flashsale"
)

// Store is where sales are kept.
type Store interface {
	// CreateSale returns an error wrapping flashsale.ErrConflict for an existing id.
	CreateSale(ctx context.Context, s *flashsale.Sale) error
	// GetSale returns an error wrapping flashsale.ErrNotFound for an unknown id.
	GetSale(ctx context.Context, id string) (*flashsale.Sale, error)
	// SaleIDs returns the id of every sale.
	SaleIDs(ctx context.Context) ([]string, error)
}

// StockInit loads a new sale's stock where the hot path holds it.
type StockInit interface {
	InitSale(ctx context.Context, s *flashsale.Sale) error
}

// Config for a Catalog.
type Config struct {
	Store Store     // required
	Stock StockInit // required
	// NegativeTTL is how long "no such sale" is remembered. Default 1 s.
	NegativeTTL time.Duration
	// MaxEntries bounds the cache; when full it is emptied. Default 10,000.
	MaxEntries int
	// MinRefresh is the least time between two reads of the set of sale ids.
	// Default 250 ms.
	MinRefresh time.Duration
}

// Catalog caches sales. Safe for concurrent use.
type Catalog struct {
	cfg     Config
	mu      sync.RWMutex
	sales   map[string]*flashsale.Sale
	missing map[string]time.Time
	ids     knownIDs
}

// New returns a Catalog.
func New(cfg Config) (*Catalog, error) {
	if cfg.Store == nil || cfg.Stock == nil {
		return nil, errors.New("catalog: Store and Stock are required")
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = time.Second
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = 10000
	}
	if cfg.MinRefresh == 0 {
		cfg.MinRefresh = 250 * time.Millisecond
	}
	return &Catalog{cfg: cfg, sales: map[string]*flashsale.Sale{}, missing: map[string]time.Time{}}, nil
}

// Create stores a new sale in the book of record, then loads its stock. A crash
// between the two is harmless: a sale with no stock keys is rebuilt on first use.
func (c *Catalog) Create(ctx context.Context, s *flashsale.Sale) error {
	if err := c.cfg.Store.CreateSale(ctx, s); err != nil {
		return err
	}
	if err := c.cfg.Stock.InitSale(ctx, s); err != nil {
		return err
	}
	c.put(s)
	return nil
}

// Get returns the sale, from memory when it can.
func (c *Catalog) Get(ctx context.Context, id string) (*flashsale.Sale, error) {
	c.mu.RLock()
	s, ok := c.sales[id]
	missAt, missing := c.missing[id]
	c.mu.RUnlock()
	if ok {
		return s, nil
	}
	if missing && time.Since(missAt) < c.cfg.NegativeTTL {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "no sale %q", id)
	}
	if !flashsale.ValidID(id) {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "no sale %q", id)
	}
	var err error
	if c.ids.unknown(ctx, c.cfg, id) {
		err = flashsale.Errorf(flashsale.CodeNotFound, "no sale %q", id)
	} else {
		s, err = c.cfg.Store.GetSale(ctx, id)
	}
	if errors.Is(err, flashsale.ErrNotFound) {
		c.mu.Lock()
		if len(c.missing) >= c.cfg.MaxEntries {
			clear(c.missing)
		}
		c.missing[id] = time.Now()
		c.mu.Unlock()
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	c.put(s)
	return s, nil
}

func (c *Catalog) put(s *flashsale.Sale) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sales) >= c.cfg.MaxEntries {
		clear(c.sales)
	}
	c.sales[s.ID] = s
	delete(c.missing, s.ID)
	c.ids.add(s.ID)
}
