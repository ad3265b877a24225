package account

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/gatehouse-auth/gatehouse/internal/hashslots/hashslotstest"
)

// recordingAttempts is an Attempts that answers with a fixed gate and
// records what was begun and settled.
type recordingAttempts struct {
	gate    Gate
	begun   []string
	settled []SignInResult
}

func (a *recordingAttempts) Begin(_ context.Context, name string, u *User) (Attempt, Gate, error) {
	a.begun = append(a.begun, name)
	return a, a.gate, nil
}

func (a *recordingAttempts) Settle(_ context.Context, res SignInResult) error {
	a.settled = append(a.settled, res)
	return nil
}

// TestSignInPolicy: the rules every password front end shares, once. A
// checked password costs one argon2id hash whoever holds the name (an
// unknown name's is checked against a hash that never passes), so that
// a refusal's time does not tell which names exist.
func TestSignInPolicy(t *testing.T) {
	ctx := context.Background()
	s := newTestService(t)
	pw := "correct horse"
	if _, err := s.CreateUser(ctx, NewUser{Username: "alice", Password: &pw}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, NewUser{Username: "bob", Password: &pw}); err != nil {
		t.Fatal(err)
	}
	blocked := StatusBlocked
	if _, err := s.UpdateUser(ctx, "bob", UserPatch{Status: &blocked}); err != nil {
		t.Fatal(err)
	}
	var hashes atomic.Int32
	countHashes(t, func() { hashes.Add(1) })
	for _, c := range []struct {
		name, user, pass string
		gate             Gate
		want             Outcome
		reason           string
		begun            bool
		hashes           int32
	}{
		{"right password", "Alice", pw, GateOpen, OutcomeOK, "", true, 1},
		{"wrong password", "alice", "wrong password", GateOpen, OutcomeWrong, ReasonWrongPassword, true, 1},
		{"unknown user", "nobody", pw, GateOpen, OutcomeWrong, ReasonUnknownUser, true, 1},
		{"invalid username", "a:b", pw, GateOpen, OutcomeWrong, ReasonInvalidUsername, false, 0},
		{"throttled: not checked", "alice", pw, GateClosed, OutcomeThrottled, ReasonThrottled, true, 0},
		{"locked: right password does not sign in", "alice", pw, GateLockedOut, OutcomeLocked, ReasonLocked, true, 1},
		{"locked: wrong password", "alice", "wrong password", GateLockedOut, OutcomeLocked, ReasonLocked, true, 1},
		{"blocked: right password", "bob", pw, GateOpen, OutcomeBlocked, ReasonBlocked, true, 1},
		{"blocked: wrong password", "bob", "wrong password", GateOpen, OutcomeWrong, ReasonWrongPassword, true, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := &recordingAttempts{gate: c.gate}
			hashes.Store(0)
			res, err := s.SignIn(ctx, c.user, c.pass, a)
			if err != nil || res.Outcome != c.want || res.Reason != c.reason {
				t.Fatalf("SignIn(%q) = %+v, %v; want outcome %d, reason %q", c.user, res, err, c.want, c.reason)
			}
			if n := hashes.Load(); n != c.hashes {
				t.Errorf("%d hashes; want %d", n, c.hashes)
			}
			if !c.begun {
				if len(a.begun)+len(a.settled) != 0 {
					t.Fatalf("an invalid name was counted: %v %v", a.begun, a.settled)
				}
				return
			}
			if len(a.begun) != 1 || len(a.settled) != 1 || a.settled[0].Outcome != c.want {
				t.Fatalf("begun %v, settled %+v; want one attempt settled as %d", a.begun, a.settled, c.want)
			}
			if res.Outcome == OutcomeOK && (res.User == nil || res.User.Username != "alice") {
				t.Fatalf("signed in as %+v", res.User)
			}
		})
	}
}

// TestSignInBusyIsNoFailure: a password not checked because every hash
// slot stayed taken settles as OutcomeBusy, for a known user as for an unknown.
func TestSignInBusyIsNoFailure(t *testing.T) {
	ctx := context.Background()
	s := newTestService(t)
	pw := "correct horse"
	if _, err := s.CreateUser(ctx, NewUser{Username: "alice", Password: &pw}); err != nil {
		t.Fatal(err)
	}
	hashslotstest.HoldAll(t)
	for _, user := range []string{"alice", "nobody"} {
		a := &recordingAttempts{}
		res, err := s.SignIn(ctx, user, pw, a)
		if err != nil || res.Outcome != OutcomeBusy || len(a.settled) != 1 || a.settled[0].Outcome != OutcomeBusy {
			t.Fatalf("%s: %+v, %v, settled %+v; want Busy", user, res, err, a.settled)
		}
	}
}
