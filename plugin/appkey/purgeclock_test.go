package appkey

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// clockedStore is a store whose clock check (storage.ClockChecker) a test
// sets: Redis's, which compares this instance's clock with the server's.
type clockedStore struct {
	storage.Store
	outOfStep atomic.Bool
}

func (c *clockedStore) ClockInStep() bool { return !c.outOfStep.Load() }

// TestNoPurgeWhileTheClockIsOutOfStep: while the store finds this
// instance's clock out of step with its own, a purge deletes no key, not
// even one this clock sees expired, and says why; once back in step it
// purges. An instance whose clock jumped ahead deleted, for good, every
// key of the cluster that its clock saw expired.
func TestNoPurgeWhileTheClockIsOutOfStep(t *testing.T) {
	ctx := context.Background()
	store := new(clockedStore)
	e := enginetest.New(t, engine.Config{AppKeyLifetime: time.Hour}, func(s storage.Store) storage.Store {
		store.Store = s
		return store
	})
	svc := NewService(e, Options{})
	t.Cleanup(func() { svc.Close() })
	if _, err := e.Accounts.CreateUser(ctx, account.NewUser{Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.create(ctx, NewKey{Name: "k", Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	svc.now = func() time.Time { return time.Now().Add(365 * 24 * time.Hour) } // a clock a year ahead
	store.outOfStep.Store(true)
	if n, err := svc.purgeExpired(ctx, nil); n != 0 || !errors.Is(err, errClockSkewed) {
		t.Fatalf("a purge by a clock out of step: %d deleted, %v; want none, errClockSkewed", n, err)
	}
	if _, err := svc.load(ctx, "k"); err != nil {
		t.Fatalf("the key after that purge: %v", err)
	}
	store.outOfStep.Store(false)
	if n, err := svc.purgeExpired(ctx, nil); n != 1 || err != nil {
		t.Fatalf("a purge by a clock in step: %d deleted, %v; want the expired key", n, err)
	}
}
