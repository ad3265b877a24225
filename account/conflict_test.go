package account

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// racedStore plays a writer that changes the record at key just before
// every compare-and-swap of it (the JSON gains a trailing space), so that
// every update of that record loses its swap.
type racedStore struct {
	storage.Store
	key string
}

func (r *racedStore) CompareAndSwap(ctx context.Context, key string, oldValue, newValue []byte, ttl time.Duration) (bool, error) {
	if key == r.key {
		raw, err := r.Store.Get(ctx, key)
		if err != nil {
			return false, err
		}
		if err := r.Store.Put(ctx, key, append(raw, ' '), 0); err != nil {
			return false, err
		}
	}
	return r.Store.CompareAndSwap(ctx, key, oldValue, newValue, ttl)
}

// TestRecordChangingTooOftenIsA409: an update of a user or role record
// that loses every swap (storage.ErrConflict) is answered with the 409
// messages the admin API always gave, the record left as the other writer
// made it. Badger and Redis alike.
func TestRecordChangingTooOftenIsA409(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(func(storage.Store) storage.Store) *Service) {
		ctx := context.Background()
		raced := &racedStore{}
		s := open(func(st storage.Store) storage.Store { raced.Store = st; return raced })
		if _, err := s.PutRole(ctx, Role{Name: "r"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateUser(ctx, NewUser{Username: "alice"}); err != nil {
			t.Fatal(err)
		}
		blocked := StatusBlocked
		for _, tc := range []struct {
			key, want string
			op        func() error
		}{
			{userPrefix + "alice", `user "alice" is being changed concurrently; try again`, func() error {
				_, err := s.UpdateUser(ctx, "alice", UserPatch{Status: &blocked})
				return err
			}},
			{userPrefix + "alice", `user "alice" is being changed concurrently; try again`, func() error {
				return s.DeleteUser(ctx, "alice")
			}},
			{rolePrefix + "r", `role "r" is being changed concurrently; try again`, func() error {
				_, err := s.PutRole(ctx, Role{Name: "r", Admin: true})
				return err
			}},
		} {
			raced.key = tc.key
			err := tc.op()
			raced.key = ""
			if failure.Status(err) != http.StatusConflict || failure.Message(err) != tc.want {
				t.Errorf("%s: %d %q; want 409 %q", tc.want, failure.Status(err), failure.Message(err), tc.want)
			}
		}
		if u, err := s.User(ctx, "alice"); err != nil || u.Status != StatusActive {
			t.Fatalf("alice after the lost updates: %+v, %v; want her, active", u, err)
		}
		if r, err := s.Role(ctx, "r"); err != nil || r.Admin {
			t.Fatalf("role r after the lost update: %+v, %v; want it, not admin", r, err)
		}
	})
}
