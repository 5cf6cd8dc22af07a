package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flashsale/flashsale/service"
)

// RunLeases runs the lease store's suite (service.Leases: the Redis one and
// the MySQL one must behave alike): one holder at a time, a refresh only by
// the holder while the lease lasts, the next holder once it ends or is
// released. Each case uses keys of its own.
func RunLeases(t *testing.T, leases service.Leases) {
	t.Helper()
	ctx := context.Background()
	t.Run("OneHolderAtATime", func(t *testing.T) {
		key := "lease-" + uuid.NewString()
		a, err := leases.Obtain(ctx, key, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leases.Obtain(ctx, key, time.Minute); !errors.Is(err, service.ErrNotObtained) {
			t.Fatalf("a second obtain while held: %v, want ErrNotObtained", err)
		}
		if err := a.Refresh(ctx, time.Minute); err != nil {
			t.Fatalf("the holder's refresh: %v", err)
		}
		if err := a.Release(ctx); err != nil {
			t.Fatal(err)
		}
		b, err := leases.Obtain(ctx, key, time.Minute)
		if err != nil {
			t.Fatalf("obtain after a release: %v", err)
		}
		if err := a.Refresh(ctx, time.Minute); err == nil {
			t.Fatal("the released holder refreshed the lease the next one holds")
		}
		if err := b.Refresh(ctx, time.Minute); err != nil {
			t.Fatalf("the new holder's refresh: %v", err)
		}
	})
	t.Run("AnEndedLeaseGoesToTheNext", func(t *testing.T) {
		key := "lease-" + uuid.NewString()
		a, err := leases.Obtain(ctx, key, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		var b service.Lease
		deadline := time.Now().Add(5 * time.Second)
		for b == nil {
			if time.Now().After(deadline) {
				t.Fatal("the lease never went to the next holder after it ended")
			}
			switch l, err := leases.Obtain(ctx, key, time.Minute); {
			case err == nil:
				b = l
			case !errors.Is(err, service.ErrNotObtained):
				t.Fatal(err)
			}
		}
		if err := a.Refresh(ctx, time.Minute); err == nil {
			t.Fatal("the first holder refreshed a lease that ended and went to another")
		}
		if err := a.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.Refresh(ctx, time.Minute); err != nil {
			t.Fatalf("the first holder's release took the next one's lease: %v", err)
		}
	})
}
