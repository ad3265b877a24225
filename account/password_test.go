package account

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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

// TestSignInBusy: while every hash slot is taken, a sign-in gives up as
// OutcomeBusy, the same for a known user (right or wrong password) as for an
// unknown one, and that is no wrong password a caller would count.
func TestSignInBusy(t *testing.T) {
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
			res, err := s.SignIn(ctx, c.user, c.pass, gate(GateOpen))
			if err != nil || res.Outcome != OutcomeBusy {
				t.Errorf("%s with every slot taken: %+v, %v; want Busy", c.user, res, err)
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
	if res, err := s.SignIn(gone, "alice", pw, gate(GateOpen)); err != nil || res.Outcome != OutcomeBusy || time.Since(begin) > BusyWait/2 {
		t.Fatalf("ended request: %+v, %v after %v; want Busy at once", res, err, time.Since(begin))
	}
}

// TestSignInWaitsForASlot: a sign-in that finds the slots taken gets one
// as soon as a hash ends.
func TestSignInWaitsForASlot(t *testing.T) {
	ctx := context.Background()
	s := newTestService(t)
	pw := "correct horse"
	if _, err := s.CreateUser(ctx, NewUser{Username: "alice", Password: &pw}); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(BusyWait/4, hashslotstest.HoldAll(t))
	if res, err := s.SignIn(ctx, "alice", pw, gate(GateOpen)); err != nil || res.Outcome != OutcomeOK || res.User.Username != "alice" {
		t.Fatalf("right password after a short wait: %+v, %v", res, err)
	}
}
