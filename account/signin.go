package account

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/directory"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/hashslots"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
	"github.com/gatehouse-auth/gatehouse/storage/counters"
)

// Outcome is what a password sign-in came to. Front ends (HTTP Basic, the
// login portal) only render it; the rules that lead to it live in SignIn.
type Outcome int

// Sign-in outcomes. OutcomeWrong, OutcomeLocked and OutcomeBlocked must
// look the same to the client (a locked or blocked account's right
// password tells a guesser nothing); they differ for the audit log and the
// attempt counters.
const (
	// OutcomeNotChecked: the password could not be checked (the store or the
	// directory is unavailable); SignIn returns the error with it.
	OutcomeNotChecked Outcome = iota
	// OutcomeOK: the password is right and the account may sign in.
	OutcomeOK
	// OutcomeWrong: an invalid username, an unknown user or a wrong password.
	OutcomeWrong
	// OutcomeThrottled: too many recent failures; the password was not checked.
	OutcomeThrottled
	// OutcomeBusy: too many password checks ran at once; the password was not
	// checked, so it is neither right nor wrong (see ErrBusy).
	OutcomeBusy
	// OutcomeLocked: the account is locked after too many failures; the
	// password was checked (for the same cost) but does not count.
	OutcomeLocked
	// OutcomeBlocked: the password is right but the account is not active.
	OutcomeBlocked
)

// Reasons SignIn gives for its refusals, as the audit log records them.
const (
	ReasonInvalidUsername = "invalid username"
	ReasonUnknownUser     = "unknown user"
	ReasonWrongPassword   = "wrong password"
	ReasonThrottled       = "too many failed password attempts"
	ReasonBusy            = "password not checked: the server is busy"
	ReasonLocked          = "the user is locked after too many failed attempts; an administrator must unlock it"
	ReasonBlocked         = "the account is blocked"
	ReasonFailedBinds     = "too many wrong passwords checked against the directory for this name"
	// ReasonPlusSpaceTwin: a directory account's right password, refused
	// a Gatehouse record beside an account whose name swaps its spaces
	// and '+' signs (as CreateUser refuses a local one).
	ReasonPlusSpaceTwin = "clients writing a space as '+' in URLs could take the directory account for another user"
)

// blockedReason is the audit reason of u's right password refused
// because the account may not sign in (ReasonBlocked): for a directory
// account the directory refuses, with what the directory says of it.
func blockedReason(u *User) string {
	if u.DirectoryProblem != "" {
		return ReasonBlocked + " (directory: " + u.DirectoryProblem + ")"
	}
	return ReasonBlocked
}

// SignInResult is the outcome of one sign-in.
type SignInResult struct {
	// Outcome is what the sign-in came to.
	Outcome Outcome
	// Name is the canonical username tried; empty when it was invalid.
	Name string
	// User is the account, when one exists under Name.
	User *User
	// Reason says why the sign-in was refused, for the audit log.
	Reason string
	// RetryAfter, for a sign-in OutcomeThrottled by the directory's bound on
	// failed binds (the front end's own count past its limit or not), is
	// that bound's window: at the latest, the name's passwords are checked
	// again then. For an OutcomeWrong whose wrong password was the last the
	// bound allows (the name's next try is throttled), it is that window
	// too, so that a front end holds the bound from now on, and so it is
	// for an OutcomeOK of a local account from a familiar network
	// (FamiliarAttempt), which the bound does not hold, while the bound is
	// spent. Zero otherwise (the front end's own throttle knows its
	// window).
	RetryAfter time.Duration
}

// Gate is an attempt counter's verdict before a password is checked.
type Gate int

// Gates.
const (
	// GateOpen: check the password.
	GateOpen Gate = iota
	// GateClosed: refuse at once as Throttled, without checking.
	GateClosed
	// GateLockedOut: check the password for the same cost, then answer Locked.
	GateLockedOut
)

// Attempts is a front end's accounting of password attempts (the HTTP
// Basic throttle, the second-factor lockout): SignIn asks it before the
// password is checked and tells it the outcome after.
type Attempts interface {
	// Begin starts an attempt on name (u is its account, nil when none
	// exists) and says whether its password may be checked.
	Begin(ctx context.Context, name string, u *User) (Attempt, Gate, error)
}

// Attempt is one attempt begun by Attempts.Begin.
type Attempt interface {
	// Settle records the attempt's result: what it costs the account is
	// the counter's decision. It is called once, also when the password
	// could not be checked (OutcomeNotChecked).
	Settle(ctx context.Context, res SignInResult) error
}

// FamiliarAttempt is an Attempt that can tell it comes from a network
// the account's own password was verified right from recently (HTTP
// Basic's familiar networks), where the front end counts it apart from
// everybody else's guesses.
type FamiliarAttempt interface {
	Attempt
	// Familiar reports whether the attempt comes from such a network.
	Familiar() bool
}

// familiarLocal reports whether attempt, on the local account u, comes
// from one of u's familiar networks (FamiliarAttempt). Such an attempt is
// not counted against the directory's bound on failed binds: no bind
// checks a local account's password, and the bound counts local names
// only so as not to tell a guesser which names exist, which it tells
// here only to a client on a network the account's own password was
// used from. Counted, guesses at the name from anywhere kept the
// account's own devices refused for the bound's window (15 minutes by
// default), where HTTP Basic's familiar networks are there to keep them
// served.
func familiarLocal(attempt Attempt, u *User) bool {
	f, ok := attempt.(FamiliarAttempt)
	return ok && u != nil && !u.FromDirectory() && f.Familiar()
}

// PasswordSource checks the password of an account: Gatehouse's own
// argon2 hashes, or a directory's bind.
type PasswordSource interface {
	// CheckPassword verifies password for the account name; u is its
	// stored record, nil when there is none. It returns the account on
	// success and a refusal (*identity.Refusal) for a wrong password or
	// an unknown user, at the same cost; ErrBusy when the password was
	// not checked; other errors when the source is unavailable.
	CheckPassword(ctx context.Context, name string, u *User, password string) (*User, error)
}

// localPasswords checks passwords against the argon2id hashes in the store.
type localPasswords struct{ s *Service }

// CheckPassword implements PasswordSource.
func (l localPasswords) CheckPassword(ctx context.Context, _ string, u *User, password string) (*User, error) {
	hash := dummyHash // an unknown account, or one without a password, costs as much and never passes
	if u != nil && u.PasswordHash != "" {
		hash = u.PasswordHash
	}
	ok, err := l.s.passwords.verify(ctx, hash, password)
	if err != nil {
		return nil, err
	}
	if !ok || u == nil || u.PasswordHash == "" {
		return nil, errWrongPassword
	}
	return u, nil
}

// rekeyed is u after a sign-in with password: when its hash is unkeyed
// (a version before keyed hashes wrote it), or keyed with a pepper a
// rekey retired, it is replaced by one keyed with the current pepper, of
// the password, which has just matched it, so that the hashes of such a
// store are all keyed with it once each user has signed in. Only a sign-in that
// succeeded does it: done for a locked or blocked account's right
// password, its cost (a second hash, a write) would tell a guesser the
// password was right. Nothing else of the account changes (no session
// ends: the password is the same). It is best effort: when no hash slot
// is free, the record changed meanwhile or the store fails, u is returned
// as it is and the next sign-in tries again.
func (s *Service) rekeyed(ctx context.Context, u *User, password string) *User {
	if s.passwords.ks == nil || u.PasswordHash == "" || u.FromDirectory() || s.passwords.keyedNow(u.PasswordHash) {
		return u
	}
	hash, err := s.passwords.hashWithin(ctx, BusyWait, password)
	if err != nil {
		return u
	}
	stored, err := storage.UpdateJSON(ctx, s.store, userPrefix+u.Username, 0, func(cur *User) (*User, error) {
		if cur == nil || cur.ID != u.ID || cur.PasswordHash != u.PasswordHash {
			return nil, storage.ErrNoChange
		}
		cur.PasswordHash = hash
		return cur, nil
	})
	if err != nil || stored == nil || stored.PasswordHash != hash {
		return u // not written: changed meanwhile (another sign-in keyed it, a new password, a delete)
	}
	// The caller's copy, so that what it caches (plugin/basic's verified
	// passwords) holds the hash the store holds now.
	next := *u
	next.PasswordHash = hash
	return &next
}

var errWrongPassword = identity.Unauthenticated("invalid username or password")

// With a directory configured, every password check costs what both
// sources cost, whoever holds the name: an argon2id hash first, then the
// directory's search of the name and a bind. A directory account's or an
// unknown name's check pays a hash that can never pass (coverHash), a
// local account's a search and a bind to a DN no entry has
// (coverDirectory). Before, a wrong password for a local account was
// answered 29 ms later than for any other name (an outside review
// measured it over HTTP Basic, AUC 0.99), which told a guesser which
// names were local accounts (an administrator's, a service's) in one
// request each; and with the local account's directory work done before
// its hash rather than after it, as the other names' is, they still
// answered 1.8 ms sooner (AUC 0.39).

// coverHash is the hash a local account's check costs, for a name the
// directory checks. It returns ErrBusy when no hash slot freed up for it:
// the password is then not checked.
func (s *Service) coverHash(ctx context.Context, password string) error {
	_, err := s.passwords.verify(ctx, dummyHash, password)
	return err
}

// coverDirectory is the directory's work a name it checks costs, for a
// local account's check that ended in checkErr: a search of the name and
// a bind to a DN no entry has, sent a placeholder of the password's
// length, never a local account's password. It returns ErrBusy when no
// slot of the password checks freed up for it (nor for the check), so
// that the check's result is not told: a directory's name would have
// been answered busy by then. Without a directory it does nothing.
func (s *Service) coverDirectory(ctx context.Context, name, password string, checkErr error) error {
	if s.dir == nil || errors.Is(checkErr, ErrBusy) {
		return checkErr
	}
	if err := hashslots.Process.Do(ctx, BusyWait, func() { s.dir.Cover(ctx, name, strings.Repeat("x", len(password))) }); err != nil {
		return ErrBusy
	}
	return checkErr
}

// SignIn is the one password sign-in policy, shared by every front end:
// an invalid or unknown name costs as much as a real account, the
// attempt is counted before the (slow) check so that guesses sent in
// parallel cannot all be checked, a locked account is checked for the
// same cost but never signs in, a blocked account's right password is
// reported apart (front ends answer it as a wrong one), and a busy
// answer is not a failure. Store failures are returned as errors, never
// as a sign-in.
func (s *Service) SignIn(ctx context.Context, username, password string, attempts Attempts) (SignInResult, error) {
	name, err := s.canonicalName(username)
	if err != nil {
		// Nothing to count or to check: no account can have this name.
		return SignInResult{Outcome: OutcomeWrong, Reason: ReasonInvalidUsername}, nil
	}
	u, located, err := s.signInRecord(ctx, name)
	if err != nil {
		return SignInResult{}, err
	}
	if u != nil {
		name = u.Username // another name of a directory account is the account's
	}
	attempt, gate, err := attempts.Begin(ctx, name, u)
	if err != nil {
		return SignInResult{}, err
	}
	res := SignInResult{Name: name, User: u}
	// twin: an entry of the directory refused a record beside its
	// '+'/space twin (signInRecord); its password is the directory's.
	twin := u == nil && located != nil && located.Found
	fromDirectory := (u != nil && u.FromDirectory() || twin) && s.dir != nil
	bound := bindUnbounded
	if !familiarLocal(attempt, u) {
		bound, err = s.reserveBind(ctx, name, gate)
	}
	if err != nil {
		return SignInResult{}, errors.Join(err, attempt.Settle(ctx, SignInResult{Outcome: OutcomeNotChecked, Name: name, User: u}))
	}
	if bound == bindsSpent {
		gate, res.Reason = GateClosed, ReasonFailedBinds
		_, res.RetryAfter = s.dir.FailedBinds()
	}
	if gate == GateClosed {
		if s.dir != nil && located == nil {
			// The directory read a name without a record costs
			// (signInRecord), for a local account's name too: a throttled
			// answer must not tell a guesser which names the directory
			// has, or which are local accounts, by coming sooner.
			s.dir.Cover(ctx, name, "")
		}
		res.Outcome = OutcomeThrottled
		if res.Reason == "" {
			res.Reason = ReasonThrottled
		}
		return res, attempt.Settle(ctx, res)
	}
	var signedIn *User
	var checkErr error = errWrongPassword
	check := func() {
		switch {
		case gate == GateLockedOut && fromDirectory:
			// A directory account locked here is not bound: each bind would
			// count against the directory's own lockout, which a guesser
			// could then set off for every service the account signs in to.
			// The same work is done all the same, for the same time.
			s.dir.Cover(ctx, name, password)
		case located != nil:
			// Read once already (signInRecord): one search, one bind, as for
			// every other name.
			signedIn, checkErr = directoryPasswords{s}.checkLocated(ctx, name, u, *located, password)
		default:
			signedIn, checkErr = s.passwordSource(u).CheckPassword(ctx, name, u, password)
		}
	}
	if s.dir != nil && (u == nil || u.FromDirectory()) {
		// A password the directory checks takes a slot of the password
		// checks, as a hash does (a store's hash takes its own): the
		// client's share of them bounds the searches and binds its
		// guesses ask of the directory at once, whatever names they try.
		// It pays a local account's hash first (coverHash).
		if err := s.coverHash(ctx, password); err != nil {
			checkErr = err
		} else if err := hashslots.Process.Do(ctx, BusyWait, check); err != nil {
			checkErr = ErrBusy
		}
	} else {
		check()
		if checkErr = s.coverDirectory(ctx, name, password, checkErr); checkErr != nil {
			signedIn = nil
		}
	}
	_, refused := identity.AsRefusal(checkErr)
	switch {
	case errors.Is(checkErr, ErrBusy):
		res.Outcome, res.Reason = OutcomeBusy, ReasonBusy
	case gate != GateLockedOut && isTwinError(checkErr):
		// The right password of a directory account refused a record
		// beside its '+'/space twin: blocked, and said so (in the
		// directory's audit events too, for the front ends that audit
		// a blocked sign-in as a wrong password).
		res.Outcome, res.Reason = OutcomeBlocked, ReasonPlusSpaceTwin+": "+checkErr.Error()
		s.dir.Report(directory.Event{Username: name, What: "sign-in refused: " + checkErr.Error(), Failure: true})
	case gate == GateLockedOut:
		res.Outcome, res.Reason = OutcomeLocked, ReasonLocked
	case refused && u == nil && !twin:
		res.Outcome, res.Reason = OutcomeWrong, ReasonUnknownUser
	case refused:
		res.Outcome, res.Reason = OutcomeWrong, ReasonWrongPassword
	case checkErr != nil:
		// A store or directory failure is no wrong password.
		if bound.reserved() && !errors.Is(checkErr, directory.ErrIndeterminate) {
			s.releaseBind(ctx, name) // no bind reached the directory
		}
		if err := attempt.Settle(ctx, SignInResult{Outcome: OutcomeNotChecked, Name: name, User: u}); err != nil {
			return SignInResult{}, errors.Join(checkErr, err)
		}
		return SignInResult{}, checkErr
	default:
		res.User = signedIn
		res.Outcome = OutcomeOK
		if !signedIn.Active() {
			res.Outcome, res.Reason = OutcomeBlocked, blockedReason(signedIn)
		}
	}
	if res.Outcome == OutcomeOK && located == nil {
		res.User = s.rekeyed(ctx, res.User, password)
	}
	switch {
	case bound.reserved() && res.Outcome != OutcomeWrong:
		s.releaseBind(ctx, name) // no wrong password was checked
	case bound == bindReservedLast:
		_, res.RetryAfter = s.dir.FailedBinds() // this wrong password spent the bound
	case res.Outcome == OutcomeOK && s.dir != nil && familiarLocal(attempt, u):
		res.RetryAfter = s.boundSpent(ctx, name)
	}
	if err := attempt.Settle(ctx, res); err != nil {
		return SignInResult{}, err
	}
	return res, nil
}

// CheckAgain checks password for username as a sign-in does, for a
// password that signed in to the account before and is checked again
// (plugin/basic, for an open stream): nothing is counted, neither the
// caller's throttle nor the directory's failed_binds, since it is no
// guess, and no gate is consulted, so that nobody else's guesses at the
// name decide it. It returns the account, a refusal when the password is
// no longer the account's (changed, or the account gone), ErrBusy, or a
// store or directory failure.
func (s *Service) CheckAgain(ctx context.Context, username, password string) (*User, error) {
	name, err := s.canonicalName(username)
	if err != nil {
		return nil, errWrongPassword
	}
	u, located, err := s.signInRecord(ctx, name)
	switch {
	case err != nil:
		return nil, err
	case u == nil:
		return nil, errWrongPassword
	}
	name = u.Username
	if located != nil {
		return directoryPasswords{s}.checkLocated(ctx, name, u, *located, password)
	}
	return s.passwordSource(u).CheckPassword(ctx, name, u, password)
}

// bindBound is what reserveBind did.
type bindBound int

const (
	bindUnbounded    bindBound = iota // no directory bind counted
	bindReserved                      // one counted, taken back unless it proves wrong
	bindReservedLast                  // bindReserved, the last the bound allows
	bindsSpent                        // the name's failed binds are spent: no bind
)

// reserved reports whether a bind was counted (bindReserved or
// bindReservedLast).
func (b bindBound) reserved() bool { return b == bindReserved || b == bindReservedLast }

// reserveBind counts, before the check, a password about to be checked
// for name against the directory's bound on failed binds
// (directory.Config.FailedBinds): every name counts alike once a directory
// is configured, a directory account's, a local one's or none, so that the
// bound tells a guesser nothing of which names exist; a locked or
// throttled attempt checks nothing and is not counted. Counting first
// keeps guesses sent at once within the bound. A throttled attempt (the
// front end's own count past its limit) is told bindsSpent all the same
// when the bound is spent, so that the front end holds the bound, not
// only its own count, which ends sooner (plugin/basic: an instance of a
// cluster that held the minute's count alone answered a right guess from
// its cache each time that hold ended, while the bound was spent).
func (s *Service) reserveBind(ctx context.Context, name string, gate Gate) (bindBound, error) {
	if s.dir == nil || gate == GateLockedOut {
		return bindUnbounded, nil
	}
	limit, window := s.dir.FailedBinds()
	if limit < 1 {
		return bindUnbounded, nil
	}
	if gate == GateClosed {
		return s.spentBinds(ctx, name, limit)
	}
	n, err := s.store.Incr(ctx, counters.DirectoryBindFailures(name), 1, window)
	if err != nil {
		return bindUnbounded, err
	}
	switch {
	case n > int64(limit):
		s.releaseBind(ctx, name)
		return bindsSpent, nil
	case n == int64(limit):
		return bindReservedLast, nil
	}
	return bindReserved, nil
}

// spentBinds is bindsSpent when name's failed binds reached limit, and
// bindUnbounded otherwise; it counts nothing. A count that cannot be read
// is an error, as one that cannot be counted is.
func (s *Service) spentBinds(ctx context.Context, name string, limit int) (bindBound, error) {
	n, err := counters.Read(ctx, s.store, counters.DirectoryBindFailures(name))
	switch {
	case err != nil:
		return bindUnbounded, err
	case n >= int64(limit):
		return bindsSpent, nil
	}
	return bindUnbounded, nil
}

// boundSpent is the window of the directory's bound on failed binds when
// name's are spent, else zero: for a sign-in of a local account from a
// familiar network, which the bound does not hold, so that the front end
// holds it for the account's other networks. A count that cannot be read
// is taken as not spent (the sign-in stands; the front end holds what it
// held before).
func (s *Service) boundSpent(ctx context.Context, name string) time.Duration {
	limit, window := s.dir.FailedBinds()
	if limit < 1 {
		return 0
	}
	if spent, err := s.spentBinds(ctx, name, limit); err != nil || spent != bindsSpent {
		return 0
	}
	return window
}

// releaseBind takes back a count of reserveBind.
func (s *Service) releaseBind(ctx context.Context, name string) {
	_, window := s.dir.FailedBinds()
	counters.TakeBack(ctx, s.store, counters.DirectoryBindFailures(name), window)
}

// signInRecord returns the record of the account name a sign-in tries,
// nil when there is none. For a name without a record, with a directory,
// it returns the directory's entry too (located, read by Locate), and a
// directory account gets its record now (entryAccount: every name of an
// entry is its one account; a record of another name that does not hold
// the entry is blocked, held): attempts are counted on the
// record, so guesses at an account of the directory never used here
// would otherwise go uncounted, and without a lockout.
func (s *Service) signInRecord(ctx context.Context, name string) (u *User, located *directory.Entry, err error) {
	u, err = cache.Load(s.store, ctx, userPrefix+name, decodeUser)
	switch {
	case errors.Is(err, storage.ErrNotFound) && s.dir != nil:
		e, err := s.dir.Locate(ctx, name)
		if err != nil {
			return nil, nil, directoryDown(err)
		}
		if !e.Found {
			return nil, &e, nil
		}
		u, err = s.entryAccount(ctx, name, e)
		switch {
		case errors.Is(err, failure.ErrNotFound):
			e = directory.Entry{CheckedAt: e.CheckedAt} // no account Gatehouse can name
			return nil, &e, nil
		case isTwinError(err):
			// No record beside its '+'/space twin: the entry, without one,
			// so that its password is checked (the refusal then says why,
			// SignIn) and a wrong one is counted like any other.
			return nil, &e, nil
		}
		return u, &e, err
	case errors.Is(err, storage.ErrNotFound):
		return nil, nil, nil
	case err != nil:
		return nil, nil, err
	}
	u, err = s.held(ctx, u)
	return u, nil, err
}

// passwordSource is where u's password is checked: the directory for a
// directory account, and for a name Gatehouse does not know when a
// directory is configured; the store otherwise.
func (s *Service) passwordSource(u *User) PasswordSource {
	if s.dir != nil && (u == nil || u.FromDirectory()) {
		return directoryPasswords{s}
	}
	return localPasswords{s}
}
