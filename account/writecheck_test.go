package account

import (
	"context"
	"errors"
	"testing"
)

// TestWriteCheckRunsAfterTheHash: a caller's write check runs once a new
// password is hashed, and its error leaves everything as it was: no user
// created, no password changed.
func TestWriteCheckRunsAfterTheHash(t *testing.T) {
	s := newTestService(t)
	ctx := context.Background()
	old, changed := "correct horse", "battery staple"
	if _, err := s.CreateUser(ctx, NewUser{Username: "alice", Password: &old}); err != nil {
		t.Fatal(err)
	}
	refused := errors.New("the actor was demoted meanwhile")
	checks := 0
	deny := WithWriteCheck(ctx, func(context.Context) error { checks++; return refused })

	pw := "a tulip harbour"
	if _, err := s.CreateUser(deny, NewUser{Username: "mallory", Password: &pw}); !errors.Is(err, refused) {
		t.Fatalf("creating a user: %v; want the check's error", err)
	}
	if _, err := s.User(ctx, "mallory"); err == nil {
		t.Fatal("the user was created though the check refused")
	}
	if _, err := s.UpdateUser(deny, "alice", UserPatch{Password: &changed}); !errors.Is(err, refused) {
		t.Fatalf("changing the password: %v; want the check's error", err)
	}
	if res, err := s.SignIn(ctx, "alice", old, gate(GateOpen)); err != nil || res.Outcome != OutcomeOK {
		t.Fatalf("the old password after the refused change: %+v, %v", res, err)
	}
	if checks != 2 {
		t.Fatalf("the check ran %d times, want 2", checks)
	}
	// Without a password nothing waits, and the check does not run.
	if _, err := s.CreateUser(deny, NewUser{Username: "bob"}); err != nil || checks != 2 {
		t.Fatalf("creating a user without a password: %v, checks %d", err, checks)
	}
}
