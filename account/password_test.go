package account

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/hashslots/hashslotstest"
	"github.com/gatehouse-auth/gatehouse/keystore/keystoretest"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

func TestPasswordHashAndVerify(t *testing.T) {
	ctx := context.Background()
	keyed, unkeyed := passwordHasher{keystoretest.New(t)}, passwordHasher{}
	h, err := keyed.hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1,keyed=1$") || strings.Contains(h, "correct horse") {
		t.Fatalf("unexpected hash format %q", h)
	}
	if ok, err := keyed.verify(ctx, h, "correct horse"); !ok || !(PepperOf(h) != "") || err != nil {
		t.Fatalf("right password refused: %v %v", (PepperOf(h) != ""), err)
	}
	for _, wrong := range []string{"correct hors", "Correct horse", "", strings.Repeat("x", 2000)} {
		if ok, _ := keyed.verify(ctx, h, wrong); ok {
			t.Fatalf("wrong password %q accepted", wrong)
		}
	}
	for what, hash := range map[string]string{
		"empty":                             "",
		"malformed":                         "$argon2id$v=19$m=1,t=1,p=1$$",
		"unknown parameter":                 strings.Replace(h, ",keyed=1", ",keyed=1,x=2", 1),
		"marker dropped (an older version)": strings.Replace(h, ",keyed=1", "", 1),
	} {
		if ok, _ := keyed.verify(ctx, hash, "correct horse"); ok {
			t.Errorf("%s hash verified", what)
		}
	}
	// Only the keystore's holder can check a keyed hash: not without one,
	// not with another.
	if ok, _ := unkeyed.verify(ctx, h, "correct horse"); ok {
		t.Error("a keyed hash verified without the keystore")
	}
	if ok, _ := (passwordHasher{keystoretest.New(t)}).verify(ctx, h, "correct horse"); ok {
		t.Error("a keyed hash verified with another keystore")
	}
	// A hash of a version before keyed hashes still verifies, as unkeyed.
	old, err := unkeyed.hash("correct horse")
	if err != nil || (PepperOf(old) != "") {
		t.Fatalf("unkeyed hash %q: %v", old, err)
	}
	if ok, _ := keyed.verify(ctx, old, "correct horse"); !ok {
		t.Fatal("an unkeyed hash does not verify")
	}
	if _, err := keyed.hash("short"); err == nil {
		t.Fatal("short password accepted")
	}
}

// TestUnkeyedHashIsKeyedAtSignIn: a password hash written by a version
// before keyed hashes signs in, and is replaced by a keyed one of the same
// password then, without ending the account's sessions; the sign-in's
// account holds the new hash (what plugin/basic caches). The wrong
// password changes nothing, and neither does the right one of a locked or
// blocked account: its cost would tell a guesser it was right.
func TestUnkeyedHashIsKeyedAtSignIn(t *testing.T) {
	ctx := context.Background()
	password := "correct horse"
	s := withUnkeyedOlga(t, password)
	stored := func() *User {
		t.Helper()
		u, err := s.User(ctx, "olga")
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	before := stored()
	if strings.Contains(before.PasswordHash, "keyed") {
		t.Fatalf("the old version's hash is keyed: %q", before.PasswordHash)
	}
	unchanged := func(what, password string, attempts *recordingAttempts, want Outcome) {
		t.Helper()
		if res, err := s.SignIn(ctx, "olga", password, attempts); err != nil || res.Outcome != want {
			t.Fatalf("%s: %v %v; want %v", what, res.Outcome, err, want)
		}
		if stored().PasswordHash != before.PasswordHash {
			t.Fatalf("%s changed the hash", what)
		}
	}
	unchanged("a wrong password", "wrong horse", &recordingAttempts{}, OutcomeWrong)
	unchanged("a locked account's right password", password, &recordingAttempts{gate: GateLockedOut}, OutcomeLocked)
	blocked := StatusBlocked
	if _, err := s.UpdateUser(ctx, "olga", UserPatch{Status: &blocked}); err != nil {
		t.Fatal(err)
	}
	unchanged("a blocked account's right password", password, &recordingAttempts{}, OutcomeBlocked)
	active := StatusActive
	if _, err := s.UpdateUser(ctx, "olga", UserPatch{Status: &active}); err != nil {
		t.Fatal(err)
	}
	before = stored()
	for range 2 {
		res, err := s.SignIn(ctx, "olga", password, &recordingAttempts{})
		if err != nil || res.Outcome != OutcomeOK {
			t.Fatalf("sign-in: %v %v", res.Outcome, err)
		}
		after := stored()
		if !(PepperOf(after.PasswordHash) != "") || after.SessionEpoch != before.SessionEpoch {
			t.Fatalf("after the sign-in: hash %q, session epoch %v (was %v)", after.PasswordHash, after.SessionEpoch, before.SessionEpoch)
		}
		if res.User.PasswordHash != after.PasswordHash {
			t.Fatal("the sign-in's account holds another hash than the store")
		}
	}
}

func newTestService(t *testing.T) *Service {
	t.Helper()
	return NewService(newTestStore(t), keystoretest.New(t))
}

// newTestStore is a cached Badger store in a directory of the test's,
// closed with it.
func newTestStore(t *testing.T) *cache.Cache {
	t.Helper()
	db, err := badger.Open(filepath.Join(t.TempDir(), "db"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := cache.New(db, 1024)
	t.Cleanup(func() { c.Close() })
	return c
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

// FuzzParsePHC: no stored hash string makes the parser panic, and none it
// accepts asks argon2 for more than its bounds.
func FuzzParsePHC(f *testing.F) {
	f.Add("$argon2id$v=19$m=19456,t=2,p=1,keyed=1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5")
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5")
	f.Add("$argon2id$v=19$m=1,t=1,p=1$$")
	f.Fuzz(func(t *testing.T, hash string) {
		p, err := parsePHC(hash)
		if err == nil && (p.m > 1<<20 || p.t > 16 || p.p == 0 || len(p.key) < 16) {
			t.Fatalf("%q accepted with parameters out of bounds: %+v", hash, p)
		}
	})
}

// TestRekeyLosingARaceChangesNothing: when the record changed between the
// sign-in's check and the keying (another sign-in keyed it first, an
// administrator set a new password, the account was deleted), nothing is
// written and the sign-in's account keeps the hash it was checked with.
func TestRekeyLosingARaceChangesNothing(t *testing.T) {
	ctx := context.Background()
	password := "correct horse"
	s := withUnkeyedOlga(t, password)
	stale, err := s.User(ctx, "olga")
	if err != nil {
		t.Fatal(err)
	}
	stored := func() string {
		t.Helper()
		u, err := s.User(ctx, "olga")
		if err != nil {
			t.Fatal(err)
		}
		return u.PasswordHash
	}
	if first := s.rekeyed(ctx, stale, password); first.PasswordHash != stored() || !(PepperOf(first.PasswordHash) != "") {
		t.Fatal("the first keying: the account returned holds another hash than the store")
	}
	keyed := stored()
	if second := s.rekeyed(ctx, stale, password); second.PasswordHash != stale.PasswordHash || stored() != keyed {
		t.Error("a keying that lost the race to another wrote or returned a new hash")
	}
	other := "battery staple"
	if _, err := s.UpdateUser(ctx, "olga", UserPatch{Password: &other}); err != nil {
		t.Fatal(err)
	}
	changed := stored()
	if third := s.rekeyed(ctx, stale, password); third.PasswordHash != stale.PasswordHash || stored() != changed {
		t.Error("a keying after a new password wrote or returned a hash of the old one")
	}
	if err := s.DeleteUser(ctx, "olga"); err != nil {
		t.Fatal(err)
	}
	if fourth := s.rekeyed(ctx, stale, password); fourth.PasswordHash != stale.PasswordHash {
		t.Error("a keying of a deleted account returned a new hash")
	}
	if _, err := s.User(ctx, "olga"); err == nil {
		t.Error("a keying brought a deleted account back")
	}
}

// withUnkeyedOlga is a service keying hashes over a store where a version
// before keyed hashes made the user olga with password.
func withUnkeyedOlga(t *testing.T, password string) *Service {
	t.Helper()
	c := newTestStore(t)
	if _, err := NewService(c, nil).CreateUser(context.Background(), NewUser{Username: "olga", Password: &password}); err != nil {
		t.Fatal(err)
	}
	return NewService(c, keystoretest.New(t))
}

// TestRetiredPepperVerifiesAndIsReplacedAtSignIn: after a keystore
// rekey, a hash keyed with the old pepper ("keyed=1", the legacy key the
// new keystore keeps retired) still signs in, and is replaced then by one
// under the new pepper, naming it ("keyed=<ID>"). Once the retired key is
// dropped, a hash under it verifies no more.
func TestRetiredPepperVerifiesAndIsReplacedAtSignIn(t *testing.T) {
	ctx := context.Background()
	password := "correct horse"
	c := newTestStore(t)
	old := keystoretest.New(t)
	if _, err := NewService(c, old).CreateUser(ctx, NewUser{Username: "olga", Password: &password}); err != nil {
		t.Fatal(err)
	}
	next, err := old.Successor()
	if err != nil {
		t.Fatal(err)
	}
	if err := next.WriteNew(filepath.Join(t.TempDir(), "keystore.key")); err != nil {
		t.Fatal(err)
	}
	s := NewService(c, next)
	stored := func() string {
		t.Helper()
		u, err := s.User(ctx, "olga")
		if err != nil {
			t.Fatal(err)
		}
		return u.PasswordHash
	}
	before := stored()
	if PepperOf(before) != "1" || s.passwords.keyedNow(before) {
		t.Fatalf("the old keystore's hash %q", before)
	}
	if res, err := s.SignIn(ctx, "olga", "wrong horse", &recordingAttempts{}); err != nil || res.Outcome != OutcomeWrong || stored() != before {
		t.Fatalf("a wrong password: %v %v", res.Outcome, err)
	}
	res, err := s.SignIn(ctx, "olga", password, &recordingAttempts{})
	if err != nil || res.Outcome != OutcomeOK {
		t.Fatalf("the right password under the retired pepper: %v %v", res.Outcome, err)
	}
	after := stored()
	if PepperOf(after) != next.IndexKeyID() || !strings.Contains(after, ",keyed="+next.IndexKeyID()+"$") {
		t.Fatalf("after the sign-in: %q, want it keyed with %s", after, next.IndexKeyID())
	}
	if res, err := s.SignIn(ctx, "olga", password, &recordingAttempts{}); err != nil || res.Outcome != OutcomeOK || stored() != after {
		t.Fatalf("the new hash: %v %v", res.Outcome, err)
	}
	// The old hash, once the retired key is dropped, does not verify.
	if ok, _ := s.passwords.verify(ctx, before, password); !ok {
		t.Fatal("the old hash does not verify with the retired key kept")
	}
	if err := next.DropRetired(); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.passwords.verify(ctx, before, password); ok {
		t.Fatal("a hash under a dropped pepper verified")
	}
	if ok, _ := s.passwords.verify(ctx, after, password); !ok {
		t.Fatal("the current hash does not verify after the drop")
	}
	// The old keystore knows no hash of the new pepper.
	if ok, _ := (passwordHasher{old}).verify(ctx, after, password); ok {
		t.Fatal("the old keystore verified a hash under the new pepper")
	}
}
