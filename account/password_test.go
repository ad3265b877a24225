package account

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/hashslots/hashslotstest"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

func TestPasswordHashAndVerify(t *testing.T) {
	ctx := context.Background()
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$") || strings.Contains(h, "correct horse") {
		t.Fatalf("unexpected hash format %q", h)
	}
	if ok, err := VerifyPassword(ctx, h, "correct horse"); !ok || err != nil {
		t.Fatalf("right password refused: %v", err)
	}
	for _, wrong := range []string{"correct hors", "Correct horse", "", strings.Repeat("x", 2000)} {
		if ok, _ := VerifyPassword(ctx, h, wrong); ok {
			t.Fatalf("wrong password %q accepted", wrong)
		}
	}
	if ok, _ := VerifyPassword(ctx, "", ""); ok {
		t.Fatal("empty hash verified")
	}
	if ok, _ := VerifyPassword(ctx, "$argon2id$v=19$m=1,t=1,p=1$$", "x"); ok {
		t.Fatal("malformed hash verified")
	}
	if _, err := HashPassword("short"); err == nil {
		t.Fatal("short password accepted")
	}
}

func newTestService(t *testing.T) *Service {
	t.Helper()
	db, err := badger.Open(filepath.Join(t.TempDir(), "db"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := cache.New(db, 1024)
	t.Cleanup(func() { c.Close() })
	return NewService(c)
}

// TestCheckPasswordBusy: while every hash slot is taken, a password check
// gives up with ErrBusy, the same for a known user (right or wrong
// password) as for an unknown one, and that is no refusal a caller would
// count as a wrong password.
func TestCheckPasswordBusy(t *testing.T) {
	ctx := context.Background()
	s := newTestService(t)
	pw := "correct horse"
	if _, err := s.CreateUser(ctx, NewUser{Username: "alice", Password: &pw}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, NewUser{Username: "nopass"}); err != nil {
		t.Fatal(err)
	}
	hashslotstest.HoldAll(t)
	var wg sync.WaitGroup
	// An unknown user and one without a password take a hash slot too: they
	// cost (and under load, wait) as much as a real check.
	for _, c := range []struct{ user, pass string }{{"alice", pw}, {"alice", "wrong password"}, {"nobody", pw}, {"nopass", pw}} {
		wg.Go(func() {
			begin := time.Now()
			u, err := s.CheckPassword(ctx, c.user, c.pass)
			if !errors.Is(err, ErrBusy) || u != nil {
				t.Errorf("%s with every slot taken: %v, %v; want ErrBusy", c.user, u, err)
			}
			if _, refused := identity.AsRefusal(err); refused {
				t.Errorf("%s: ErrBusy is a refusal", c.user)
			}
			if waited := time.Since(begin); waited < BusyWait/2 || waited > 3*BusyWait {
				t.Errorf("%s gave up after %v; want about %v", c.user, waited, BusyWait)
			}
		})
	}
	wg.Wait()
	gone, cancel := context.WithCancel(ctx)
	cancel()
	begin := time.Now()
	if _, err := s.CheckPassword(gone, "alice", pw); !errors.Is(err, ErrBusy) || time.Since(begin) > BusyWait/2 {
		t.Fatalf("ended request: %v after %v; want ErrBusy at once", err, time.Since(begin))
	}
}

// TestCheckPasswordWaitsForASlot: a check that finds the slots taken gets
// one as soon as a hash ends.
func TestCheckPasswordWaitsForASlot(t *testing.T) {
	ctx := context.Background()
	s := newTestService(t)
	pw := "correct horse"
	if _, err := s.CreateUser(ctx, NewUser{Username: "alice", Password: &pw}); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(BusyWait/4, hashslotstest.HoldAll(t))
	if u, err := s.CheckPassword(ctx, "alice", pw); err != nil || u.Username != "alice" {
		t.Fatalf("right password after a short wait: %v, %v", u, err)
	}
}
