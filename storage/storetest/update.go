package storetest

import (
	"bytes"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-auth/gatehouse/storage"
)

// update runs storage.Update on key, failing the test on an error.
func (h h) update(key string, ttl time.Duration, change func(old []byte) ([]byte, error)) {
	h.t.Helper()
	if err := storage.Update(h.ctx, h.s, key, ttl, change); err != nil {
		h.t.Fatalf("Update(%q): %v", key, err)
	}
}

// testUpdate covers what an update function may answer: a value (create,
// replace), nil (delete), ErrNoChange and an error.
func testUpdate(h h) {
	var seen [][]byte // the old values the update functions were given
	saw := func(next []byte) func([]byte) ([]byte, error) {
		return func(old []byte) ([]byte, error) {
			seen = append(seen, bytes.Clone(old))
			return next, nil
		}
	}
	start := time.Now()
	h.update("k", time.Hour, saw([]byte("v1"))) // absent: created, with the TTL
	h.want("k", "v1")
	sent := time.Now()
	h.wantExpiry("a record Update created", h.expiresAt("k"), start, sent, time.Hour)
	h.update("k", 0, saw([]byte("v2"))) // replaced, with the new TTL (none)
	h.want("k", "v2")
	if exp := h.expiresAt("k"); !exp.IsZero() {
		h.t.Fatalf("Update with TTL 0 left the expiry %v", exp)
	}
	h.update("k", 0, saw(nil)) // deleted
	h.missing("k")
	h.update("k", 0, saw(nil)) // deleting an absent record
	h.missing("k")
	h.update("e", 0, saw([]byte{})) // the empty value is stored ...
	h.update("e", 0, saw([]byte("x")))
	h.want("e", "x")
	want := [][]byte{nil, []byte("v1"), []byte("v2"), nil, nil, {}} // ... and read back as present
	if len(seen) != len(want) {
		h.t.Fatalf("the update functions ran %d times; want %d (one each)", len(seen), len(want))
	}
	for i, old := range seen {
		if (old == nil) != (want[i] == nil) || !bytes.Equal(old, want[i]) {
			h.t.Fatalf("update %d was given %q (nil: %v); want %q (nil: %v)", i, old, old == nil, want[i], want[i] == nil)
		}
	}

	// ErrNoChange leaves the value and its TTL; an error leaves it too,
	// and is returned as it is.
	start = time.Now()
	h.put("k", "kept", time.Hour)
	h.update("k", 0, func([]byte) ([]byte, error) { return []byte("not written"), storage.ErrNoChange })
	h.want("k", "kept")
	sent = time.Now()
	h.wantExpiry("a record left by ErrNoChange", h.expiresAt("k"), start, sent, time.Hour)
	boom := errors.New("boom")
	err := storage.Update(h.ctx, h.s, "k", 0, func([]byte) ([]byte, error) { return []byte("not written"), boom })
	if !errors.Is(err, boom) {
		h.t.Fatalf("Update whose function failed returned %v; want its error", err)
	}
	h.want("k", "kept")
	err = storage.Update(h.ctx, h.s, "absent", 0, func([]byte) ([]byte, error) { return []byte("not written"), boom })
	if !errors.Is(err, boom) {
		h.t.Fatalf("Update whose function failed returned %v; want its error", err)
	}
	h.missing("absent")
}

func testUpdateJSON(h h) {
	type doc struct{ N int }
	update := func(change func(*doc) (*doc, error)) (*doc, error) {
		return storage.UpdateJSON(h.ctx, h.s, "doc", 0, change)
	}
	got, err := update(func(cur *doc) (*doc, error) {
		if cur != nil {
			h.t.Errorf("an absent record was decoded as %+v", cur)
		}
		return &doc{N: 1}, nil
	})
	if err != nil || got == nil || got.N != 1 {
		h.t.Fatalf("UpdateJSON creating = %+v, %v", got, err)
	}
	h.want("doc", `{"N":1}`)
	got, err = update(func(cur *doc) (*doc, error) { cur.N++; return cur, nil })
	if err != nil || got.N != 2 {
		h.t.Fatalf("UpdateJSON changing = %+v, %v", got, err)
	}
	h.want("doc", `{"N":2}`)
	got, err = update(func(*doc) (*doc, error) { return nil, storage.ErrNoChange })
	if err != nil || got == nil || got.N != 2 {
		h.t.Fatalf("UpdateJSON with no change = %+v, %v; want the record read", got, err)
	}
	got, err = update(func(*doc) (*doc, error) { return nil, nil })
	if err != nil || got != nil {
		h.t.Fatalf("UpdateJSON deleting = %+v, %v", got, err)
	}
	h.missing("doc")

	h.put("doc", "not JSON", 0)
	got, err = update(func(*doc) (*doc, error) {
		h.t.Error("the update function ran on a record that does not decode")
		return &doc{}, nil
	})
	if err == nil || got != nil {
		h.t.Fatalf("UpdateJSON of a corrupt record = %+v, %v; want an error", got, err)
	}
	h.want("doc", "not JSON")
}

// testConcurrentUpdate: n updaters of one counter all land. Each loses a
// swap only to another's write, so at most n-1 times: within the budget.
func testConcurrentUpdate(h h) {
	const n = 50
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			err := storage.Update(h.ctx, h.s, "counter", 0, func(old []byte) ([]byte, error) {
				v := 0
				if old != nil {
					var err error
					if v, err = strconv.Atoi(string(old)); err != nil {
						return nil, err
					}
				}
				return strconv.AppendInt(nil, int64(v+1), 10), nil
			})
			if err != nil {
				h.t.Error(err)
			}
		})
	}
	wg.Wait()
	h.want("counter", strconv.Itoa(n))
}

// testUpdateConflict: an update that loses every swap gives up after
// storage.UpdateAttempts with ErrConflict, having written nothing.
func testUpdateConflict(h h) {
	var calls atomic.Int64
	err := storage.Update(h.ctx, h.s, "k", 0, func(old []byte) ([]byte, error) {
		// Another writer changes the record between this read and the swap.
		n := calls.Add(1)
		if err := h.s.Put(h.ctx, "k", []byte("other "+strconv.FormatInt(n, 10)), 0); err != nil {
			return nil, err
		}
		return []byte("mine"), nil
	})
	if !errors.Is(err, storage.ErrConflict) {
		h.t.Fatalf("Update losing every swap returned %v; want ErrConflict", err)
	}
	if calls.Load() != storage.UpdateAttempts {
		h.t.Fatalf("Update tried %d times; want %d", calls.Load(), storage.UpdateAttempts)
	}
	h.want("k", "other "+strconv.Itoa(storage.UpdateAttempts))
}
