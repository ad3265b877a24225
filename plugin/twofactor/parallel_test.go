package twofactor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// heldCounts is a store whose first n increments of one failure count
// (key) each wait until all n are made: n codes sent at once are then all
// counted before any of them is checked, however the machine schedules
// them. That is the case in which copies still in flight were refused as
// locked; without the hold it shows only on some runs.
type heldCounts struct {
	storage.Store
	key  string
	n    int64
	made atomic.Int64
	all  chan struct{}
}

func (h *heldCounts) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	v, err := h.Store.Incr(ctx, key, delta, ttl)
	if key != h.key {
		return v, err
	}
	switch made := h.made.Add(1); {
	case made == h.n:
		close(h.all)
	case made > h.n:
		return v, err
	}
	<-h.all
	return v, err
}

// heldFixture is newFixture over a heldCounts store; hold arms it for
// the user's failure count.
func heldFixture(t *testing.T) (*fixture, func(u *account.User, n int)) {
	h := &heldCounts{all: make(chan struct{})}
	fx := newFixtureWith(t, func(st storage.Store) storage.Store { h.Store = st; return h })
	return fx, func(u *account.User, n int) { h.key, h.n = failuresKey(u.ID), int64(n) }
}

// burst sends codes for u at once, each from its own goroutine, and
// returns the results in the order of codes.
func burst(t *testing.T, fx *fixture, u *account.User, codes []string) []Result {
	t.Helper()
	ctx := context.Background()
	results := make([]Result, len(codes))
	var wg sync.WaitGroup
	for i, c := range codes {
		wg.Go(func() {
			res, err := fx.svc.Verify(signInRequest(ctx), u, c)
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		})
	}
	wg.Wait()
	return results
}

// TestParallelCopiesOfTheRightCodeDoNotLock: 20 copies of one right code
// sent at once (a retrying client, a double submit), all counted before
// any is checked, with a lockout threshold of 5: one is accepted, the
// others are refused as repeats or, those counted past the threshold
// while no lock was stored, as busy; none is answered locked, and the
// user ends unlocked with no failure counted. For each kind of factor.
func TestParallelCopiesOfTheRightCodeDoNotLock(t *testing.T) {
	const n = 20
	for _, tc := range []struct {
		t     Type
		enrol func(t *testing.T, fx *fixture) (*account.User, string)
	}{
		{TypeApp, func(t *testing.T, fx *fixture) (*account.User, string) {
			u, sec := fx.appUser(t, "ann")
			right, _ := codesNow(fx, sec)
			return u, right
		}},
		{TypeHardToken, func(t *testing.T, fx *fixture) (*account.User, string) {
			u := fx.user(t, "ann", "")
			if err := fx.svc.EnrolHardToken(context.Background(), u, rfcSecret, 0); err != nil {
				t.Fatal(err)
			}
			return u, code(rfcSecret, 0)
		}},
		{TypeSMS, func(t *testing.T, fx *fixture) (*account.User, string) {
			u := fx.user(t, "ann", "+421 900 123 458")
			if err := fx.svc.EnrolSMS(context.Background(), u); err != nil {
				t.Fatal(err)
			}
			if err := fx.svc.SendCode(context.Background(), u); err != nil {
				t.Fatal(err)
			}
			return u, fx.sender.LastCode(t)
		}},
	} {
		t.Run(string(tc.t), func(t *testing.T) {
			fx, hold := heldFixture(t)
			if threshold := fx.svc.engine.Config.LockoutThreshold; threshold != 5 {
				t.Fatalf("lockout threshold %d, want the default 5", threshold)
			}
			u, right := tc.enrol(t, fx)
			hold(u, n)
			codes := make([]string, n)
			for i := range codes {
				codes[i] = right
			}
			accepted, repeated, busy := 0, 0, 0
			for _, res := range burst(t, fx, u, codes) {
				switch {
				case res.OK && res.Type == tc.t:
					accepted++
				case !res.OK && !res.Locked && res.Reason == ReasonRepeated:
					repeated++
				case !res.OK && !res.Locked && res.Reason == ReasonBusy:
					busy++
				default:
					t.Errorf("a copy of the right code: %+v; want accepted, or refused as a repeat or as busy", res)
				}
			}
			st, err := fx.svc.Status(context.Background(), u)
			if err != nil {
				t.Fatal(err)
			}
			if accepted != 1 || st.Locked || st.ConsecutiveFailures != 0 {
				t.Fatalf("%d copies of the right code at once: %d accepted, %d repeats, %d busy, then %+v; want 1 accepted, unlocked, no failure counted",
					n, accepted, repeated, busy, st)
			}
			// No note of the busy answers is left, which would lock the
			// user at a later burst (busyTooLong).
			if _, err := fx.e.Store.Get(context.Background(), busySinceKey(u.ID)); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("after the burst the busy answers' note is left: %v", err)
			}
		})
	}
}

// TestParallelWrongCodesLockAtTheThreshold: 20 wrong codes sent at once,
// all counted before any is checked: exactly the lockout threshold of
// them are checked, the others are refused unchecked (as locked once the
// lock is stored, as busy before), and the user ends locked with every
// code counted but those answered busy.
func TestParallelWrongCodesLockAtTheThreshold(t *testing.T) {
	const n = 20
	fx, hold := heldFixture(t)
	u, sec := fx.appUser(t, "mallet")
	right, _ := codesNow(fx, sec)
	hold(u, n)
	codes := make([]string, 0, n)
	for i := 0; len(codes) < n; i++ {
		if c := fmt.Sprintf("%06d", 100000+i); c != right {
			codes = append(codes, c)
		}
	}
	checked, locked, busy := 0, 0, 0
	for _, res := range burst(t, fx, u, codes) {
		switch {
		case res.OK:
			t.Fatalf("a wrong code was accepted: %+v", res)
		case res.Reason == ReasonWrongCode:
			checked++
		case res.Reason == ReasonLocked && res.Locked:
			locked++
		case res.Reason == ReasonBusy && !res.Locked:
			busy++
		default:
			t.Errorf("a wrong code: %+v", res)
		}
	}
	threshold := fx.svc.engine.Config.LockoutThreshold
	st, err := fx.svc.Status(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	if checked != threshold || !st.Locked || st.ConsecutiveFailures != int64(n-busy) {
		t.Fatalf("%d wrong codes at once: %d checked, %d refused as locked, %d as busy, then %+v; want %d checked, locked with %d failures",
			n, checked, locked, busy, st, threshold, n-busy)
	}
}

// TestParallelRightCopiesAndGuesses: copies of the right code and wrong
// guesses sent at once, all counted before any is checked, get no more
// checks than the lockout threshold, wrong guesses included, and the
// right code is accepted at most once.
func TestParallelRightCopiesAndGuesses(t *testing.T) {
	const copies, guesses = 10, 10
	fx, hold := heldFixture(t)
	u, sec := fx.appUser(t, "mixer")
	right, wrong := codesNow(fx, sec)
	hold(u, copies+guesses)
	codes := make([]string, 0, copies+guesses)
	for i := range copies + guesses {
		if i%2 == 0 {
			codes = append(codes, right)
		} else {
			codes = append(codes, wrong)
		}
	}
	accepted, checked := 0, 0
	for i, res := range burst(t, fx, u, codes) {
		switch {
		case res.OK && codes[i] == right:
			accepted++
			checked++
		case res.OK:
			t.Fatalf("a wrong guess was accepted: %+v", res)
		case res.Reason == ReasonRepeated || res.Reason == ReasonWrongCode:
			checked++
		case res.Reason != ReasonBusy && res.Reason != ReasonLocked:
			t.Errorf("an unexpected answer: %+v", res)
		}
	}
	if threshold := fx.svc.engine.Config.LockoutThreshold; accepted > 1 || checked != threshold {
		t.Fatalf("%d copies of the right code and %d guesses at once: %d checked, %d accepted; want %d checked (the threshold), at most 1 accepted",
			copies, guesses, checked, accepted, threshold)
	}
}

// TestALockNoteThatFailsItsTagIsALock: a user past the threshold whose
// lock note fails its tag (an earlier version's format, a note written
// without the keystore) is locked: the right code is refused as locked,
// not as busy (which would say "try again" for ever and never tell the
// lock).
func TestALockNoteThatFailsItsTagIsALock(t *testing.T) {
	var flaky *enginetest.FlakyStore
	fx := newFixtureWith(t, func(st storage.Store) storage.Store { flaky = &enginetest.FlakyStore{Store: st}; return flaky })
	u, sec := fx.appUser(t, "ann")
	ctx := context.Background()
	if _, err := fx.e.Store.Incr(ctx, failuresKey(u.ID), int64(fx.svc.engine.Config.LockoutThreshold), 0); err != nil {
		t.Fatal(err)
	}
	key := lockNotedKey(u.ID)
	if err := flaky.Put(ctx, key, []byte("5"), 0); err != nil { // under the cache, which has not read it
		t.Fatal(err)
	}
	flaky.Forged.Store(&key)
	right, _ := codesNow(fx, sec)
	if res := fx.verify(t, u, right); res.OK || !res.Locked || res.Reason != ReasonLocked {
		t.Fatalf("the right code of a user locked by an unreadable note: %+v; want refused as locked", res)
	}
}

// TestTakingBackKeepsTheLockOfACountStillPastIt: an attempt's count taken
// back while another is counted (its compare-and-swap lost) may delete
// the lock note on its first try and then commit a count still at or
// above the threshold: the note goes back, and a code past the threshold
// is refused as locked, not as busy.
func TestTakingBackKeepsTheLockOfACountStillPastIt(t *testing.T) {
	var flaky *enginetest.FlakyStore
	fx := newFixtureWith(t, func(st storage.Store) storage.Store { flaky = &enginetest.FlakyStore{Store: st}; return flaky })
	u, sec := fx.appUser(t, "ann")
	ctx := context.Background()
	threshold := int64(fx.svc.engine.Config.LockoutThreshold)
	a, _, err := fx.svc.Try(ctx, signInRequest(ctx), u) // this attempt: count 1
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fx.e.Store.Incr(ctx, failuresKey(u.ID), threshold-1, 0); err != nil { // at the threshold, locked
		t.Fatal(err)
	}
	if err := fx.e.Store.Put(ctx, lockNotedKey(u.ID), []byte("noted"), 0); err != nil {
		t.Fatal(err)
	}
	// Another attempt is counted between the first try's read and its
	// compare-and-swap.
	once := false
	flaky.BeforeWrite = func(key string) {
		if key == failuresKey(u.ID) && !once {
			once = true
			if _, err := flaky.Store.Incr(ctx, key, 1, 0); err != nil {
				t.Error(err)
			}
		}
	}
	if err := a.Withdraw(ctx); err != nil {
		t.Fatal(err)
	}
	flaky.BeforeWrite = nil
	if n, err := fx.svc.failures(ctx, u.ID); err != nil || n != threshold {
		t.Fatalf("failures after the take-back: %d, %v; want %d", n, err, threshold)
	}
	right, _ := codesNow(fx, sec)
	if res := fx.verify(t, u, right); !res.Locked || res.Reason != ReasonLocked {
		t.Fatalf("the right code past the threshold after the take-back: %+v; want refused as locked", res)
	}
}

// TestACountLeftPastTheThresholdLocksInTime: a failure count left at the
// threshold with no lock stored (attempts counted that never settled: a
// process killed between an attempt's count and its outcome) answers
// busy for a few seconds, then locks the user as the count says, rather
// than "try again" for ever; an unlock ends it. A burst of copies of the
// right code leaves nothing behind: a later burst gets busy answers, not
// a lock.
func TestACountLeftPastTheThresholdLocksInTime(t *testing.T) {
	fx := newFixture(t)
	u, sec := fx.appUser(t, "ann")
	ctx := context.Background()
	threshold := int64(fx.svc.engine.Config.LockoutThreshold)
	if _, err := fx.e.Store.Incr(ctx, failuresKey(u.ID), threshold, 0); err != nil {
		t.Fatal(err)
	}
	right, _ := codesNow(fx, sec)
	if res := fx.verify(t, u, right); res.OK || res.Reason != ReasonBusy {
		t.Fatalf("the right code with the count left at the threshold: %+v; want busy at first", res)
	}
	fx.advance(busyGrace + time.Second)
	right, _ = codesNow(fx, sec)
	if res := fx.verify(t, u, right); !res.Locked || res.Reason != ReasonLocked {
		t.Fatalf("the right code %v later: %+v; want refused as locked", busyGrace+time.Second, res)
	}
	if err := fx.svc.UnlockAll(ctx, u); err != nil {
		t.Fatal(err)
	}
	fx.advance(30 * time.Second) // a new TOTP step
	right, _ = codesNow(fx, sec)
	if res := fx.verify(t, u, right); !res.OK {
		t.Fatalf("the right code after an unlock: %+v", res)
	}
	if _, err := fx.e.Store.Get(ctx, busySinceKey(u.ID)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the busy note outlived the unlock: %v", err)
	}
}
