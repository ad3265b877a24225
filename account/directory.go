package account

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse-auth/gatehouse/directory"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
)

// Account sources: where an account's password, status and roles come
// from.
const (
	// SourceLocal: Gatehouse's own store.
	SourceLocal = "local"
	// SourceDirectory: an LDAP directory (see package directory); the
	// Gatehouse record holds only what the directory does not (the ID
	// credentials are bound to, sessions, mobile number).
	SourceDirectory = "directory"
)

// SetDirectory makes d a source of accounts beside the local ones. It is
// called once, before the service is used.
func (s *Service) SetDirectory(d *directory.Directory) { s.dir = d }

// Directory is the configured directory, nil when none.
func (s *Service) Directory() *directory.Directory { return s.dir }

// canonicalName maps a typed username to its canonical form: a
// directory's EXAMPLE\alice and alice@example.test forms to alice, then
// NormalizeUsername. The domain is recognised in the normalised name when
// the whole name normalises (it may not: too long with its domain), so
// that it matches in every spelling normalisation folds:
// "alice@ＥＸＡＭＰＬＥ.test", in full-width letters, is alice too, not an
// account "alice@example.test" of its own.
func (s *Service) canonicalName(typed string) (string, error) {
	if s.dir == nil {
		return NormalizeUsername(typed)
	}
	if name, err := NormalizeUsername(typed); err == nil {
		typed = name
	}
	plain, err := StripDomain(typed, s.dir.Domains())
	if err != nil {
		return "", err
	}
	return NormalizeUsername(plain)
}

// CanonicalName is the account name a typed username stands for, as
// every sign-in reads it: a directory's EXAMPLE\alice and
// alice@example.test forms are alice, then NormalizeUsername. For
// filters that name an account (the audit log's, the token list's).
func (s *Service) CanonicalName(typed string) (string, error) { return s.canonicalName(typed) }

// FromDirectory reports whether u is a directory account.
func (u *User) FromDirectory() bool { return u.Source == SourceDirectory }

// directoryPasswords checks passwords by a bind to the directory, and
// keeps a Gatehouse record for each directory account that signed in.
type directoryPasswords struct{ s *Service }

// CheckPassword implements PasswordSource.
func (p directoryPasswords) CheckPassword(ctx context.Context, name string, u *User, password string) (*User, error) {
	located, err := p.s.dir.Locate(ctx, name)
	if err != nil {
		return nil, directoryDown(err)
	}
	return p.checkLocated(ctx, name, u, located, password)
}

// checkLocated is CheckPassword of the entry located that the directory
// just read for name.
func (p directoryPasswords) checkLocated(ctx context.Context, name string, u *User, located directory.Entry, password string) (*User, error) {
	e, err := p.s.dir.BindLocated(ctx, name, located, password)
	switch {
	case errors.Is(err, directory.ErrWrongPassword):
		return nil, errWrongPassword
	case err != nil:
		return nil, directoryDown(err)
	}
	if u == nil {
		if u, err = p.s.entryAccount(ctx, name, e); err != nil {
			return nil, err
		}
	}
	return withDirectoryStatus(u, e), nil
}

// directoryDown is the error of an unreachable directory: the data plane
// answers 503, like a store that is down, and the admin API says which
// of the two is (errDirectoryDown).
func directoryDown(err error) error { return fmt.Errorf("%w: %w", errDirectoryDown, err) }

// errDirectoryDown is the client-safe kind and message of directoryDown.
var errDirectoryDown = failure.New(failure.ErrUnavailable, "the directory (LDAP) does not answer; try again once it does")

// withDirectoryStatus is a copy of u with the directory's status and
// roles (blocked when the directory refuses the account or lost it, or
// its entry is another account's: see replaced), and the directory's
// phone number (DirectoryMobile, when it is one).
func withDirectoryStatus(u *User, e directory.Entry) *User {
	c := *u
	if replaced(u, e) {
		c.Roles, c.Status, c.DirectoryProblem = []string{}, StatusBlocked, "replaced"
		return &c
	}
	c.DirectoryMobile, _ = ValidateMobileNumber(e.Mobile)
	c.Roles = e.Roles
	c.Status = StatusActive
	switch {
	case !e.Found:
		c.DirectoryProblem = "deleted"
	case !e.Active():
		c.DirectoryProblem = e.Problem
	}
	if !e.Active() || u.Status == StatusBlocked { // stored blocked: a contender for its entry (setContested)
		c.Status = StatusBlocked
	}
	return &c
}

// AdoptDirectoryMobile returns u with a number for text messages: its
// own, or else its directory's, which it stores as the account's own
// (adopted reports that). Texts never follow the directory's number
// afterwards: many directories let a user edit their own mobile
// (Active Directory's Personal-Information property set), so whoever
// knows the password alone could move the SMS second factor to their
// phone. Adopting keeps the sessions: the number texts go to is the same.
func (s *Service) AdoptDirectoryMobile(ctx context.Context, u *User) (_ *User, adopted bool, _ error) {
	if u.MobileNumber != "" || u.DirectoryMobile == "" {
		return u, false, nil
	}
	number := u.DirectoryMobile
	stored, err := s.modifyUser(ctx, u.Username, func(cur *User, _ time.Time) {
		if cur.MobileNumber == "" {
			cur.MobileNumber, adopted = number, true
		}
	})
	if err != nil {
		return nil, false, err
	}
	c := *u
	c.MobileNumber = stored.MobileNumber
	return &c, adopted, nil
}

// replaced reports whether the directory's entry of u's name is another
// entry than the one u was made for: the account was deleted and its name
// given to a new one, who must not inherit u's app keys, connectors,
// second factors and sessions. An administrator deletes u to let the new
// account in.
func replaced(u *User, e directory.Entry) bool {
	return e.Found && u.DirectoryID != "" && e.ID != u.DirectoryID
}

// accountName is the name a new record of the directory entry e, which
// name found, takes: the entry's own name (directory.Entry.Name, from the
// directory's name_attribute), normalised, so that the account is known
// by one name whichever found it first; name itself when the entry has
// no name of its own. ok is false when its own name is none Gatehouse
// can hold.
func accountName(e directory.Entry, name string) (own string, ok bool) {
	if e.Name == "" {
		return name, true
	}
	own, err := NormalizeUsername(e.Name)
	return own, err == nil
}

// directoryRecord returns the Gatehouse record of the directory account
// name, creating it on first use. A local account of the same name is a
// conflict, and so is an account that clients writing a space as '+'
// confuse with name (plusSpaceTwin) when name has no record yet (a
// twinError): a local account cannot be created beside such a twin
// either (CreateUser). The record is looked for first: the twin check
// (up to 1 023 keys read) is for a record about to be made.
func (s *Service) directoryRecord(ctx context.Context, name string, e directory.Entry) (*User, error) {
	switch cur, err := s.UserByCanonicalName(ctx, name); {
	case err == nil:
		return directoryOwn(cur, name)
	case !errors.Is(err, failure.ErrNotFound):
		return nil, err
	}
	switch twin, err := s.plusSpaceTwin(ctx, name); {
	case errors.Is(err, errManyPlusSigns):
		return nil, twinError{failure.Invalid("the directory account %q cannot have a Gatehouse user: %v, so that clients writing a space as '+' in URLs cannot take another account for it", name, err)}
	case err != nil:
		return nil, err
	case twin != "":
		return nil, twinError{failure.Conflict("the directory account %q cannot have a Gatehouse user: user %q exists, and clients that write a space as '+' in URLs would take the one for the other; rename one of them, or delete the Gatehouse user %q",
			name, twin, twin)}
	}
	now := s.now().UTC()
	u := &User{Username: name, ID: newID(), Roles: []string{}, Status: StatusActive, Source: SourceDirectory, DN: e.DN, DirectoryID: e.ID,
		CreatedAt: now, UpdatedAt: now}
	raw, _ := json.Marshal(u)
	ok, err := s.store.CompareAndSwap(ctx, userPrefix+name, nil, raw, 0)
	if err != nil {
		return nil, err
	}
	if ok {
		return u, nil
	}
	cur, err := s.UserByCanonicalName(ctx, name) // created meanwhile
	if err != nil {
		return nil, err
	}
	return directoryOwn(cur, name)
}

// directoryOwn is cur, the record of name, when the directory account
// name may use it: not when it is a local account's.
func directoryOwn(cur *User, name string) (*User, error) {
	if !cur.FromDirectory() {
		return nil, failure.Conflict("user %q exists both in Gatehouse and in the directory; delete one", name)
	}
	return cur, nil
}

// refuseDirectoryName is a 409 when the directory has an account name: a
// local account cannot share it.
func (s *Service) refuseDirectoryName(ctx context.Context, name string) error {
	if s.dir == nil {
		return nil
	}
	e, err := s.dir.Refresh(ctx, name)
	if err != nil {
		return directoryDown(err)
	}
	if e.Found {
		return failure.Conflict("%q is an account of the directory; a local user cannot have its name", name)
	}
	return nil
}

// DirectoryUser returns the Gatehouse record of a directory account,
// creating it when the directory has the account and Gatehouse does not
// yet (so that app keys, connectors and second factors can be bound to
// it before its first sign-in). Every name that finds one entry returns
// its one account (entryAccount). 404 when the directory does not have
// it.
func (s *Service) DirectoryUser(ctx context.Context, username string) (*User, error) {
	name, err := s.canonicalName(username)
	if err != nil || s.dir == nil {
		return nil, failure.NotFound("user %q not found", username)
	}
	e, err := s.dir.Refresh(ctx, name)
	if err != nil {
		return nil, directoryDown(err)
	}
	if !e.Found {
		return nil, failure.NotFound("user %q not found in the directory", name)
	}
	return s.entryAccount(ctx, name, e)
}

// DirectoryView is what the admin API shows of a directory account's
// cached status.
type DirectoryView struct {
	// DN is the account's entry in the directory.
	DN string `json:"dn"`
	// Roles are the Gatehouse roles of its mapped groups.
	Roles []string `json:"roles"`
	// Status is "active", "deleted", "replaced" (deleted and created
	// again: another account, see replaced) or why the account may not
	// sign in ("disabled", "locked", "expired", …).
	Status string `json:"status"`
	// CheckedAt is when the directory was read (UTC).
	CheckedAt time.Time `json:"checked_at"`
	// AgeSeconds is how old that reading is.
	AgeSeconds float64 `json:"age_seconds"`
	// MobileNumber is the entry's number (mobile, else telephoneNumber)
	// when it is one. An administrator's SMS enrolment or enrolment link
	// makes it the account's mobile_number when the account has none; no
	// sign-in's code goes to it, and later changes are not followed.
	MobileNumber string `json:"mobile_number,omitempty"`
}

// DirectoryStatus is the cached directory status of a directory account
// (read from the directory when there is none yet).
func (s *Service) DirectoryStatus(ctx context.Context, u *User) (*DirectoryView, error) {
	if !u.FromDirectory() || s.dir == nil {
		return nil, nil
	}
	mark, err := s.refreshMark(ctx, u.Username)
	if err != nil {
		return nil, err
	}
	e, ok := s.dir.Cached(u.Username, u.DirectoryID, mark)
	if !ok {
		if e, err = s.dir.Status(ctx, u.Username, u.DirectoryID, mark); err != nil {
			return nil, directoryDown(err)
		}
	}
	v := &DirectoryView{DN: e.DN, Roles: e.Roles, CheckedAt: e.CheckedAt.UTC(), AgeSeconds: s.now().Sub(e.CheckedAt).Seconds()}
	v.MobileNumber, _ = ValidateMobileNumber(e.Mobile)
	switch {
	case !e.Found:
		v.Status = "deleted"
	case replaced(u, e):
		v.Status = "replaced"
	case e.Problem != "":
		v.Status = e.Problem
	default:
		v.Status = string(StatusActive)
	}
	if v.Roles == nil {
		v.Roles = []string{}
	}
	return v, nil
}

// directoryCheck is the per-request check of a directory account: its
// status from the cache (read again once older than status_ttl; the
// directory down past that: an error, answered 503). It returns the
// account's roles, and their text (identity.JoinedRoles).
func (s *Service) directoryCheck(ctx context.Context, u *User) ([]string, identity.JoinedRoles, error) {
	if s.dir == nil {
		return nil, identity.JoinedRoles{}, identity.Unauthenticated("the account's directory is not configured")
	}
	e, err := s.directoryStatus(ctx, u)
	switch {
	case err != nil:
		return nil, identity.JoinedRoles{}, err
	case !e.Found:
		return nil, identity.JoinedRoles{}, identity.Unauthenticated("the account no longer exists in the directory")
	case replaced(u, e):
		return nil, identity.JoinedRoles{}, identity.Unauthenticated(errReplaced)
	case !e.Active():
		return nil, identity.JoinedRoles{}, identity.Forbidden("the account is " + e.Problem + " in the directory")
	}
	return e.Roles, e.JoinedRoles, nil
}

// directoryRoles are the roles the directory account u's groups map to,
// from the cached status; none when the directory no longer has the
// account or its entry is another account's (see replaced), and none when
// no directory is configured.
func (s *Service) directoryRoles(ctx context.Context, u *User) ([]string, error) {
	if s.dir == nil {
		return nil, nil
	}
	e, err := s.directoryStatus(ctx, u)
	if err != nil {
		return nil, err
	}
	if replaced(u, e) {
		return nil, nil
	}
	return e.Roles, nil
}

// errReplaced is the refusal of a directory account whose entry was
// deleted and created again (see replaced).
const errReplaced = "the directory's account of this name is not the one this Gatehouse user was made for (it was deleted and created again, or the name moved to another entry): an administrator must delete the Gatehouse user before it can sign in"

// VerifiedLifetime is how long a checked password of u may be taken as
// right without checking it again: a local account's for as long as its
// hash stays the same (zero: no limit), a directory account's for
// status_ttl, so that a password changed in the directory stops working
// within it.
func (s *Service) VerifiedLifetime(u *User) time.Duration {
	if u.FromDirectory() && s.dir != nil {
		return s.dir.StatusTTL()
	}
	return 0
}
