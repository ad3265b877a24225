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
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

const (
	userPrefix = "user/"
	rolePrefix = "role/"
)

// Service manages users and roles in the store, reading through the cache.
type Service struct {
	store *cache.Cache
	now   func() time.Time

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

// NewService returns a Service over the cached store.
func NewService(store *cache.Cache) *Service {
	return &Service{store: store, now: time.Now}
}

func decodeUser(b []byte) (*User, error) {
	u := new(User)
	return u, json.Unmarshal(b, u)
}

func decodeRole(b []byte) (*Role, error) {
	r := new(Role)
	return r, json.Unmarshal(b, r)
}

// User returns the account, or a 404 failure.
func (s *Service) User(ctx context.Context, username string) (*User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return nil, failure.NotFound("user %q not found", username)
	}
	return s.UserByCanonicalName(ctx, name)
}

// UserByCanonicalName is User for a name already normalised with
// NormalizeUsername: the hot path skips normalising it again.
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

// Users lists every account in name order.
func (s *Service) Users(ctx context.Context) ([]*User, error) {
	var out []*User
	err := s.eachUser(ctx, func(u *User) { out = append(out, u) })
	return out, err
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
	name, err := NormalizeUsername(in.Username)
	if err != nil {
		return nil, err
	}
	roles, err := s.checkRoles(ctx, in.Roles)
	if err != nil {
		return nil, err
	}
	mobile, err := ValidateMobileNumber(in.MobileNumber)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	u := &User{Username: name, ID: newID(), Roles: roles, Status: StatusActive, MobileNumber: mobile, CreatedAt: now, UpdatedAt: now}
	if in.Password != nil {
		if u.PasswordHash, err = HashPassword(*in.Password); err != nil {
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
	return u, nil
}

// UpdateUser applies patch atomically (compare-and-swap, retried on a
// concurrent change).
func (s *Service) UpdateUser(ctx context.Context, username string, patch UserPatch) (*User, error) {
	var hash string
	if patch.Password != nil && *patch.Password != "" {
		var err error
		if hash, err = HashPassword(*patch.Password); err != nil {
			return nil, err
		}
	}
	var roles []string
	if patch.Roles != nil {
		var err error
		if roles, err = s.checkRoles(ctx, *patch.Roles); err != nil {
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
	return s.modifyUser(ctx, username, func(u *User, now time.Time) {
		if patch.Roles != nil {
			u.Roles = roles
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
}

// EndSessions ends every session of the account at once (login portal
// and application-key sessions alike, and half-finished portal logins):
// the account check refuses those started before (see SessionEpoch).
func (s *Service) EndSessions(ctx context.Context, username string) (*User, error) {
	return s.modifyUser(ctx, username, func(u *User, now time.Time) { u.endSessions(now) })
}

// modifyUser reads the stored user, applies change (given the change's
// time, also its UpdatedAt) and writes it back with compare-and-swap,
// retrying when another writer got there first.
func (s *Service) modifyUser(ctx context.Context, username string, change func(u *User, now time.Time)) (*User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return nil, failure.NotFound("user %q not found", username)
	}
	key := userPrefix + name
	for range 100 {
		old, err := s.store.Get(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, failure.NotFound("user %q not found", name)
		}
		if err != nil {
			return nil, err
		}
		u, err := decodeUser(old)
		if err != nil {
			return nil, fmt.Errorf("decoding user %q: %w", name, err)
		}
		now := s.now().UTC()
		change(u, now)
		u.UpdatedAt = now
		raw, _ := json.Marshal(u)
		ok, err := s.store.CompareAndSwap(ctx, key, old, raw, 0)
		if err != nil {
			return nil, err
		}
		if ok {
			return u, nil
		}
	}
	return nil, failure.Conflict("user %q is being changed concurrently; try again", name)
}

// DeleteUser removes the account and, through the delete hooks, what was
// bound to it. Credentials bound to it stop working on the next request,
// and stay dead if the name is reused (they are bound to the account's
// ID). When removing what was bound fails, the account stays, so that
// the call can be retried.
func (s *Service) DeleteUser(ctx context.Context, username string) error {
	u, err := s.User(ctx, username)
	if err != nil {
		return err
	}
	if err := s.removeBound(ctx, u); err != nil {
		return err
	}
	if err := s.deleteRecord(ctx, u); err != nil {
		return err
	}
	return s.removeBound(ctx, u) // bound while the first pass ran
}

// deleteRecord deletes u's record by compare-and-swap, so that an account
// re-created under the name meanwhile (whose bindings the hooks did not
// remove) is left alone.
func (s *Service) deleteRecord(ctx context.Context, u *User) error {
	key := userPrefix + u.Username
	for range 100 {
		raw, err := s.store.Get(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			return nil // deleted meanwhile
		}
		if err != nil {
			return err
		}
		cur, err := decodeUser(raw)
		if err != nil {
			return fmt.Errorf("decoding user %q: %w", u.Username, err)
		}
		if cur.ID != u.ID {
			return failure.Conflict("user %q was deleted and created again meanwhile; try again", u.Username)
		}
		ok, err := s.store.CompareAndSwap(ctx, key, raw, nil, 0)
		if err != nil || ok {
			return err
		}
	}
	return failure.Conflict("user %q is being changed concurrently; try again", u.Username)
}

func (s *Service) checkRoles(ctx context.Context, roles []string) ([]string, error) {
	roles, err := normalizeRoleList(roles)
	if err != nil {
		return nil, err
	}
	for _, r := range roles {
		if _, err := s.Role(ctx, r); err != nil {
			if failure.Status(err) == 404 {
				return nil, failure.Invalid("role %q does not exist; create it first with PUT /gatehouse/roles/%s", r, r)
			}
			return nil, err
		}
	}
	return roles, nil
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

// PutRole creates or replaces a role.
func (s *Service) PutRole(ctx context.Context, role Role) (*Role, error) {
	if err := role.validate(); err != nil {
		return nil, err
	}
	if role.Rules == nil {
		role.Rules = []Rule{}
	}
	raw, _ := json.Marshal(role)
	return &role, s.store.Put(ctx, rolePrefix+role.Name, raw, 0)
}

// DeleteRole removes a role; users holding it lose what it allowed at
// once. It is first taken from every user holding it, so that creating a
// role of the same name later does not hand it back to them; a failure
// half-way leaves the role in place, and the call can be repeated. (A
// user given the role meanwhile keeps its name, which grants nothing and
// is not forwarded while the role does not exist; see Authorize.)
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
		})
		if err != nil && failure.Status(err) != http.StatusNotFound { // deleted meanwhile: nothing to take
			return err
		}
	}
	return s.store.Delete(ctx, rolePrefix+name)
}

// HasAdminRole reports whether any of the user's roles is an admin role.
func (s *Service) HasAdminRole(ctx context.Context, u *User) (bool, error) {
	for _, name := range u.Roles {
		r, err := s.Role(ctx, name)
		if failure.Status(err) == 404 {
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
	// Every role is looked at (cache hits): the identity forwards and signs
	// only roles that exist, not the name of one deleted meanwhile.
	allowed, missing := false, false
	var existing []string // once one is missing: those that exist
	for i, name := range u.Roles {
		r, err := cache.LoadJoined(s.store, ctx, rolePrefix, name, decodeRole)
		if errors.Is(err, storage.ErrNotFound) {
			if !missing {
				existing, missing = slices.Clone(u.Roles[:i]), true
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
	id.Roles = u.Roles
	if missing {
		id.Roles = existing
	}
	if !allowed {
		return identity.Forbidden("no role of the account allows " + method + " " + cleanPath)
	}
	return nil
}

// CheckPassword verifies a user's password (argon2id; callers cache
// successes). It returns the user on success and a refusal otherwise; the
// refusal does not say whether the user exists. ErrBusy (no refusal: the
// password was not checked) means too many checks ran at once, for a
// known user as for an unknown one.
func (s *Service) CheckPassword(ctx context.Context, username, password string) (*User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return nil, identity.Unauthenticated("invalid username or password")
	}
	u, err := cache.Load(s.store, ctx, userPrefix+name, decodeUser)
	if errors.Is(err, storage.ErrNotFound) {
		if _, err := VerifyPassword(ctx, dummyHash, password); err != nil { // same cost as a real check
			return nil, err
		}
		return nil, identity.Unauthenticated("invalid username or password")
	}
	if err != nil {
		return nil, err
	}
	hash := u.PasswordHash
	if hash == "" {
		hash = dummyHash // an account without a password costs as much as one with, and never passes
	}
	ok, err := VerifyPassword(ctx, hash, password)
	if err != nil {
		return nil, err
	}
	if !ok || u.PasswordHash == "" {
		return nil, identity.Unauthenticated("invalid username or password")
	}
	return u, nil
}

// dummyHash makes a check for an unknown user cost as much as a real one.
var dummyHash, _ = HashPassword(strings.Repeat("x", 16))

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
