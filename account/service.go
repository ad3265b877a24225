// Package account holds Gatehouse's users and roles: validation, password
// hashing, the admin operations, and the per-request check that the account
// behind a credential still exists, is active and holds a role whose rules
// allow the request.
package account

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-auth/gatehouse/directory"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
	"github.com/gatehouse-auth/gatehouse/storage/tagged"
)

const (
	userPrefix = "user/"
	rolePrefix = "role/"
)

// Service manages users and roles in the store, reading through the cache.
type Service struct {
	store *cache.Cache
	now   func() time.Time
	// passwords makes and checks the hashes of local passwords.
	passwords passwordHasher
	// dir is the directory of directory accounts; nil when none.
	dir *directory.Directory
	// defaultDomain are the names of the default domain (see
	// SetDefaultDomain).
	defaultDomain []string

	hooksMu  sync.Mutex
	onDelete []DeleteHook
}

// DeleteHook removes what was bound to an account that is being deleted
// (its application keys, connectors, second factors). It must be
// idempotent: DeleteUser runs it before deleting the account, so that a
// failure leaves the account in place for a retry, and again after, for
// whatever was bound to the account in between.
type DeleteHook func(ctx context.Context, u *User) error

// OnDelete registers fn to run on every DeleteUser.
func (s *Service) OnDelete(fn DeleteHook) {
	s.hooksMu.Lock()
	defer s.hooksMu.Unlock()
	s.onDelete = append(s.onDelete, fn)
}

// removeBound runs the delete hooks for u, all of them even when one fails.
func (s *Service) removeBound(ctx context.Context, u *User) error {
	s.hooksMu.Lock()
	hooks := slices.Clone(s.onDelete)
	s.hooksMu.Unlock()
	var errs []error
	for _, fn := range hooks {
		errs = append(errs, fn(ctx, u))
	}
	return errors.Join(errs...)
}

// NewService returns a Service over the cached store, keying password
// hashes with ks (nil: unkeyed, as a version before keyed hashes made
// them; for tests).
func NewService(store *cache.Cache, ks *keystore.Keystore) *Service {
	return &Service{store: store, now: time.Now, passwords: passwordHasher{ks}}
}

// SetDefaultDomain sets the names (NetBIOS and DNS) of the default domain,
// whose `DOMAIN\user` and `user@domain` the ESA API takes as the account
// user (AccountName): no account may be created under such a name, which
// would be one account to the admin API and another to the ESA API. It is
// called once, before the service is used.
func (s *Service) SetDefaultDomain(domains []string) { s.defaultDomain = domains }

func decodeUser(b []byte) (*User, error) {
	u := new(User)
	err := json.Unmarshal(b, u)
	u.joinedRoles, u.usernameValue = identity.JoinRoles(u.Roles), u.Username
	return u, err
}

func decodeRole(b []byte) (*Role, error) {
	var s storedRole
	err := json.Unmarshal(b, &s)
	s.Role.Generation = s.Generation
	return &s.Role, err
}

// User returns the account, with only the roles it holds (see
// withHeldRoles), or a 404 failure.
//
// A directory account comes with the directory's status and roles (from
// the cache, see directory.Directory.Status); one Gatehouse has no record
// of yet gets one (see DirectoryUser), so that credentials can be bound
// to it before its first sign-in. Any name of a directory entry is its
// one account (entryAccount, held).
func (s *Service) User(ctx context.Context, username string) (*User, error) {
	name, err := s.canonicalName(username)
	if err != nil {
		return nil, failure.NotFound("user %q not found", username)
	}
	u, err := s.UserByCanonicalName(ctx, name)
	switch {
	case s.dir != nil && errors.Is(err, failure.ErrNotFound):
		u, err = s.DirectoryUser(ctx, name)
	case err == nil:
		u, err = s.held(ctx, u)
	}
	if err != nil {
		return nil, err
	}
	if !u.FromDirectory() || s.dir == nil {
		return s.withHeldRoles(ctx, u)
	}
	e, err := s.directoryStatus(ctx, u)
	if err != nil {
		return nil, err
	}
	return withDirectoryStatus(u, e), nil
}

// UserByCanonicalName is User for a name already normalised with
// NormalizeUsername: the hot path skips normalising it again, and the
// roles are as stored (Authorize judges which it holds).
func (s *Service) UserByCanonicalName(ctx context.Context, name string) (*User, error) {
	u, err := cache.LoadJoined(s.store, ctx, userPrefix, name, decodeUser)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, failure.NotFound("user %q not found", name)
	}
	return u, err
}

// StoredUser reads the account named name (canonical) straight from st,
// past any cache: for offline tools working on a store no running
// Gatehouse uses.
func StoredUser(ctx context.Context, st storage.Store, name string) (*User, error) {
	raw, err := st.Get(ctx, userPrefix+name)
	if err != nil {
		return nil, err
	}
	return decodeUser(raw)
}

// Users lists every account in name order, each with only the roles it
// holds.
func (s *Service) Users(ctx context.Context) ([]*User, error) {
	var out []*User
	if err := s.eachUser(ctx, func(u *User) { out = append(out, u) }); err != nil {
		return nil, err
	}
	for i, u := range out {
		var err error
		if out[i], err = s.withHeldRoles(ctx, u); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// UserQuery selects the users of a page of the users listing
// (UsersPage).
type UserQuery struct {
	// Prefix keeps the users whose canonical name starts with it.
	Prefix string
	// Role keeps the users holding that role.
	Role string
	// After starts the page after that name.
	After string
	// Limit bounds the users returned; 0 returns every one.
	Limit int
}

// UsersPage returns the users q selects in name order, and whether more
// follow the last one returned. The store is read from q.After (and
// q.Prefix) on, and only until the page is full, so that a page costs
// what it holds rather than every account.
func (s *Service) UsersPage(ctx context.Context, q UserQuery) ([]*User, bool, error) {
	out, more := []*User{}, false
	err := storage.ScanFrom(ctx, s.store, userPrefix+q.Prefix, storage.KeyAfter(userPrefix, q.After), func(e storage.Entry) error {
		u, err := decodeUser(e.Value)
		if err != nil {
			return fmt.Errorf("decoding %s: %w", e.Key, err)
		}
		if u, err = s.withHeldRoles(ctx, u); err != nil {
			return err
		}
		if q.Role != "" && !slices.Contains(u.Roles, q.Role) {
			return nil
		}
		if q.Limit > 0 && len(out) == q.Limit {
			more = true
			return storage.ErrStopScan
		}
		out = append(out, u)
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return out, more, nil
}

// UserNames returns, in name order, the canonical names of the users
// whose name holds part (every user's for ""), read from the store's keys
// alone (storage.ScanKeys): no account is read or decoded, so a long
// listing is counted and named for what its keys cost, and only the
// accounts shown are read.
func (s *Service) UserNames(ctx context.Context, part string) ([]string, error) {
	names := []string{}
	err := storage.ScanKeys(ctx, s.store, userPrefix, func(key string) error {
		if name := key[len(userPrefix):]; strings.Contains(name, part) {
			names = append(names, name)
		}
		return nil
	})
	return names, err
}

// CountUsers counts the users, from the store's keys alone (as
// UserNames), up to atMost: more reports that there are more than
// atMost, whose number is not read (the scan stops there).
func (s *Service) CountUsers(ctx context.Context, atMost int) (n int, more bool, err error) {
	err = storage.ScanKeys(ctx, s.store, userPrefix, func(string) error {
		if n == atMost {
			more = true
			return storage.ErrStopScan
		}
		n++
		return nil
	})
	return n, more, err
}

// UsersNamed returns the accounts named (canonical names, as UserNames
// returns them; a few pages' worth), in the order of names, each as
// UsersPage returns it; a name with no account (deleted meanwhile) or
// whose record is refused as forged is left out, as a scan leaves it out.
func (s *Service) UsersNamed(ctx context.Context, names []string) ([]*User, error) {
	keys := make([]string, len(names))
	for i, name := range names {
		keys[i] = userPrefix + name
	}
	found := make([]*User, len(names))
	err := s.readEach(ctx, keys, func(i int, value []byte) error {
		u, err := decodeUser(value)
		if err != nil {
			return fmt.Errorf("decoding %s: %w", keys[i], err)
		}
		found[i] = u
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]*User, 0, len(names))
	for _, u := range found {
		if u == nil {
			continue
		}
		if u, err = s.withHeldRoles(ctx, u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// readEach calls fn with the index in keys and the value of each live key
// among keys, read at one moment (GetMany) — but where a record is refused
// as forged (tagged.ErrTampered), which fails that read, once more one
// key at a time, leaving the forged ones out as a scan does (fn may then
// be called twice for a key).
func (s *Service) readEach(ctx context.Context, keys []string, fn func(i int, value []byte) error) error {
	err := s.store.GetMany(ctx, keys, fn)
	if !errors.Is(err, tagged.ErrTampered) {
		return err
	}
	for i, key := range keys {
		value, err := s.store.Get(ctx, key)
		switch {
		case errors.Is(err, storage.ErrNotFound), errors.Is(err, tagged.ErrTampered):
			continue
		case err != nil:
			return err
		}
		if err := fn(i, value); err != nil {
			return err
		}
	}
	return nil
}

// UserIDs returns the IDs of the accounts named (canonical names, as
// UserNames returns them), by name; a name with no account, or whose
// record is refused as forged, is left out.
// The accounts are read a few thousand at a time (GetMany) and only their
// ID is decoded.
func (s *Service) UserIDs(ctx context.Context, names []string) (map[string]string, error) {
	ids := make(map[string]string, len(names))
	const batch = 2000
	keys := make([]string, 0, min(len(names), batch))
	for start := 0; start < len(names); start += batch {
		part := names[start:min(start+batch, len(names))]
		keys = keys[:0]
		for _, name := range part {
			keys = append(keys, userPrefix+name)
		}
		err := s.readEach(ctx, keys, func(i int, value []byte) error {
			var u struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(value, &u); err != nil {
				return fmt.Errorf("decoding %s: %w", keys[i], err)
			}
			ids[part[i]] = u.ID
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// eachUser calls fn with every user, in name order, decoding one at a
// time.
func (s *Service) eachUser(ctx context.Context, fn func(*User)) error {
	return s.store.Scan(ctx, userPrefix, func(e storage.Entry) error {
		u, err := decodeUser(e.Value)
		if err != nil {
			return fmt.Errorf("decoding %s: %w", e.Key, err)
		}
		fn(u)
		return nil
	})
}

// CreateUser adds an account; 409 when the name is taken, 400 when a role
// does not exist or a field is invalid.
func (s *Service) CreateUser(ctx context.Context, in NewUser) (*User, error) {
	name, err := s.canonicalName(in.Username)
	if err != nil {
		return nil, err
	}
	if plain := AccountName(name, s.defaultDomain); plain != name {
		return nil, failure.Invalid("username %q is the account %q of the default domain to the ESA API (default_domain); name the account %q", name, plain, plain)
	}
	if err := refuseMixedScripts(name); err != nil {
		return nil, err
	}
	if err := s.refuseDirectoryName(ctx, name); err != nil {
		return nil, err
	}
	if err := s.refusePlusSpaceTwin(ctx, name); err != nil {
		return nil, err
	}
	if err := s.refuseLookalike(ctx, name); err != nil {
		return nil, err
	}
	roles, generations, err := s.checkRoles(ctx, in.Roles)
	if err != nil {
		return nil, err
	}
	mobile, err := ValidateMobileNumber(in.MobileNumber)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	u := &User{Username: name, ID: newID(), Roles: roles, RoleGenerations: generations, Status: StatusActive, MobileNumber: mobile, CreatedAt: now, UpdatedAt: now}
	if in.Password != nil {
		if err := refuseGuessable(*in.Password, name); err != nil {
			return nil, err
		}
		if u.PasswordHash, err = s.passwords.hash(*in.Password); err != nil {
			return nil, err
		}
		if err := checkWrite(ctx); err != nil {
			return nil, err
		}
	}
	raw, _ := json.Marshal(u)
	ok, err := s.store.CompareAndSwap(ctx, userPrefix+name, nil, raw, 0)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, failure.Conflict("user %q already exists", name)
	}
	return s.withHeldRoles(ctx, u)
}

// UpdateUser applies patch atomically (storage.Update: compare-and-swap,
// retried on a concurrent change).
func (s *Service) UpdateUser(ctx context.Context, username string, patch UserPatch) (*User, error) {
	owner := username // the account's name as stored
	if patch.Roles != nil || patch.Status != nil || patch.Password != nil {
		switch u, err := s.User(ctx, username); {
		case err != nil:
			return nil, err
		case u.FromDirectory():
			return nil, failure.Conflict("the roles, status and password of %q belong to the directory; change them there", u.Username)
		default:
			owner = u.Username
		}
	}
	var hash string
	if patch.Password != nil && *patch.Password != "" {
		if err := refuseGuessable(*patch.Password, owner); err != nil {
			return nil, err
		}
		var err error
		if hash, err = s.passwords.hash(*patch.Password); err != nil {
			return nil, err
		}
		if err := checkWrite(ctx); err != nil {
			return nil, err
		}
	}
	var roles []string
	var generations map[string]string
	if patch.Roles != nil {
		var err error
		if roles, generations, err = s.checkRoles(ctx, *patch.Roles); err != nil {
			return nil, err
		}
	}
	if patch.Status != nil && *patch.Status != StatusActive && *patch.Status != StatusBlocked {
		return nil, failure.Invalid("status must be %q or %q", StatusActive, StatusBlocked)
	}
	var mobile string
	if patch.MobileNumber != nil {
		var err error
		if mobile, err = ValidateMobileNumber(*patch.MobileNumber); err != nil {
			return nil, err
		}
	}
	u, err := s.modifyUser(ctx, username, func(u *User, now time.Time) {
		if patch.Roles != nil {
			u.Roles, u.RoleGenerations = roles, generations
		}
		if patch.Status != nil {
			u.Status = *patch.Status
		}
		if patch.Password != nil {
			u.PasswordHash = hash // empty password clears it
		}
		mobileChanged := patch.MobileNumber != nil && mobile != u.MobileNumber
		if patch.MobileNumber != nil {
			u.MobileNumber = mobile
		}
		// A new password, a block or a new number for SMS codes ends the
		// sessions, and a block the connector tokens (an unblock does not
		// bring them back).
		blocked := patch.Status != nil && *patch.Status == StatusBlocked
		if patch.Password != nil || blocked || mobileChanged {
			u.endSessions(now)
		}
		if blocked {
			u.TokenEpoch++
		}
	})
	if err != nil {
		return nil, err
	}
	return s.withHeldRoles(ctx, u)
}

// EndSessions ends every session of the account at once (login portal
// and application-key sessions alike, and half-finished portal logins):
// the account check refuses those started before (see SessionEpoch).
func (s *Service) EndSessions(ctx context.Context, username string) (*User, error) {
	return s.modifyUser(ctx, username, func(u *User, now time.Time) { u.endSessions(now) })
}

// modifyUser applies change to the stored user (given the change's time,
// also its UpdatedAt) with storage.Update.
func (s *Service) modifyUser(ctx context.Context, username string, change func(u *User, now time.Time)) (*User, error) {
	name, err := s.canonicalName(username)
	if err != nil {
		return nil, failure.NotFound("user %q not found", username)
	}
	u, err := storage.UpdateJSON(ctx, s.store, userPrefix+name, 0, func(u *User) (*User, error) {
		if u == nil {
			return nil, failure.NotFound("user %q not found", name)
		}
		now := s.now().UTC()
		change(u, now)
		u.UpdatedAt = now
		return u, nil
	})
	if errors.Is(err, storage.ErrConflict) {
		return nil, errUserBusy(name)
	}
	return u, err
}

// errUserBusy is the 409 of a user record that kept changing while it was
// being updated (storage.ErrConflict).
func errUserBusy(name string) error {
	return failure.Conflict("user %q is being changed concurrently; try again", name)
}

// DeleteUser removes the account and, through the delete hooks, what was
// bound to it. Credentials bound to it stop working on the next request,
// and stay dead if the name is reused (they are bound to the account's
// ID). When removing what was bound fails, the account stays, so that
// the call can be retried.
func (s *Service) DeleteUser(ctx context.Context, username string) error {
	// The record of this very name, never another name's account (User
	// reads another name of a directory entry as its account's).
	name, err := s.canonicalName(username)
	if err != nil {
		return failure.NotFound("user %q not found", username)
	}
	u, err := s.UserByCanonicalName(ctx, name)
	if err != nil {
		return err
	}
	if err := s.removeBound(ctx, u); err != nil {
		return err
	}
	if err := s.deleteRecord(ctx, u); err != nil {
		return err
	}
	if err := s.release(ctx, u); err != nil {
		return err
	}
	return s.removeBound(ctx, u) // bound while the first pass ran
}

// deleteRecord deletes u's record with storage.Update, so that an
// account re-created under the name meanwhile (whose bindings the hooks
// did not remove) is left alone.
func (s *Service) deleteRecord(ctx context.Context, u *User) error {
	_, err := storage.UpdateJSON(ctx, s.store, userPrefix+u.Username, 0, func(cur *User) (*User, error) {
		if cur != nil && cur.ID != u.ID {
			return nil, failure.Conflict("user %q was deleted and created again meanwhile; try again", u.Username)
		}
		return nil, nil // gone, unless deleted meanwhile
	})
	if errors.Is(err, storage.ErrConflict) {
		return errUserBusy(u.Username)
	}
	return err
}

// checkRoles validates the role names of an assignment and returns them
// sorted, with the generation of each role as it is now: the user will
// hold a role only while it is that generation, so that a role deleted
// while it is being assigned is not held (nor one created again under
// its name). 400 when a role does not exist.
func (s *Service) checkRoles(ctx context.Context, roles []string) ([]string, map[string]string, error) {
	roles, err := normalizeRoleList(roles)
	if err != nil {
		return nil, nil, err
	}
	var generations map[string]string
	for _, name := range roles {
		r, err := s.Role(ctx, name)
		if errors.Is(err, failure.ErrNotFound) {
			return nil, nil, failure.Invalid("role %q does not exist; create it first with PUT /gatehouse/roles/%s", name, name)
		}
		if err != nil {
			return nil, nil, err
		}
		if r.Generation != "" {
			if generations == nil {
				generations = map[string]string{}
			}
			generations[name] = r.Generation
		}
	}
	return roles, generations, nil
}

// heldRole returns the role name of u when u holds it: the role exists
// and is the generation u was given. storage.ErrNotFound otherwise.
func (s *Service) heldRole(ctx context.Context, u *User, name string) (*Role, error) {
	r, err := cache.LoadJoined(s.store, ctx, rolePrefix, name, decodeRole)
	if err != nil {
		return nil, err
	}
	if !u.FromDirectory() && r.Generation != u.RoleGenerations[name] {
		// Deleted and created again since it was assigned. (A directory
		// account holds the roles its groups map to: nothing is assigned.)
		return nil, storage.ErrNotFound
	}
	return r, nil
}

// withHeldRoles returns u, or a copy of u whose Roles are only those it
// holds (heldRole) when it names others: a role deleted while it was
// being assigned, for one.
func (s *Service) withHeldRoles(ctx context.Context, u *User) (*User, error) {
	var held []string // once one is not held: those that are
	for i, name := range u.Roles {
		_, err := s.heldRole(ctx, u, name)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			if held == nil {
				held = slices.Clone(u.Roles[:i])
			}
		case err != nil:
			return nil, err
		case held != nil:
			held = append(held, name)
		}
	}
	if held == nil {
		return u, nil
	}
	c := *u
	c.Roles = held
	return &c, nil
}

// Role returns the role, or a 404 failure.
func (s *Service) Role(ctx context.Context, name string) (*Role, error) {
	r, err := cache.Load(s.store, ctx, rolePrefix+name, decodeRole)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, failure.NotFound("role %q not found", name)
	}
	return r, err
}

// Roles lists every role in name order.
func (s *Service) Roles(ctx context.Context) ([]*Role, error) {
	var out []*Role
	err := s.store.Scan(ctx, rolePrefix, func(e storage.Entry) error {
		r, err := decodeRole(e.Value)
		if err != nil {
			return fmt.Errorf("decoding %s: %w", e.Key, err)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// PutRole creates or replaces a role. A replaced role keeps its
// Generation, so its holders keep it; a created one gets a new one. The
// write is a storage.Update (a compare-and-swap on what was read), so
// that a role deleted meanwhile is created anew rather than brought back
// with its old generation (and to whoever was assigned it during the
// delete).
func (s *Service) PutRole(ctx context.Context, role Role) (*Role, error) {
	if err := role.validate(); err != nil {
		return nil, err
	}
	if role.Rules == nil {
		role.Rules = []Rule{}
	}
	stored, err := storage.UpdateJSON(ctx, s.store, rolePrefix+role.Name, 0, func(cur *storedRole) (*storedRole, error) {
		next := &storedRole{Role: role, Generation: newID()}
		if cur != nil {
			next.Generation = cur.Generation
		}
		return next, nil
	})
	if errors.Is(err, storage.ErrConflict) {
		return nil, failure.Conflict("role %q is being changed concurrently; try again", role.Name)
	}
	if err != nil {
		return nil, err
	}
	role.Generation = stored.Generation
	return &role, nil
}

// DeleteRole removes a role; users holding it lose what it allowed at
// once. It is first taken from every user holding it; a failure half-way
// leaves the role in place, and the call can be repeated. A user given
// the role meanwhile keeps its name and generation in the record, which
// grant nothing, are neither forwarded nor shown, and are not the
// generation of a role created later under the name (see heldRole): once
// a role's delete and an assignment of it are both acknowledged, in
// either order, no user holds it.
func (s *Service) DeleteRole(ctx context.Context, name string) error {
	if _, err := s.Role(ctx, name); err != nil {
		return err
	}
	var holders []string // names only: the store may hold many users
	err := s.eachUser(ctx, func(u *User) {
		if slices.Contains(u.Roles, name) {
			holders = append(holders, u.Username)
		}
	})
	if err != nil {
		return err
	}
	for _, holder := range holders {
		_, err := s.modifyUser(ctx, holder, func(u *User, _ time.Time) {
			u.Roles = slices.DeleteFunc(slices.Clone(u.Roles), func(r string) bool { return r == name })
			delete(u.RoleGenerations, name)
		})
		if err != nil && !errors.Is(err, failure.ErrNotFound) { // deleted meanwhile: nothing to take
			return err
		}
	}
	return s.store.Delete(ctx, rolePrefix+name)
}

// HasAdminRole reports whether any role the account holds is an admin
// role: for a directory account, the roles its groups map to now (from
// the cached status, whatever u.Roles says: its stored record holds
// none); for a local one, its assigned roles that still exist.
func (s *Service) HasAdminRole(ctx context.Context, u *User) (bool, error) {
	roles := u.Roles
	if u.FromDirectory() {
		var err error
		if roles, err = s.directoryRoles(ctx, u); err != nil {
			return false, err
		}
	}
	for _, name := range roles {
		r, err := s.heldRole(ctx, u, name)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, err
		}
		if r.Admin {
			return true, nil
		}
	}
	return false, nil
}

// Authorize is the per-request account check: the identity's account must
// exist (and be the same account the credential was bound to), be active,
// and hold a role with a rule allowing method on cleanPath. It fills in
// id.Roles. Refusals are *identity.Refusal; store failures wrap
// storage.ErrUnavailable.
func (s *Service) Authorize(ctx context.Context, id *identity.Identity, method, cleanPath string) error {
	u, err := cache.LoadJoined(s.store, ctx, userPrefix, id.Username, decodeUser)
	if errors.Is(err, storage.ErrNotFound) {
		return identity.Unauthenticated("the account no longer exists")
	}
	if err != nil {
		return err
	}
	if id.UserID != "" && id.UserID != u.ID {
		return identity.Unauthenticated("the account no longer exists")
	}
	if !u.Active() {
		return identity.Forbidden("the account is blocked")
	}
	if id.Method.IsSession() && id.SessionEpoch != u.SessionEpoch {
		return identity.Unauthenticated("the session has ended; sign in again")
	}
	if id.Method == identity.MethodConnector && id.TokenEpoch != u.TokenEpoch {
		return identity.Unauthenticated("the account was blocked after the token was issued; request a new token pair with the certificate")
	}
	roles, joined := u.Roles, u.joinedRoles
	if u.FromDirectory() {
		if roles, joined, err = s.directoryCheck(ctx, u); err != nil {
			return err
		}
	}
	// Every role is looked at (cache hits): the identity forwards and signs
	// only roles the account holds, not the name of one deleted meanwhile.
	allowed, missing := false, false
	var existing []string // once one is missing: those that exist
	for i, name := range roles {
		r, err := s.heldRole(ctx, u, name)
		if errors.Is(err, storage.ErrNotFound) {
			if !missing {
				existing, missing = slices.Clone(roles[:i]), true
			}
			continue
		}
		if err != nil {
			return err
		}
		if missing {
			existing = append(existing, name)
		}
		allowed = allowed || r.Allows(method, cleanPath)
	}
	if missing {
		id.SetRoles(existing, identity.JoinedRoles{})
	} else {
		id.SetRoles(roles, joined)
	}
	id.SetUsernameValue(u.usernameValue)
	if !allowed {
		// Without the path: it may carry a secret in a path parameter
		// (";appKey=…"), and the reason goes to the audit log, the logs
		// and the traces as it is (the event's own path is redacted).
		return errNoRole
	}
	return nil
}

// errNoRole refuses a request no role of the account allows.
var errNoRole = identity.Forbidden("no role of the account allows this method on this path")

// dummyHash makes a check for an unknown user cost as much as a real one
// (unkeyed: keying is one HMAC, far below argon2's own variance).
var dummyHash, _ = passwordHasher{}.hash(strings.Repeat("x", 16))

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
