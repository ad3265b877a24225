package session

import (
	"context"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
	"github.com/gatehouse-auth/gatehouse/storage/redis"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// onBothStores runs test on a session store over Badger and over Redis.
func onBothStores(t *testing.T, test func(t *testing.T, c *cache.Cache)) {
	t.Run("badger", func(t *testing.T) {
		st, err := badger.Open(filepath.Join(t.TempDir(), "db"), badger.Options{})
		if err != nil {
			t.Fatal(err)
		}
		c := cache.New(st, 1024)
		t.Cleanup(func() { c.Close() })
		test(t, c)
	})
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		st, err := redis.Open(context.Background(), srv.URL(), redis.Options{})
		if err != nil {
			t.Fatal(err)
		}
		c := cache.New(st, 1024)
		t.Cleanup(func() { c.Close() })
		test(t, c)
	})
}

// indexed counts the per-user index entries of userID.
func indexed(t *testing.T, c *cache.Cache, userID string) int {
	t.Helper()
	n := 0
	if err := c.Scan(context.Background(), userPrefix+userID+"/", func(storage.Entry) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func listedIDs(t *testing.T, s *Store, userID string, epoch uint64) []string {
	t.Helper()
	l, err := s.OfUser(context.Background(), userID, epoch)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, x := range l {
		ids = append(ids, x.ID)
	}
	return ids
}

// TestOfUser: a user's live sessions of the current epoch are listed,
// newest first, and no one else's; a session ended by sign-out, by End,
// or gone from the store (idle) leaves the list and its index entry goes;
// End of an ended session is not found.
func TestOfUser(t *testing.T) {
	onBothStores(t, func(t *testing.T, c *cache.Cache) {
		ctx := context.Background()
		s := NewStore(c, Options{Idle: time.Hour})
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		s.now = func() time.Time { return now }
		create := func(sess Session) string {
			t.Helper()
			now = now.Add(time.Second)
			token, err := s.Create(ctx, sess)
			if err != nil {
				t.Fatal(err)
			}
			return token
		}
		portal := create(Session{Username: "alice", UserID: "u1", Origin: OriginLogin, SecondFactor: true, Epoch: 1})
		keyed := create(Session{Username: "alice", UserID: "u1", Origin: OriginAppKey, AppKey: "ci", Epoch: 1})
		old := create(Session{Username: "alice", UserID: "u1", Origin: OriginLogin, Epoch: 0})
		create(Session{Username: "bob", UserID: "u2", Origin: OriginLogin, Epoch: 1})
		gone := create(Session{Username: "alice", UserID: "u1", Origin: OriginLogin, Epoch: 1})

		if got, want := strings.Join(listedIDs(t, s, "u1", 1), ","), strings.Join([]string{ID(gone), ID(keyed), ID(portal)}, ","); got != want {
			t.Fatalf("listed %s; want %s (newest first, not the old epoch's nor bob's)", got, want)
		}
		l, _ := s.OfUser(ctx, "u1", 1)
		if l[1].AppKey != "ci" || l[1].Origin != OriginAppKey || !l[2].SecondFactor || !l[2].CreatedAt.Equal(now.Add(-4*time.Second)) {
			t.Errorf("listed metadata %+v", l)
		}
		if got := listedIDs(t, s, "u1", 0); len(got) != 1 || got[0] != ID(old) {
			t.Errorf("epoch 0 lists %v; want only %s", got, ID(old))
		}

		// Gone from the store as an idle session is: not listed, index entry pruned.
		if err := c.Delete(ctx, keyPrefix+ID(gone)); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, portal); err != nil { // sign-out
			t.Fatal(err)
		}
		if got := listedIDs(t, s, "u1", 1); len(got) != 1 || got[0] != ID(keyed) {
			t.Errorf("after sign-out and idle end listed %v; want only %s", got, ID(keyed))
		}
		if n := indexed(t, c, "u1"); n != 2 { // keyed and old
			t.Errorf("%d index entries of u1 left; want 2", n)
		}

		ended, err := s.End(ctx, ID(keyed))
		if err != nil || ended.Username != "alice" || ended.AppKey != "ci" {
			t.Fatalf("End = %+v, %v", ended, err)
		}
		if _, err := s.Lookup(ctx, keyed); err == nil {
			t.Error("an ended session still works")
		}
		if _, err := s.End(ctx, ID(keyed)); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("End of an ended session: %v; want ErrNotFound", err)
		}
		if got := listedIDs(t, s, "u2", 1); len(got) != 1 {
			t.Errorf("bob's sessions %v; want his one, untouched", got)
		}

		// Past the idle timeout a session is not listed, though still stored.
		now = now.Add(2 * time.Hour)
		if got := listedIDs(t, s, "u2", 1); len(got) != 0 {
			t.Errorf("idle sessions listed: %v", got)
		}
	})
}

// TestOfUserIsBounded: listing reads at most MaxListed sessions.
func TestOfUserIsBounded(t *testing.T) {
	st, err := badger.Open(filepath.Join(t.TempDir(), "db"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := cache.New(st, 16)
	t.Cleanup(func() { c.Close() })
	s := NewStore(c, Options{})
	ctx := context.Background()
	for range MaxListed + 3 {
		if _, err := s.Create(ctx, Session{Username: "alice", UserID: "u1", Origin: OriginLogin}); err != nil {
			t.Fatal(err)
		}
	}
	if l, err := s.OfUser(ctx, "u1", 0); err != nil || len(l) != MaxListed {
		t.Fatalf("listed %d, %v; want %d", len(l), err, MaxListed)
	}
}

// FuzzValidID: ValidID accepts exactly 64 lowercase hex digits.
func FuzzValidID(f *testing.F) {
	f.Add(ID("token"))
	f.Add(strings.ToUpper(ID("token")))
	f.Add("")
	f.Add(ID("token")[:63] + "g")
	f.Fuzz(func(t *testing.T, id string) {
		_, err := hex.DecodeString(id)
		want := len(id) == 64 && err == nil && id == strings.ToLower(id)
		if got := ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v; want %v", id, got, want)
		}
	})
}
