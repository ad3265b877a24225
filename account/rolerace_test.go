package account

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
	"github.com/gatehouse-auth/gatehouse/storage/redis"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// pausingStore holds the first compare-and-swap of one key until release
// is closed: the write of a user update or creation that has checked its
// roles, held while a role is deleted.
type pausingStore struct {
	storage.Store
	key     string
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

func (p *pausingStore) CompareAndSwap(ctx context.Context, key string, oldValue, newValue []byte, ttl time.Duration) (bool, error) {
	if key == p.key {
		p.once.Do(func() {
			close(p.reached)
			<-p.release
		})
	}
	return p.Store.CompareAndSwap(ctx, key, oldValue, newValue, ttl)
}

// forEachBackend runs test against a service over Badger and over Redis
// (a private redis-server), the store wrapped by wrap.
func forEachBackend(t *testing.T, test func(t *testing.T, open func(wrap func(storage.Store) storage.Store) *Service)) {
	t.Run("badger", func(t *testing.T) {
		test(t, func(wrap func(storage.Store) storage.Store) *Service {
			st, err := badger.Open(filepath.Join(t.TempDir(), "db"), badger.Options{})
			if err != nil {
				t.Fatal(err)
			}
			c := cache.New(wrap(st), 1024)
			t.Cleanup(func() { c.Close() })
			return NewService(c, nil)
		})
	})
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		test(t, func(wrap func(storage.Store) storage.Store) *Service {
			st, err := redis.Open(context.Background(), srv.URL(), redis.Options{})
			if err != nil {
				t.Fatal(err)
			}
			c := cache.New(wrap(st), 1024)
			t.Cleanup(func() { c.Close() })
			return NewService(c, nil)
		})
	})
}

// holdsRacer reports whether username holds a role named "racer": in its
// record as the admin API shows it, or by what Authorize allows and
// forwards.
func holdsRacer(t *testing.T, s *Service, username string) bool {
	t.Helper()
	ctx := context.Background()
	u, err := s.User(ctx, username)
	if err != nil {
		t.Fatal(err)
	}
	id := &identity.Identity{Username: u.Username, UserID: u.ID, Method: identity.MethodBasic}
	err = s.Authorize(ctx, id, "GET", "/racer/x")
	return slices.Contains(u.Roles, "racer") || err == nil || slices.Contains(id.Roles, "racer")
}

func putRacer(t *testing.T, s *Service, admin bool) {
	t.Helper()
	if _, err := s.PutRole(context.Background(), Role{Name: "racer", Admin: admin, Rules: []Rule{{Methods: []string{"GET"}, Paths: []string{"/racer/*"}}}}); err != nil {
		t.Fatal(err)
	}
}

// TestRoleDeletedWhileAssignedIsNotHeld: a user update (PATCH roles) or
// creation (POST with roles) that checked the role before a
// DELETE /gatehouse/roles of it and writes after the DELETE returned is
// acknowledged, yet the user holds no role that does not exist — and not
// the role created again later under the name (say with admin: true).
// Both orders are forced, in Badger and Redis alike.
func TestRoleDeletedWhileAssignedIsNotHeld(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(func(storage.Store) storage.Store) *Service) {
		ctx := context.Background()
		for _, op := range []string{"update", "create"} {
			t.Run(op, func(t *testing.T) {
				pause := &pausingStore{key: userPrefix + "racer-" + op, reached: make(chan struct{}), release: make(chan struct{})}
				s := open(func(st storage.Store) storage.Store { pause.Store = st; return pause })
				if _, err := s.PutRole(ctx, Role{Name: "base", Rules: []Rule{{Methods: []string{"GET"}, Paths: []string{"/base/*"}}}}); err != nil {
					t.Fatal(err)
				}
				putRacer(t, s, false)
				name := "racer-" + op
				if op == "update" {
					pause.once.Do(func() { close(pause.reached) }) // the creation passes
					if _, err := s.CreateUser(ctx, NewUser{Username: name, Roles: []string{"base"}}); err != nil {
						t.Fatal(err)
					}
					pause.once, pause.reached = sync.Once{}, make(chan struct{})
				}
				assigned := make(chan error, 1)
				go func() {
					roles := []string{"base", "racer"}
					var err error
					if op == "update" {
						_, err = s.UpdateUser(ctx, name, UserPatch{Roles: &roles})
					} else {
						_, err = s.CreateUser(ctx, NewUser{Username: name, Roles: roles})
					}
					assigned <- err
				}()
				<-pause.reached // the roles are checked; the write waits
				if err := s.DeleteRole(ctx, "racer"); err != nil {
					t.Fatal(err)
				}
				close(pause.release)
				if err := <-assigned; err != nil {
					t.Fatalf("the %s, acknowledged after the delete: %v", op, err)
				}
				if holdsRacer(t, s, name) {
					t.Fatal("the user holds the deleted role")
				}
				putRacer(t, s, true)
				if holdsRacer(t, s, name) {
					t.Fatal("the user holds the role created again under the name")
				}
				if u, _ := s.User(ctx, name); true {
					if admin, err := s.HasAdminRole(ctx, u); err != nil || admin {
						t.Fatalf("HasAdminRole: %v %v", admin, err)
					}
				}
			})
		}
	})
}

// TestRoleDeleteRacingAssignments: many PATCHes giving users a role run
// while the role is deleted; once all are answered, no user holds it,
// nor the role created again under its name. Badger and Redis alike.
func TestRoleDeleteRacingAssignments(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(func(storage.Store) storage.Store) *Service) {
		ctx := context.Background()
		s := open(func(st storage.Store) storage.Store { return st })
		putRacer(t, s, false)
		const users = 60
		for i := range users {
			if _, err := s.CreateUser(ctx, NewUser{Username: fmt.Sprintf("u%03d", i), Roles: []string{"racer"}}); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		for i := range users {
			wg.Go(func() {
				roles := []string{"racer"}
				for range 5 {
					if _, err := s.UpdateUser(ctx, fmt.Sprintf("u%03d", i), UserPatch{Roles: &roles}); err != nil && failure.Status(err) != http.StatusBadRequest {
						t.Errorf("PATCH: %v", err)
						return
					}
				}
			})
		}
		if err := s.DeleteRole(ctx, "racer"); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		putRacer(t, s, true)
		for i := range users {
			if holdsRacer(t, s, fmt.Sprintf("u%03d", i)) {
				t.Errorf("u%03d holds the deleted role's namesake", i)
			}
		}
	})
}
