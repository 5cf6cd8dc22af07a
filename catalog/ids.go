package catalog

import (
	"context"
	"sync"
	"time"

	"github.com/flashsale/flashsale/service"
)

// knownIDs is the set of every sale id, read whole from the store and read
// again when an id outside it is asked for: at most once per MinRefresh, so a
// flood of unknown ids costs at most one index-only scan per MinRefresh.
type knownIDs struct {
	refresh sync.Mutex // held by the one reader of the store, and its wait

	mu     sync.RWMutex
	ids    map[string]struct{}
	readAt time.Time // when the last successful read started
}

// unknown reports whether id is certainly not a sale: it is outside the set as
// read by a refresh that started after this call did, so a sale committed
// before the request arrived is always found. Such a refresh may have to wait
// for MinRefresh to pass since the previous one (an unknown id is answered up
// to MinRefresh late). It reports false when the set cannot be read: the
// caller then asks the store.
func (k *knownIDs) unknown(ctx context.Context, cfg Config, id string) bool {
	if k.has(id) {
		return false
	}
	asked := time.Now()
	k.refresh.Lock()
	defer k.refresh.Unlock()
	k.mu.RLock()
	readAt := k.readAt
	k.mu.RUnlock()
	if readAt.Before(asked) { // no read started since we asked: read now
		if wait := time.Until(readAt.Add(cfg.MinRefresh)); wait > 0 && !service.Sleep(ctx, wait) {
			return false
		}
		start := time.Now()
		ids, err := cfg.Store.SaleIDs(ctx)
		if err != nil {
			return false
		}
		set := make(map[string]struct{}, len(ids))
		for _, id := range ids {
			set[id] = struct{}{}
		}
		k.mu.Lock()
		for id := range k.ids { // created by this process meanwhile
			set[id] = struct{}{}
		}
		k.ids, k.readAt = set, start
		k.mu.Unlock()
	}
	return !k.has(id)
}

func (k *knownIDs) has(id string) bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	_, ok := k.ids[id]
	return ok
}

func (k *knownIDs) add(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ids == nil {
		k.ids = map[string]struct{}{}
	}
	k.ids[id] = struct{}{}
}
