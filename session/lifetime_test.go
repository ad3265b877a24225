package session

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

// TestSessionInUseEndsAtItsAbsoluteLifetime: a session used every half
// hour (never idle) works until its absolute lifetime from sign-in, and
// is refused (401) after it, however recently it was used; one asked to
// last longer (a key's later expiry) ends at the absolute lifetime too,
// and EndsBy caps a later end at it and keeps an earlier one.
func TestSessionInUseEndsAtItsAbsoluteLifetime(t *testing.T) {
	const absolute = 3 * time.Hour
	onBothStores(t, func(t *testing.T, c *cache.Cache) {
		ctx := context.Background()
		s := NewStore(c, Options{Idle: time.Hour, Absolute: absolute})
		start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		now := start
		s.now = func() time.Time { return now }
		if got := s.EndsBy(start.Add(24 * time.Hour)); !got.Equal(start.Add(absolute)) {
			t.Errorf("EndsBy a day later = %v; want the absolute end %v", got, start.Add(absolute))
		}
		if got := s.EndsBy(start.Add(time.Hour)); !got.Equal(start.Add(time.Hour)) {
			t.Errorf("EndsBy an hour later = %v; want that hour", got)
		}
		plain, err := s.Create(ctx, Session{Username: "alice", UserID: "u1", Origin: OriginLogin, Epoch: 1})
		if err != nil {
			t.Fatal(err)
		}
		longer, err := s.Create(ctx, Session{Username: "alice", UserID: "u1", Origin: OriginAppKey, AppKey: "k", Epoch: 1,
			ExpiresAt: start.Add(24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		for now.Add(30 * time.Minute).Before(start.Add(absolute)) {
			now = now.Add(30 * time.Minute)
			for _, token := range []string{plain, longer} {
				if _, err := s.Lookup(ctx, token); err != nil {
					t.Fatalf("a session in use, %v after sign-in: %v", now.Sub(start), err)
				}
			}
		}
		now = start.Add(absolute + time.Minute)
		for name, token := range map[string]string{"a login session": plain, "a session asked to last a day": longer} {
			if _, err := s.Lookup(ctx, token); !isRefusal(err) {
				t.Errorf("%s in use, %v after sign-in (absolute lifetime %v): %v; want a 401 refusal",
					name, now.Sub(start), absolute, err)
			}
		}
	})
}
