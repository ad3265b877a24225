package counters_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/keystore/keystoretest"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/counters"
	"github.com/gatehouse-auth/gatehouse/storage/tagged"
)

// TestTakeBackLeavesNoDebt: a count taken back lowers it by one; one
// taken back after its window ran out (the counter gone) leaves no debt,
// so the next window allows no more than the limit, nor fewer: its first
// attempt counts 1. Over the tagged store, as Gatehouse runs.
func TestTakeBackLeavesNoDebt(t *testing.T) {
	ctx := context.Background()
	db, err := badger.Open(filepath.Join(t.TempDir(), "db"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	st, err := tagged.Open(ctx, db, keystoretest.New(t), tagged.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key := counters.BasicFailures("alice")
	for range 2 {
		if _, err := st.Incr(ctx, key, 1, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	counters.TakeBack(ctx, st, key, time.Hour)
	if n, err := st.Incr(ctx, key, 0, time.Hour); err != nil || n != 1 {
		t.Fatalf("two counted, one taken back: %d, %v; want 1", n, err)
	}
	if err := st.Delete(ctx, key); err != nil { // the window ran out
		t.Fatal(err)
	}
	counters.TakeBack(ctx, st, key, time.Hour)
	if n, err := st.Incr(ctx, key, 1, time.Hour); err != nil || n != 1 {
		t.Fatalf("first attempt of a new window after a late take-back: count %d, %v; want 1", n, err)
	}
	// Two late take-backs at once leave -2: the next attempt still counts 1.
	if err := st.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	counters.TakeBack(ctx, st, key, time.Hour)
	counters.TakeBack(ctx, st, key, time.Hour)
	if n, err := st.Incr(ctx, key, 1, time.Hour); err != nil || n != 1 {
		t.Fatalf("first attempt after two late take-backs: count %d, %v; want 1", n, err)
	}
}
