package twofactor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
	"github.com/gatehouse-auth/gatehouse/storage/counters"
	"github.com/gatehouse-auth/gatehouse/storage/tagged"
)

// Result is the outcome of one second-factor check.
type Result struct {
	// OK is true when the code was accepted.
	OK bool
	// Type is the factor that accepted the code.
	Type Type
	// Locked is true when the user is locked (before or because of this
	// attempt).
	Locked bool
	// Reason says why the code was refused; safe to show and to log.
	Reason string
}

// Refusal reasons.
const (
	ReasonNotEnabled = "two-factor authentication is not enabled for the user"
	ReasonBlocked    = account.ReasonBlocked
	ReasonLocked     = account.ReasonLocked
	ReasonWrongCode  = "wrong or expired code"
	ReasonReplayed   = "the code was already used or a newer one was"
	ReasonRepeated   = "the code was already accepted"
	ReasonMalformed  = "the code must be 6 digits"
	// ReasonBusy refuses, unchecked and uncounted, a code that came while
	// other attempts of the user, not yet settled, filled the lockout
	// threshold (see Attempt.refuse).
	ReasonBusy = "other attempts of this user are being checked; try again"
)

// Verify checks code against every second factor the user has. A refused
// code counts as a failure; at the lockout threshold the user is locked,
// and a locked user's codes are refused without being checked (and still
// counted). The attempt is counted before the code is checked (see Try),
// so parallel guesses cannot all be checked against a count that none of
// them has raised yet; one counted past the threshold while no lock is
// stored is refused unchecked as busy, and not counted (Attempt.refuse).
// r is the request the code came with: the audit
// event of a lockout names its client. Errors are store failures; the
// caller fails closed.
func (s *Service) Verify(r *http.Request, u *account.User, presented string) (Result, error) {
	ctx := r.Context()
	if !u.Active() {
		return Result{Reason: ReasonBlocked}, nil
	}
	f, err := s.factors(ctx, u.ID)
	if err != nil {
		return Result{}, err
	}
	if f.app == nil && f.hardToken == nil && !f.sms {
		return Result{Reason: ReasonNotEnabled}, nil
	}
	a, full, err := s.Try(ctx, r, u)
	if err != nil {
		return Result{}, err
	}
	if full {
		return a.refuse(ctx)
	}
	c, ok := NormalizeCode(presented)
	if !ok {
		return a.Failed(ctx, ReasonMalformed)
	}
	reason := ReasonWrongCode
	type check func(context.Context, *account.User, *factors, string) (bool, string, error)
	for _, try := range []struct {
		t  Type
		fn check
	}{{TypeApp, s.checkApp}, {TypeHardToken, s.checkHardToken}, {TypeSMS, s.checkSMS}} {
		accepted, why, err := try.fn(ctx, u, f, c)
		if err != nil {
			// Fail closed: the attempt stays counted, as an earlier factor
			// may already have judged the code (and the error tells so).
			return Result{}, err
		}
		if accepted {
			return Result{OK: true, Type: try.t}, a.Passed(ctx)
		}
		if why != "" {
			reason = why
		}
	}
	if reason == ReasonRepeated {
		// The code accepted last, sent again (a client retrying a request
		// that timed out, a double submit): a failure (last_failure), but
		// no guess at an unknown code, so not counted toward the lockout.
		// Only that one code: an older or skipped one is counted as any
		// other (ReasonReplayed). A random guess is it once in a million.
		if err := s.noteFailure(ctx, u.ID); err != nil {
			return Result{}, err
		}
		return Result{Reason: reason}, a.Withdraw(ctx)
	}
	return a.Failed(ctx, reason)
}

// checkApp accepts a TOTP code of the current step ±1 that is newer than
// the last one accepted.
func (s *Service) checkApp(ctx context.Context, u *account.User, f *factors, c string) (bool, string, error) {
	if f.app == nil {
		return false, "", nil
	}
	unix := s.now().Unix()
	step, ok := matchTOTP(f.app, c, unix)
	if !ok {
		s.noteSkew(u, f.app, c, unix)
		return false, "", nil
	}
	fresh, repeated, err := s.useAppStep(ctx, u.ID, step)
	if err != nil || !fresh {
		return false, replayReason(repeated), err
	}
	return true, "", nil
}

// useAppStep records step as the user's last accepted TOTP time step
// (a user's TOTP codes are accepted once per step, whichever secret made
// them), unless that step or a later one was accepted already: fresh
// reports whether it was recorded, repeated whether step is the one
// accepted last.
func (s *Service) useAppStep(ctx context.Context, uid string, step int64) (fresh, repeated bool, err error) {
	fresh, err = s.advance(ctx, uid, func(st *state) bool {
		if st.AppStep >= step {
			repeated = st.AppStep == step
			return false
		}
		st.AppStep = step
		return true
	})
	return fresh, repeated, err
}

// ConfirmApp reports whether presented (as typed: NormalizeCode) is a
// TOTP code of secretB32, a new authenticator-app secret of u not
// enrolled yet (NewAppSecret), at the current time step or one either
// side; if so, that step counts as
// used by u, as after a sign-in with the code (useAppStep), so that the
// code which confirmed the secret does not sign in once the secret is
// enrolled. Confirming does not need the step to be newer than the last
// one accepted (a code of the old secret in the same half-minute): no code
// of this secret was accepted before. Errors are store failures.
func (s *Service) ConfirmApp(ctx context.Context, u *account.User, secretB32, presented string) (bool, error) {
	c, ok := NormalizeCode(presented)
	if !ok {
		return false, nil
	}
	sec, unix := &secret{base32: secretB32}, s.now().Unix()
	step, ok := matchTOTP(sec, c, unix)
	if !ok {
		s.noteSkew(u, sec, c, unix)
		return false, nil
	}
	if _, _, err := s.useAppStep(ctx, u.ID, step); err != nil {
		return false, err
	}
	return true, nil
}

// noteSkew warns when presented, refused by matchTOTP, is u's code of sec
// for a time within ten minutes of unix (skewTOTP): the server's clock or
// the user's device's is off, and right codes are refused and counted
// toward the lockout. The code is not logged. At most one line a minute
// (skewLines), with how many such codes it stands for: a user confirming
// a new secret (ConfirmApp) has its codes for every time, and no lockout
// counts them.
func (s *Service) noteSkew(u *account.User, sec *secret, presented string, unix int64) {
	d, ok := skewTOTP(sec, presented, unix)
	if !ok {
		return
	}
	if due, count := s.skewLines.Due(s.now()); due {
		s.engine.Logger.Warn("a refused authenticator-app code is the user's code for a time this far from this "+
			"instance's clock: this clock or the user's device's is off (run NTP), or the code was kept that long. "+
			"If many users show about the same time, it is this clock: each such code counts toward the lockout",
			zap.String("username", u.Username), zap.Duration("code_time_from_clock", time.Duration(d*totpPeriod)*time.Second),
			zap.Int64("codes_since_last_line", count))
	}
}

// replayReason is the reason a code accepted before is refused:
// ReasonRepeated for the one accepted last, ReasonReplayed otherwise.
func replayReason(repeated bool) string {
	if repeated {
		return ReasonRepeated
	}
	return ReasonReplayed
}

// usedNext is the next HOTP counter the state expects of the token sec,
// from the codes of it accepted before: by its ID (this import) or by its
// secret's digest (any import of the same token); ok is false when none
// was.
func usedNext(st *state, sec *secret) (next uint64, ok bool) {
	if st.HOTPID == sec.id {
		next, ok = st.HOTPNext, true
	}
	for _, m := range st.HOTPTokens {
		if m.Secret == sec.digest || slices.Contains(sec.formerDigests, m.Secret) {
			next, ok = max(next, m.Next), true
		}
	}
	return next, ok
}

// lastHOTP reports whether counter is the last one accepted from the
// token sec.
func lastHOTP(st *state, sec *secret, counter uint64) bool {
	next, ok := usedNext(st, sec)
	return ok && next > 0 && counter == next-1
}

// hotpNext is the next HOTP counter expected for the token sec: the one
// it was imported with, or past the last code it gave that was accepted,
// whichever is further. An import of the same secret with a lower counter
// (an administrator's resynchronisation) so never makes a code seen
// before valid again.
func hotpNext(st *state, sec *secret) uint64 {
	if next, ok := usedNext(st, sec); ok {
		return max(next, sec.counter)
	}
	return sec.counter
}

// checkHardToken accepts an HOTP code within the look-ahead window and
// moves the counter past it.
func (s *Service) checkHardToken(ctx context.Context, u *account.User, f *factors, c string) (bool, string, error) {
	sec := f.hardToken
	if sec == nil {
		return false, "", nil
	}
	st, err := s.readState(ctx, u.ID)
	if err != nil {
		return false, "", err
	}
	next := hotpNext(&st, sec)
	counter, ok := matchHOTP(sec, c, next, s.opts.HOTPWindow)
	if !ok {
		// Look back one window too, only to tell a replay from a wrong code.
		if back := min(next, uint64(s.opts.HOTPWindow)); back > 0 { //nolint:gosec // G115: the window is a small positive option
			if used, ok := matchHOTP(sec, c, next-back, int(back)-1); ok { //nolint:gosec // G115: back <= the window, an int
				return false, replayReason(lastHOTP(&st, sec, used)), nil
			}
		}
		return false, "", nil
	}
	repeated := false
	fresh, err := s.advance(ctx, u.ID, func(st *state) bool {
		if counter < hotpNext(st, sec) {
			repeated = lastHOTP(st, sec, counter)
			return false
		}
		st.HOTPID, st.HOTPNext = sec.id, counter+1
		st.HOTPTokens = markToken(st.HOTPTokens, sec.digest, counter+1)
		return true
	})
	if err != nil || !fresh {
		return false, replayReason(repeated), err
	}
	return true, "", nil
}

// Locked reports whether the user reached the lockout threshold.
func (s *Service) Locked(ctx context.Context, u *account.User) (bool, error) {
	n, err := s.failures(ctx, u.ID)
	return n >= int64(s.engine.Config.LockoutThreshold), err
}

// failures is the user's count of consecutive failures.
func (s *Service) failures(ctx context.Context, uid string) (int64, error) {
	return s.counter(ctx, failuresKey(uid))
}

// unlocks counts the times the user was unlocked: an attempt counted
// before an unlock takes nothing back after it (see takeBack).
func (s *Service) unlocks(ctx context.Context, uid string) (int64, error) {
	return s.counter(ctx, unlocksKey(uid))
}

// counter reads a counter, absent counting as zero.
func (s *Service) counter(ctx context.Context, key string) (int64, error) {
	n, err := cache.Load(s.engine.Store, ctx, key, parseCounter)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, nil
	}
	return n, err
}

// Attempt is one try of a user's credentials (a second-factor code, or the
// password at the login portal) that Try has counted as a failure in
// advance. Its outcome is one of Failed, Passed and Withdraw.
type Attempt struct {
	s *Service
	u *account.User
	// r is the request the attempt came with (its client is named in the
	// lockout's audit event).
	r *http.Request
	// n is the failure count this attempt's reservation made.
	n int64
	// unlocks is the user's unlock count read before the reservation.
	unlocks int64
}

// Try counts an attempt of u as a failure before the credential is
// checked, in one atomic increment, so that concurrent attempts each see
// the ones before them: of N guesses sent at once, only those still under
// the lockout threshold are checked. locked reports that the user had
// reached the threshold before this attempt: the caller refuses it
// without checking the credential (the password step keeps it counted,
// see Failed; Verify keeps it counted only while the lock is stored, see
// Attempt.refuse). r is the request the attempt came with.
func (s *Service) Try(ctx context.Context, r *http.Request, u *account.User) (a *Attempt, locked bool, err error) {
	// Read before the increment: an unlock in between makes the attempt
	// look older than it is, so that it keeps its count (one too many),
	// never takes back another's.
	unlocks, err := s.unlocks(ctx, u.ID)
	if err != nil {
		return nil, false, err
	}
	n, err := s.engine.Store.Incr(ctx, failuresKey(u.ID), 1, 0)
	if err != nil {
		return nil, false, err
	}
	return &Attempt{s: s, u: u, r: r, n: n, unlocks: unlocks}, n > int64(s.engine.Config.LockoutThreshold), nil
}

// refuse answers a code whose attempt Try counted past the lockout
// threshold, without checking it. With the lock stored (the note that a
// failure at or above the threshold sets, see noteLock) the user is
// locked, and the attempt stays counted like any of a locked user.
// Without it the threshold was filled by attempts still being checked:
// perhaps copies of one right code sent at once (a retrying client, a
// double submit), all but one of which turn out to be repeats and are
// taken back. Then this one is taken back too and answered busy, so that
// the copies of a right code cannot lock their user out; it gets no
// check either, so parallel guesses still get no more checks than the
// threshold allows, and each of those checked that fails keeps its count.
func (a *Attempt) refuse(ctx context.Context) (Result, error) {
	stored, err := a.s.lockStored(ctx, a.u.ID)
	if err != nil {
		return Result{}, err // the attempt stays counted: fail closed
	}
	if stored {
		return a.Failed(ctx, ReasonLocked)
	}
	stale, err := a.s.busyTooLong(ctx, a.u.ID)
	if err != nil {
		return Result{}, err
	}
	if stale {
		return a.Failed(ctx, ReasonLocked)
	}
	if err := a.Withdraw(ctx); err != nil {
		return Result{}, err
	}
	// The attempts that filled the threshold may all have settled before
	// this one noted its busy answer: the note goes once the count is
	// below the threshold (takeBack clears it when a count crosses it).
	n, err := a.s.failures(ctx, a.u.ID)
	if err == nil && n < int64(a.s.engine.Config.LockoutThreshold) {
		err = a.s.engine.Store.Delete(ctx, busySinceKey(a.u.ID))
	}
	return Result{Reason: ReasonBusy}, err
}

// busyGrace bounds how long attempts past the threshold are answered busy
// while no lock is stored. Attempts in flight settle within seconds (a
// code checked, a count written); a count past the threshold for longer
// was left by attempts that never settled (a process killed between an
// attempt's count and its outcome), and the user is then locked, the
// lock told, as the count says, rather than told "try again" for ever.
const busyGrace = 10 * time.Second

// busyTooLong notes when an attempt past the threshold was first answered
// busy (while no lock is stored) and reports whether that was more than
// busyGrace ago. takeBack clears the note once the count falls below the
// threshold, and an unlock with the count.
func (s *Service) busyTooLong(ctx context.Context, uid string) (bool, error) {
	st, key, now := s.engine.Store, busySinceKey(uid), s.now().UTC()
	raw, err := st.Get(ctx, key)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		_, err := st.CompareAndSwap(ctx, key, nil, []byte(now.Format(time.RFC3339Nano)), 0)
		return false, err
	case errors.Is(err, tagged.ErrTampered):
		return true, nil // not written by this keystore: no grace
	case err != nil:
		return false, err
	}
	since, err := time.Parse(time.RFC3339Nano, string(raw))
	return err != nil || now.Sub(since) > busyGrace, nil
}

// lockStored reports whether the user's lock note is set. A note that
// fails its tag (an earlier version's format, or one written without the
// keystore) counts as set: the count is past the threshold, and a note
// there says that no attempt in flight filled it; refuse then answers
// locked through Failed, whose noteLock writes the note again and tells
// the lock.
func (s *Service) lockStored(ctx context.Context, uid string) (bool, error) {
	switch _, err := s.engine.Store.Get(ctx, lockNotedKey(uid)); {
	case err == nil, errors.Is(err, tagged.ErrTampered):
		return true, nil
	case errors.Is(err, storage.ErrNotFound):
		return false, nil
	default:
		return false, err
	}
}

// Failed records the attempt as failed: it was counted by Try; this notes
// the time, and at or above the threshold locks the user: a log line and
// an audit event, once per run of failures (see noteLock).
func (a *Attempt) Failed(ctx context.Context, reason string) (Result, error) {
	s := a.s
	if err := s.noteFailure(ctx, a.u.ID); err != nil {
		return Result{}, err
	}
	locked := a.n >= int64(s.engine.Config.LockoutThreshold)
	if locked {
		if err := a.noteLock(ctx, s.now().UTC().Format(time.RFC3339Nano)); err != nil {
			return Result{}, err
		}
	}
	return Result{Locked: locked, Reason: reason}, nil
}

// noteFailure records the time of the user's last failure (the ESA
// profile's last_failure).
func (s *Service) noteFailure(ctx context.Context, uid string) error {
	return s.engine.Store.Put(ctx, lastFailureKey(uid), []byte(s.now().UTC().Format(time.RFC3339Nano)), 0)
}

// noteLock logs and audits that the user is locked, once per run of
// failures: the attempt counted at the threshold is not always the one
// that tells, since a right password or a store failure may take it back
// after others were counted past it. The first failure at or above the
// threshold that sets the user's lock note tells, if the count is still
// there once the note is set; takeBack and Unlock remove the note when
// the count falls below the threshold.
func (a *Attempt) noteLock(ctx context.Context, now string) error {
	st, key := a.s.engine.Store, lockNotedKey(a.u.ID)
	switch _, err := st.Get(ctx, key); {
	case err == nil:
		return nil // noted already (a cached read while the user stays locked)
	case errors.Is(err, tagged.ErrTampered):
		// Written without the keystore, to keep the lock untold: no note.
		if err := st.Delete(ctx, key); err != nil {
			return err
		}
	case !errors.Is(err, storage.ErrNotFound):
		return err
	}
	first, err := st.CompareAndSwap(ctx, key, nil, []byte(now), 0)
	if err != nil || !first {
		return err
	}
	n, err := a.s.failures(ctx, a.u.ID)
	if err != nil {
		return err
	}
	threshold := int64(a.s.engine.Config.LockoutThreshold)
	if n < threshold { // taken back below the threshold meanwhile: not locked
		return st.Delete(ctx, key)
	}
	a.s.engine.Logger.Warn("user locked after consecutive 2FA failures",
		zap.String("username", a.u.Username), zap.Int64("failures", n))
	a.s.Record(a.r, audit.Event{Username: a.u.Username, Outcome: audit.OutcomeFailure,
		Reason: fmt.Sprintf("user locked after %d consecutive failures", threshold)})
	return nil
}

// Passed ends the run of consecutive failures after an accepted second
// factor: the count loses this attempt and the a.n-1 before it. Attempts
// counted after it, whose outcome is not known yet, stay counted: a
// success must not wipe the failures of guesses made beside it.
func (a *Attempt) Passed(ctx context.Context) error { return a.takeBack(ctx, a.n) }

// Withdraw takes the attempt's count back without ending the run: a
// right password is no passed second factor, and a store failure no
// wrong password. A count reset meanwhile stays reset.
func (a *Attempt) Withdraw(ctx context.Context) error { return a.takeBack(ctx, 1) }

// takeBack lowers the user's failure count by k, deleting it at zero, with
// storage.Update so that concurrent attempts keep theirs. After an
// unlock since the attempt was counted it takes nothing back: the unlock
// cleared the attempt's count, and what is counted now are later guesses.
func (a *Attempt) takeBack(ctx context.Context, k int64) error {
	st := a.s.engine.Store
	// A try that deleted the lock note may lose its compare-and-swap to a
	// concurrent count, and the try that commits stay at or above the
	// threshold: the note then goes back (below), else later attempts
	// past the threshold would be answered busy, not locked (refuse).
	deleted, unlocked := false, false
	err := storage.Update(ctx, st, failuresKey(a.u.ID), 0, func(raw []byte) ([]byte, error) {
		unlocked = false
		switch unlocks, err := a.s.unlocks(ctx, a.u.ID); {
		case err != nil:
			return nil, err
		case unlocks != a.unlocks || raw == nil:
			return nil, storage.ErrNoChange
		}
		n, err := parseCounter(raw)
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return nil, storage.ErrNoChange
		}
		var fewer []byte // k failures fewer; none deletes the count
		if n > k {
			fewer = strconv.AppendInt(nil, n-k, 10)
		}
		// Falling below the threshold unlocks: the lock note goes first, so
		// that the next lock is told again even if this fails half-way (a
		// lock told twice is better than one not told).
		if threshold := int64(a.s.engine.Config.LockoutThreshold); n >= threshold && n-k < threshold {
			if err := st.Delete(ctx, lockNotedKey(a.u.ID)); err != nil {
				return nil, err
			}
			deleted, unlocked = true, true
		}
		return fewer, nil
	})
	if err == nil && unlocked {
		return st.Delete(ctx, busySinceKey(a.u.ID)) // below the threshold: a later burst's busy answers get their grace again
	}
	if err != nil || !deleted {
		return err
	}
	n, err := a.s.failures(ctx, a.u.ID) // an unlock since clears the count, and the note stays gone
	if err != nil || n < int64(a.s.engine.Config.LockoutThreshold) {
		return err
	}
	_, err = st.CompareAndSwap(ctx, lockNotedKey(a.u.ID), nil, []byte(a.s.now().UTC().Format(time.RFC3339Nano)), 0)
	return err
}

// Unlock lifts the user's lockout, as the ESA API's unlock does: it
// clears the failure count (second factors and the portal's passwords)
// and its lock note, in one atomic batch (a count cleared with the note
// left would keep the next lock untold), and then counts the unlock, so
// that attempts counted before it take nothing back from the guesses
// counted after it. In that order, an attempt that reads the unlock count
// between the two counts itself as older than it is, and keeps its count.
func (s *Service) Unlock(ctx context.Context, u *account.User) error { return s.unlock(ctx, u) }

// UnlockAll is Unlock for an administrator (the admin API, the console):
// it also clears the name's password throttles, HTTP Basic's (the
// name's shared count and each familiar network's) and the directory's
// bound on failed binds, so that the user can sign in at once wherever a
// guesser, or the user's own device with an old password, kept the name
// throttled. An ESA API credential, which a third-party system holds,
// gets Unlock only: with these it could lift the bounds on password
// guessing at will.
func (s *Service) UnlockAll(ctx context.Context, u *account.User) error {
	throttles := []string{counters.BasicFailures(u.Username), counters.DirectoryBindFailures(u.Username)}
	err := s.engine.Store.Scan(ctx, counters.BasicNetworkFailuresOf(u.Username), func(e storage.Entry) error {
		throttles = append(throttles, e.Key)
		return nil
	})
	if err != nil {
		return err
	}
	return s.unlock(ctx, u, throttles...)
}

// unlock is Unlock, deleting the counters also in the same batch.
func (s *Service) unlock(ctx context.Context, u *account.User, also ...string) error {
	ops := []storage.Op{{Kind: storage.OpDelete, Key: failuresKey(u.ID)}, {Kind: storage.OpDelete, Key: lockNotedKey(u.ID)},
		{Kind: storage.OpDelete, Key: busySinceKey(u.ID)}}
	for _, key := range also {
		ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: key})
	}
	if err := s.engine.Store.Batch(ctx, ops); err != nil {
		return err
	}
	_, err := s.engine.Store.Incr(ctx, unlocksKey(u.ID), 1, 0)
	return err
}

// Status is what the ESA profile and the admin API show of a user's
// second factors.
type Status struct {
	// Types are the enabled factors.
	Types []Type
	// Locked is true at or above the lockout threshold.
	Locked bool
	// ConsecutiveFailures counts failures since the last success or unlock.
	ConsecutiveFailures int64
	// LastSuccess and LastFailure are nil when there was none.
	LastSuccess, LastFailure *time.Time
}

// Status returns the user's second-factor status.
func (s *Service) Status(ctx context.Context, u *account.User) (Status, error) {
	var out Status
	f, err := s.factors(ctx, u.ID)
	if err != nil {
		return out, err
	}
	out.Types = f.types()
	if out.ConsecutiveFailures, err = s.failures(ctx, u.ID); err != nil {
		return out, err
	}
	out.Locked = out.ConsecutiveFailures >= int64(s.engine.Config.LockoutThreshold)
	st, err := s.readState(ctx, u.ID)
	if err != nil {
		return out, err
	}
	out.LastSuccess = st.LastSuccess
	raw, err := s.engine.Store.Get(ctx, lastFailureKey(u.ID))
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return out, err
	default:
		if t, err := time.Parse(time.RFC3339Nano, string(raw)); err == nil {
			out.LastFailure = &t
		}
	}
	return out, nil
}

// Lockout is the second-factor lockout as the attempt accounting of a
// password sign-in (account.Service.SignIn), for the login portal and the
// console's re-authentication: each attempt is counted (Try) before the
// password is checked, so that passwords guessed in parallel cannot all
// be checked. Unknown users have nothing to lock, but their attempts cost
// the same store writes (coverAccount). r is the request the password
// came with.
func (s *Service) Lockout(r *http.Request) account.Attempts { return lockout{s, r} }

// lockout implements Lockout.
type lockout struct {
	svc *Service
	r   *http.Request
}

// lockoutAttempt is one counted attempt: a user's, or for a name without
// an account the cover's (coverAccount).
type lockoutAttempt struct {
	attempt *Attempt
	// cover is true for the attempt of a name without an account.
	cover bool
}

// coverAccount is the account whose lockout count the attempts of name,
// which has no account, are counted in, and taken back from whatever
// their outcome: an attempt of an account costs two writes to the store
// (Try's count, then Failed's time of the failure), which Badger syncs
// to disk, and the portal answered a wrong password for a known name
// about 7.7 ms later than for a name nobody has (an outside review
// measured it, 200 of each interleaved, AUC 0.69): a way to tell which
// names exist. Each name has a cover of its own, as each account has its
// count: with one cover for every name, 500 sign-ins of names nobody has
// sent at once fought over its count, and a fifth of them failed (500).
// Its ID is no account's (those are hex), it is never locked, and its
// count, deleted at zero, lasts only while attempts are in flight.
func coverAccount(name string) *account.User {
	sum := sha256.Sum256([]byte(name))
	return &account.User{ID: "no-account-" + hex.EncodeToString(sum[:16]), Username: name}
}

// Begin implements account.Attempts.
func (l lockout) Begin(ctx context.Context, name string, u *account.User) (account.Attempt, account.Gate, error) {
	if u == nil {
		// Counted whether or not the client is still there, as it is taken
		// back (Settle): a Redis store may count an attempt whose client
		// hung up meanwhile and answer that its context was canceled.
		attempt, _, err := l.svc.Try(context.WithoutCancel(ctx), l.r, coverAccount(name))
		if err != nil {
			return nil, account.GateOpen, err
		}
		return lockoutAttempt{attempt: attempt, cover: true}, account.GateOpen, nil
	}
	attempt, locked, err := l.svc.Try(ctx, l.r, u)
	if err != nil {
		return nil, account.GateOpen, err
	}
	if locked {
		return lockoutAttempt{attempt: attempt}, account.GateLockedOut, nil
	}
	return lockoutAttempt{attempt: attempt}, account.GateOpen, nil
}

// Settle implements account.Attempt: a wrong password, or any password
// for a locked account, keeps its count; anything else (a right password
// is no passed second factor, a busy answer or a store failure no wrong
// password) takes it back. The cover's attempt is always taken back, even
// for a client that has gone.
func (a lockoutAttempt) Settle(ctx context.Context, res account.SignInResult) error {
	switch {
	case a.cover:
		// Taken back even when the client has gone (its request's context
		// canceled, which a Redis store refuses): the name has no account
		// whose count could keep it, and a count left behind stays for
		// good, one record for each name a client tries and hangs up on.
		return a.attempt.Withdraw(context.WithoutCancel(ctx))
	case res.Outcome == account.OutcomeWrong, res.Outcome == account.OutcomeLocked:
		_, err := a.attempt.Failed(ctx, res.Reason)
		return err
	default:
		return a.attempt.Withdraw(ctx)
	}
}
