package session

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

// endBeforeWrite is a store that runs before, once, just before the first
// write to a session record once armed: a session ended between a
// request's read of it and its write of the activity time.
type endBeforeWrite struct {
	storage.Store
	armed  bool
	before func()
	once   sync.Once
}

func (e *endBeforeWrite) hook(key string) {
	if e.armed && strings.HasPrefix(key, keyPrefix) {
		e.once.Do(e.before)
	}
}

func (e *endBeforeWrite) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	e.hook(key)
	return e.Store.Put(ctx, key, value, ttl)
}

func (e *endBeforeWrite) CompareAndSwap(ctx context.Context, key string, oldValue, newValue []byte, ttl time.Duration) (bool, error) {
	e.hook(key)
	return e.Store.CompareAndSwap(ctx, key, oldValue, newValue, ttl)
}

// TestEndedSessionIsNotTouchedBackToLife: a session revoked while a
// request records its activity stays ended (the write of the activity time
// used to put the record back, and the revoked cookie worked again).
func TestEndedSessionIsNotTouchedBackToLife(t *testing.T) {
	onBothStores(t, func(t *testing.T, c *cache.Cache) {
		ctx := context.Background()
		racing := &endBeforeWrite{Store: c}
		s := NewStore(cache.New(racing, 1024), Options{Idle: time.Hour})
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		s.now = func() time.Time { return now }
		token, err := s.Create(ctx, Session{Username: "alice", UserID: "u1", Origin: OriginLogin, Epoch: 1})
		if err != nil {
			t.Fatal(err)
		}
		now = now.Add(2 * time.Minute) // the next request records activity
		racing.before = func() {
			if _, err := s.End(ctx, ID(token)); err != nil {
				t.Errorf("End: %v", err)
			}
		}
		racing.armed = true
		_, _ = s.Lookup(ctx, token) // the request that races the revocation
		if _, err := s.Lookup(ctx, token); !isRefusal(err) {
			t.Fatalf("the revoked session answers %v on the next request; want a 401 refusal", err)
		}
		if _, err := c.Get(ctx, keyPrefix+ID(token)); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("the revoked session's record: %v; want not found", err)
		}
	})
}

// TestConcurrentTouchesKeepTheSession: two requests recording activity at
// once both pass; the session stays.
func TestConcurrentTouchesKeepTheSession(t *testing.T) {
	onBothStores(t, func(t *testing.T, c *cache.Cache) {
		ctx := context.Background()
		s := NewStore(c, Options{Idle: time.Hour})
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		s.now = func() time.Time { return now }
		token, err := s.Create(ctx, Session{Username: "alice", UserID: "u1", Origin: OriginLogin, Epoch: 1})
		if err != nil {
			t.Fatal(err)
		}
		now = now.Add(2 * time.Minute)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if _, err := s.Lookup(ctx, token); err != nil {
					t.Errorf("concurrent request: %v", err)
				}
			})
		}
		wg.Wait()
		got, err := s.Lookup(ctx, token)
		if err != nil || !got.SeenAt.Equal(now) {
			t.Fatalf("after concurrent requests: %+v, %v; want the session, seen at %v", got, err, now)
		}
	})
}

func isRefusal(err error) bool {
	_, ok := identity.AsRefusal(err)
	return ok
}

// TestShortIdleSessionInUseStays: under an idle timeout of a minute or
// less, a session used every quarter of it stays (activity was recorded
// only once a minute, so such a session ended at the idle timeout however
// much it was used), and one left idle that long ends.
func TestShortIdleSessionInUseStays(t *testing.T) {
	for _, idle := range []time.Duration{time.Minute, 8 * time.Second} {
		onBothStores(t, func(t *testing.T, c *cache.Cache) {
			ctx := context.Background()
			s := NewStore(c, Options{Idle: idle})
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			s.now = func() time.Time { return now }
			token, err := s.Create(ctx, Session{Username: "alice", UserID: "u1", Origin: OriginLogin, Epoch: 1})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 20 {
				now = now.Add(idle / 3)
				if _, err := s.Lookup(ctx, token); err != nil {
					t.Fatalf("idle %v: request %d, %v after the last: %v", idle, i, idle/3, err)
				}
			}
			now = now.Add(idle + time.Second)
			if _, err := s.Lookup(ctx, token); !isRefusal(err) {
				t.Fatalf("idle %v: a session left idle longer answers %v; want a 401 refusal", idle, err)
			}
		})
	}
}

// TestSessionSeenByAClockAheadStaysInUse: a session whose activity an
// instance with a clock ahead recorded (or this instance before its clock
// stepped back) stays while it is used here. Its activity time lay in
// this clock's future, so no request here recorded activity, the store's
// idle timeout (on the store's clock) ran out, and the user was signed
// out in the middle of their work.
func TestSessionSeenByAClockAheadStaysInUse(t *testing.T) {
	const idle = 2 * time.Second
	onBothStores(t, func(t *testing.T, c *cache.Cache) {
		ctx := context.Background()
		ahead, here := NewStore(c, Options{Idle: idle}), NewStore(c, Options{Idle: idle})
		ahead.now = func() time.Time { return time.Now().Add(time.Hour) }
		token, err := ahead.Create(ctx, Session{Username: "alice", UserID: "u1", Origin: OriginLogin, Epoch: 1})
		if err != nil {
			t.Fatal(err)
		}
		for end := time.Now().Add(2 * idle); time.Now().Before(end); time.Sleep(idle / 5) {
			if _, err := here.Lookup(ctx, token); err != nil {
				t.Fatalf("a session in use every %v, last seen an hour ahead of this clock: %v", idle/5, err)
			}
		}
	})
}
