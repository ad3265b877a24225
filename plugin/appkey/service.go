// Package appkey is the "app_key" credential kind: ThingWorx-style
// application keys. A key is bound to one user and runs with that user's
// rights; it is sent in the appKey header (any case) or the appKey query
// parameter, may be limited to an IP allowlist, expires (24 h by default)
// and is kept, refused, until purged.
//
// Key values are sealed with the keystore (AES-256-GCM) at rest and found
// by an HMAC index, so a lookup reads one record and never decrypts. The
// value carries a 4-byte tag derived from its index: a forged value is
// refused before any store or cache access. A request that asks for it
// (x-gatehouse-session=true) gets a session cookie; changing the key's
// expiry or allowlist, rotating, deleting or purging it ends those sessions.
package appkey

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
	"unsafe"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/reccodec"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

// Options tune the service.
type Options struct {
	// PurgeInterval, when positive, deletes expired keys that often (as
	// POST /gatehouse/appkeys/purge-expired does). Zero: purge on demand only.
	PurgeInterval time.Duration
}

// usageFlushInterval is how often noted key uses are written to the
// store; a key's last_used_at is therefore written at most once per
// interval, and never on the request path.
const usageFlushInterval = time.Minute

// attempts bounds the compare-and-swap retries of one admin change.
const attempts = 5

// stubRetention keeps the stub a rotation leaves under the old index past
// its grace period, so the key's name still resolves if the store failed
// between the rotation's commit and the repointing of the name.
const stubRetention = 24 * time.Hour

// Service manages application keys: the data-plane lookup, the admin
// operations and the background writer of last_used_at and periodic purge.
// Close stops the background work.
type Service struct {
	engine *engine.Engine
	store  *cache.Cache
	now    func() time.Time
	purge  time.Duration

	usageMu sync.Mutex
	usage   usageLog // the uses not yet written

	// ctx is cancelled by Close: it ends a purge in progress.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewService returns the service of e and starts its background work.
func NewService(e *engine.Engine, opts Options) *Service {
	s := &Service{engine: e, store: e.Store, now: time.Now, purge: opts.PurgeInterval}
	e.Accounts.OnDelete(s.deleteUserKeys)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.run()
	return s
}

// Close stops the background work after writing the pending key uses.
func (s *Service) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

func (s *Service) run() {
	defer s.wg.Done()
	flush := time.NewTicker(usageFlushInterval)
	defer flush.Stop()
	var purge <-chan time.Time
	if s.purge > 0 {
		t := time.NewTicker(s.purge)
		defer t.Stop()
		purge = t.C
	}
	background := func(parent context.Context, f func(context.Context)) {
		ctx, cancel := context.WithTimeout(parent, time.Minute)
		defer cancel()
		f(ctx)
	}
	for {
		select {
		case <-s.ctx.Done():
			background(context.Background(), s.flushUsage) // the last uses, even while stopping
			return
		case <-flush.C:
			background(s.ctx, s.flushUsage)
		case <-purge:
			background(s.ctx, func(ctx context.Context) {
				purged := func(rec *record) { s.audit(nil, rec, "expired key purged (periodic purge)") }
				if _, err := s.purgeExpired(ctx, purged); err != nil {
					s.engine.Logger.Error("periodic purge of expired application keys failed", zap.Error(err))
				}
			})
		}
	}
}

// Data plane.

// The data plane's refusals, allocated once.
var (
	errInvalid  = identity.Unauthenticated("invalid application key")
	errExpired  = identity.Unauthenticated("the application key has expired")
	errReplaced = identity.Unauthenticated("the application key was replaced by a rotation; use its new value")
	errAddress  = identity.Forbidden("the application key may not be used from this address")
)

// authenticate verifies a presented key value for a client at clientIP.
// A cache hit costs no store read; a miss costs one (two while a rotation's
// grace period lets the old value in).
func (s *Service) authenticate(ctx context.Context, value, clientIP string) (*identity.Identity, error) {
	// The index is only looked up, so it stays in a buffer on the stack.
	var buf [2 * sha256.Size]byte
	if !indexInto(s.engine.Keystore, value, &buf) {
		return nil, errInvalid
	}
	index := unsafe.String(&buf[0], len(buf)) //nolint:gosec // G103: buf is not written again while index lives
	now := s.now()
	e, _, err := s.find(ctx, index, now)
	if err != nil {
		return nil, err
	}
	if err := e.admits(now, clientIP); err != nil {
		return nil, err
	}
	s.noteUse(e, now)
	return &identity.Identity{Username: e.Username, UserID: e.UserID, Method: identity.MethodAppKey,
		AppKey: e.Name, CredentialID: e.Name}, nil
}

// admits refuses the key at now from clientIP when it has expired or its
// allowlist does not hold clientIP.
func (e *entry) admits(now time.Time, clientIP string) error {
	if !now.Before(e.ExpiresAt) {
		return errExpired.For(e.Username)
	}
	if !allows(e.allow, clientIP) {
		return errAddress.For(e.Username)
	}
	return nil
}

// find returns the key whose value has the given index. For the previous
// value of a rotated key it returns the key and the end of the value's
// grace period (zero otherwise).
func (s *Service) find(ctx context.Context, index string, now time.Time) (key *entry, graceUntil time.Time, err error) {
	e, err := s.lookup(ctx, index)
	if err != nil || !e.isStub() {
		return e, time.Time{}, err
	}
	if !now.Before(e.GraceUntil) {
		return nil, time.Time{}, errReplaced
	}
	cur, err := s.lookup(ctx, e.Successor)
	if errors.Is(err, errInvalid) || (err == nil && (cur.isStub() || cur.Name != e.Name || cur.PrevIndex != index)) {
		return nil, time.Time{}, errReplaced
	}
	return cur, e.GraceUntil, err
}

// lookup returns the cached record stored under index.
func (s *Service) lookup(ctx context.Context, index string) (*entry, error) {
	e, err := cache.LoadJoined(s.store, ctx, indexPrefix, index, decodeEntry)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errInvalid
	}
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(e.Index), []byte(index)) != 1 {
		return nil, errInvalid // a record filed under the wrong index: never trust it
	}
	return e, nil
}

// noteUse hands the key's use to the background writer, at most once a
// minute per cached record: no lock and no write on the common path.
func (s *Service) noteUse(e *entry, now time.Time) {
	last, t := e.noted.Load(), now.UnixNano()
	if t-last < int64(usageFlushInterval) || !e.noted.CompareAndSwap(last, t) {
		return
	}
	s.usageMu.Lock()
	s.usage = s.usage.add(e.Name, now)
	s.usageMu.Unlock()
}

// usageBatch bounds the writes of one store batch.
const usageBatch = 512

// flushUsage writes the noted key uses.
func (s *Service) flushUsage(ctx context.Context) {
	s.usageMu.Lock()
	noted := s.usage
	s.usage = nil
	s.usageMu.Unlock()
	pending := noted.latest()
	ops := make([]storage.Op, 0, min(len(pending), usageBatch))
	write := func() {
		if err := s.store.Batch(ctx, ops); err != nil {
			s.engine.Logger.Warn("recording application key use failed", zap.Int("keys", len(ops)), zap.Error(err))
		}
		ops = ops[:0]
	}
	for name, t := range pending {
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: usedPrefix + name, Value: t.UTC().AppendFormat(nil, time.RFC3339)})
		if len(ops) == usageBatch {
			write()
		}
	}
	if len(ops) > 0 {
		write()
	}
}

// openSession starts a session for the allowed request of id, made with
// the key value; the session ends no later than that value, and sets its cookie.
func (s *Service) openSession(w http.ResponseWriter, r *http.Request, id *identity.Identity, value string) error {
	ctx := r.Context()
	index, ok := indexOf(s.engine.Keystore, value)
	if !ok {
		return errInvalid
	}
	e, graceUntil, err := s.find(ctx, index, s.now())
	if err != nil {
		return err
	}
	ends := e.ExpiresAt
	if !graceUntil.IsZero() && graceUntil.Before(ends) {
		ends = graceUntil
	}
	u, err := s.engine.Accounts.User(ctx, id.Username)
	if err != nil {
		return err
	}
	if u.ID != id.UserID {
		return errInvalid // the account was re-created since the key was checked
	}
	token, err := s.engine.Sessions.Create(ctx, session.Session{Username: id.Username, UserID: id.UserID,
		Origin: session.OriginAppKey, AppKey: id.AppKey, ExpiresAt: ends, Epoch: u.SessionEpoch})
	if err != nil {
		return err
	}
	key := sessionKey(id.AppKey, session.DigestID(token))
	bound := binding{Index: e.Index, SealedToken: s.engine.Keystore.Seal([]byte(token), key)}
	err = s.store.Put(ctx, key, bound.encode(), time.Until(ends)+time.Minute)
	if err == nil {
		// A deletion or rotation that ran between find and Put did not
		// see this session: check that the value still works.
		_, _, err = s.find(ctx, index, s.now())
	}
	if err != nil {
		// Best effort: the session and its binding are unusable anyway.
		_ = s.engine.Sessions.Delete(ctx, token)
		_ = s.store.Delete(ctx, key)
		return err
	}
	http.SetCookie(w, s.engine.Sessions.Cookie(token))
	s.audit(r, &record{Name: e.Name, Username: e.Username}, "session opened with the key")
	return nil
}

// sessionKey is where the binding of the session with the given
// session.DigestID to the key name is stored.
func sessionKey(name, id string) string {
	return sessionPrefix + name + "/" + id
}

// endSessions ends every session opened with the key.
func (s *Service) endSessions(ctx context.Context, name string) error {
	var found []storage.Entry
	err := s.store.Scan(ctx, sessionPrefix+name+"/", func(e storage.Entry) error {
		found = append(found, storage.Entry{Key: e.Key, Value: append([]byte(nil), e.Value...)})
		return nil
	})
	if err != nil {
		return err
	}
	for _, t := range found {
		// A binding that does not decode or open ends its session all the
		// same: checkSession refuses a session without a usable binding.
		if b, err := decodeBinding(t.Value); err == nil {
			if token, err := s.engine.Keystore.Open(b.SealedToken, t.Key); err == nil {
				if err := s.engine.Sessions.Delete(ctx, string(token)); err != nil {
					return err
				}
			}
		}
		if err := s.store.Delete(ctx, t.Key); err != nil {
			return err
		}
	}
	return nil
}

// Admin operations.

// loaded is a record as read for a change: where it is stored, the exact
// bytes (for compare-and-swap) and the decoded record.
type loaded struct {
	index string
	raw   []byte
	rec   record
}

func notFound(name string) error { return failure.NotFound("application key %q not found", name) }

// load reads the key name from the store itself (not the cache), ready for
// a compare-and-swap.
func (s *Service) load(ctx context.Context, name string) (*loaded, error) {
	if account.ValidateName("application key", name) != nil {
		return nil, notFound(name)
	}
	index, err := s.store.Backend().Get(ctx, namePrefix+name)
	if err == nil {
		var l *loaded
		l, err = s.resolve(ctx, string(index))
		if err == nil && l.rec.Name == name {
			return l, nil
		}
	}
	if err == nil || errors.Is(err, storage.ErrNotFound) {
		return nil, notFound(name)
	}
	return nil, err
}

// resolve reads the record at index, following a rotation's stub once (a
// rotation that committed but could not repoint the name).
func (s *Service) resolve(ctx context.Context, index string) (*loaded, error) {
	for range 2 {
		raw, err := s.store.Backend().Get(ctx, indexPrefix+index)
		if err != nil {
			return nil, err
		}
		rec, err := decodeRecord(raw)
		if err != nil {
			return nil, err
		}
		if !rec.isStub() {
			return &loaded{index: index, raw: raw, rec: rec}, nil
		}
		index = rec.Successor
	}
	return nil, storage.ErrNotFound
}

func errBusy(name string) error {
	return failure.Conflict("application key %q is being changed concurrently; try again", name)
}

// modify applies change to the key's record with compare-and-swap,
// retrying when a concurrent change won.
func (s *Service) modify(ctx context.Context, name string, change func(rec *record, now time.Time) error) (*record, error) {
	for range attempts {
		l, err := s.load(ctx, name)
		if err != nil {
			return nil, err
		}
		now := reccodec.Stamp(s.now())
		next := l.rec
		if err := change(&next, now); err != nil {
			return nil, err
		}
		next.LastModifiedAt = now
		ok, err := s.store.CompareAndSwap(ctx, indexPrefix+l.index, l.raw, next.encode(), 0)
		if err != nil {
			return nil, err
		}
		if ok {
			return &next, nil
		}
	}
	return nil, errBusy(name)
}

func sealContext(name string) string { return namePrefix + name }

// create issues a new key for an existing user.
func (s *Service) create(ctx context.Context, in NewKey) (*Created, error) {
	if err := account.ValidateName("application key", in.Name); err != nil {
		return nil, err
	}
	if in.Username == "" {
		return nil, failure.Invalid("username is required: the user the key runs as")
	}
	if _, err := account.NormalizeUsername(in.Username); err != nil {
		return nil, err
	}
	// User, not UserByCanonicalName: it knows a directory's forms of a
	// name, and directory accounts not seen yet.
	u, err := s.engine.Accounts.User(ctx, in.Username)
	if failure.Status(err) == http.StatusNotFound {
		return nil, failure.Invalid("user %q does not exist; create the user first", in.Username)
	}
	if err != nil {
		return nil, err
	}
	now := reccodec.Stamp(s.now())
	expires := reccodec.Stamp(now.Add(s.engine.Config.AppKeyLifetime))
	if in.ExpiresAt != nil {
		if expires, err = checkExpiry(*in.ExpiresAt, now); err != nil {
			return nil, err
		}
	}
	allowlist, _, err := parseAllowlist(in.IPAllowlist)
	if err != nil {
		return nil, err
	}
	meta := in.Metadata
	if err := meta.normalize(); err != nil {
		return nil, err
	}
	admin, err := s.engine.Accounts.HasAdminRole(ctx, u)
	if err != nil {
		return nil, err
	}

	value, index := newKey(s.engine.Keystore)
	rec := record{Name: in.Name, Index: index, Username: u.Username, UserID: u.ID,
		SealedKey: s.engine.Keystore.Seal([]byte(value), sealContext(in.Name)), ExpiresAt: expires,
		IPAllowlist: allowlist, Metadata: meta, CreatedAt: now, LastModifiedAt: now}
	// The record first (nobody knows its value yet), then the name: the
	// name's compare-and-swap decides who owns it.
	if err := s.store.Put(ctx, indexPrefix+index, rec.encode(), 0); err != nil {
		return nil, err
	}
	if err := s.claimName(ctx, in.Name, index); err != nil {
		_ = s.store.Delete(ctx, indexPrefix+index) // best effort: nobody knows its value
		return nil, err
	}
	warnings := []string{}
	if admin {
		warnings = append(warnings, fmt.Sprintf("user %q holds an admin role: the key can do everything an administrator can; "+
			"prefer a user with only the roles the client needs", u.Username))
	}
	return &Created{View: rec.view(time.Time{}, now), Key: value, Warnings: warnings}, nil
}

// claimName points name at index unless another key holds the name. A
// pointer left over from an interrupted deletion does not hold it.
func (s *Service) claimName(ctx context.Context, name, index string) error {
	for range attempts {
		ok, err := s.store.CompareAndSwap(ctx, namePrefix+name, nil, []byte(index), 0)
		if err != nil || ok {
			return err
		}
		old, err := s.store.Backend().Get(ctx, namePrefix+name)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		_, err = s.resolve(ctx, string(old))
		if err == nil {
			return failure.Conflict("application key %q already exists", name)
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		if ok, err := s.store.CompareAndSwap(ctx, namePrefix+name, old, []byte(index), 0); err != nil || ok {
			return err
		}
	}
	return errBusy(name)
}

// get returns the key's view.
func (s *Service) get(ctx context.Context, name string) (*View, error) {
	l, err := s.load(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.viewOf(ctx, &l.rec)
}

// viewOf is the view of rec with its last use read from the store.
func (s *Service) viewOf(ctx context.Context, rec *record) (*View, error) {
	var used time.Time
	raw, err := s.store.Backend().Get(ctx, usedPrefix+rec.Name)
	switch {
	case err == nil:
		used, _ = time.Parse(time.RFC3339, string(raw))
	case !errors.Is(err, storage.ErrNotFound):
		return nil, err
	}
	v := rec.view(used, s.now())
	return &v, nil
}

// list returns every key in name order.
func (s *Service) list(ctx context.Context) ([]View, error) {
	used := map[string]time.Time{}
	err := s.store.Scan(ctx, usedPrefix, func(e storage.Entry) error {
		if t, err := time.Parse(time.RFC3339, string(e.Value)); err == nil {
			used[strings.TrimPrefix(e.Key, usedPrefix)] = t
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var indexes []string
	err = s.store.Scan(ctx, namePrefix, func(e storage.Entry) error {
		indexes = append(indexes, string(e.Value))
		return nil
	})
	if err != nil {
		return nil, err
	}
	views := make([]View, 0, len(indexes))
	now := s.now()
	for _, index := range indexes {
		l, err := s.resolve(ctx, index)
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted meanwhile, or a leftover pointer
		}
		if err != nil {
			return nil, err
		}
		views = append(views, l.rec.view(used[l.rec.Name], now))
	}
	return views, nil
}

// view is rec as the admin API shows it.
func (rec *record) view(lastUsed, now time.Time) View {
	v := View{Name: rec.Name, Username: rec.Username, ExpiresAt: rec.ExpiresAt, Expired: !now.Before(rec.ExpiresAt),
		IPAllowlist: rec.IPAllowlist, Metadata: rec.Metadata, CreatedAt: rec.CreatedAt, LastModifiedAt: rec.LastModifiedAt}
	if v.IPAllowlist == nil {
		v.IPAllowlist = []string{}
	}
	if v.Tags == nil {
		v.Tags = []string{}
	}
	// A use noted just before a deletion may land after it: never show a
	// use older than the key.
	if !lastUsed.IsZero() && !lastUsed.Before(rec.CreatedAt.Truncate(time.Second)) {
		v.LastUsedAt = &lastUsed
	}
	if rec.PrevIndex != "" && now.Before(rec.PrevValidUntil) {
		until := rec.PrevValidUntil
		v.PreviousKeyValidUntil = &until
	}
	return v
}

// update applies a patch and returns the new view. Changing the expiry or
// the allowlist ends the sessions opened with the key.
func (s *Service) update(ctx context.Context, name string, p Patch) (*View, error) {
	if p.empty() {
		return nil, failure.Invalid("the patch changes nothing; it may set expires_at, ip_allowlist, description, " +
			"project, tags, client_name, documentation, home_url")
	}
	rec, err := s.modify(ctx, name, p.apply)
	if err != nil {
		return nil, err
	}
	if p.narrows() {
		if err := s.endSessions(ctx, name); err != nil {
			return nil, err
		}
	}
	return s.viewOf(ctx, rec)
}

// resetExpiration sets the key's expiry to now plus the default lifetime.
func (s *Service) resetExpiration(ctx context.Context, name string) (*View, error) {
	rec, err := s.modify(ctx, name, func(rec *record, now time.Time) error {
		rec.ExpiresAt = reccodec.Stamp(now.Add(s.engine.Config.AppKeyLifetime))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.endSessions(ctx, name); err != nil {
		return nil, err
	}
	return s.viewOf(ctx, rec)
}

// reveal decrypts the key's value.
func (s *Service) reveal(ctx context.Context, name string) (string, *record, error) {
	l, err := s.load(ctx, name)
	if err != nil {
		return "", nil, err
	}
	value, err := s.engine.Keystore.Open(l.rec.SealedKey, sealContext(name))
	if err != nil {
		return "", nil, fmt.Errorf("application key %q: %w", name, err)
	}
	return string(value), &l.rec, nil
}

// MaxGraceSeconds bounds a rotation's grace period (30 days).
const MaxGraceSeconds = 30 * 24 * 3600

// rotate gives the key a new value. The old value keeps working for
// graceSeconds (zero: it stops at once). Sessions opened with the key end.
func (s *Service) rotate(ctx context.Context, name string, graceSeconds int64) (string, *record, error) {
	if graceSeconds < 0 || graceSeconds > MaxGraceSeconds {
		return "", nil, failure.Invalid("grace_seconds must be from 0 to %d", MaxGraceSeconds)
	}
	grace := time.Duration(graceSeconds) * time.Second
	for range attempts {
		l, err := s.load(ctx, name)
		if err != nil {
			return "", nil, err
		}
		now := reccodec.Stamp(s.now())
		value, index := newKey(s.engine.Keystore)
		next := l.rec
		next.Index, next.SealedKey, next.LastModifiedAt = index, s.engine.Keystore.Seal([]byte(value), sealContext(name)), now
		next.PrevIndex, next.PrevValidUntil = "", time.Time{}
		stub := record{Name: name, Index: l.index, Successor: index, GraceUntil: now}
		if grace > 0 {
			stub.GraceUntil = reccodec.Stamp(now.Add(grace))
			next.PrevIndex, next.PrevValidUntil = l.index, stub.GraceUntil
		}
		if err := s.store.Put(ctx, indexPrefix+index, next.encode(), 0); err != nil {
			return "", nil, err
		}
		// The commit: from here the old value works only as the stub allows.
		ok, err := s.store.CompareAndSwap(ctx, indexPrefix+l.index, l.raw, stub.encode(), grace+stubRetention)
		if err != nil || !ok {
			_ = s.store.Delete(ctx, indexPrefix+index) // best effort: nobody knows its value
			if err != nil {
				return "", nil, err
			}
			continue
		}
		ops := []storage.Op{{Kind: storage.OpPut, Key: namePrefix + name, Value: []byte(index)}}
		if l.rec.PrevIndex != "" {
			ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: indexPrefix + l.rec.PrevIndex})
		}
		if err := s.store.Batch(ctx, ops); err != nil {
			return "", nil, err
		}
		return value, &next, s.endSessions(ctx, name)
	}
	return "", nil, errBusy(name)
}

// deleteKey removes the key and ends its sessions. With userID set, it
// removes the key only while it runs as that account, and returns a nil
// record when it does not.
func (s *Service) deleteKey(ctx context.Context, name, userID string) (*record, error) {
	for range attempts {
		l, err := s.load(ctx, name)
		if err != nil {
			return nil, err
		}
		if userID != "" && l.rec.UserID != userID {
			return nil, nil
		}
		ok, err := s.remove(ctx, l)
		if ok || err != nil {
			return &l.rec, err
		}
	}
	return nil, errBusy(name)
}

// remove deletes the loaded key if it is unchanged; ok reports whether it
// did. The key's sessions end first, while the key is still there: if
// that fails, the key stays and the deletion can be tried again. (A
// session opened after that is refused anyway once the key is gone; see
// checkSession.)
func (s *Service) remove(ctx context.Context, l *loaded) (ok bool, err error) {
	name := l.rec.Name
	if err := s.endSessions(ctx, name); err != nil {
		return false, err
	}
	ok, err = s.store.CompareAndSwap(ctx, indexPrefix+l.index, l.raw, nil, 0)
	if err != nil || !ok {
		return false, err
	}
	// The key is gone; the rest is cleanup.
	if _, err := s.store.CompareAndSwap(ctx, namePrefix+name, []byte(l.index), nil, 0); err != nil {
		return true, err
	}
	ops := []storage.Op{{Kind: storage.OpDelete, Key: usedPrefix + name}}
	if l.rec.PrevIndex != "" {
		ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: indexPrefix + l.rec.PrevIndex})
	}
	return true, s.store.Batch(ctx, ops)
}

// leftoverAge is how old a record no name resolves to must be before a
// purge deletes it.
const leftoverAge = 10 * time.Minute

// purgeExpired deletes every expired key and returns how many it deleted;
// onDelete, when set, is called for each. A key changed meanwhile (e.g.
// its expiration reset) is left alone.
func (s *Service) purgeExpired(ctx context.Context, onDelete func(*record)) (int, error) {
	now := s.now()
	var expired []*loaded
	err := s.store.Scan(ctx, indexPrefix, func(e storage.Entry) error {
		rec, err := decodeRecord(e.Value)
		if err != nil {
			s.engine.Logger.Error("skipping a corrupt application key record", zap.String("key", e.Key), zap.Error(err))
			return nil
		}
		if !rec.isStub() && !now.Before(rec.ExpiresAt) {
			expired = append(expired, &loaded{index: strings.TrimPrefix(e.Key, indexPrefix),
				raw: append([]byte(nil), e.Value...), rec: rec})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	deleted := 0
	for _, l := range expired {
		// Only a record its name resolves to is a key. One no name
		// resolves to is a leftover of an interrupted creation or rotation
		// (its value was never handed out): it goes silently, once old
		// enough that no creation or rotation can still be finishing it.
		cur, err := s.load(ctx, l.rec.Name)
		if err != nil && failure.Status(err) != http.StatusNotFound {
			return deleted, err
		}
		if err != nil || cur.index != l.index {
			if now.Sub(l.rec.LastModifiedAt) > leftoverAge {
				if _, err := s.store.CompareAndSwap(ctx, indexPrefix+l.index, l.raw, nil, 0); err != nil {
					return deleted, err
				}
			}
			continue
		}
		ok, err := s.remove(ctx, l)
		if err != nil {
			return deleted, err
		}
		if ok {
			deleted++
			if onDelete != nil {
				onDelete(&l.rec)
			}
		}
	}
	return deleted, nil
}

// audit writes an application key lifecycle event to the audit log; r is
// the admin or data-plane request, nil for background work.
func (s *Service) audit(r *http.Request, rec *record, what string) {
	ev := audit.Event{Kind: "appkey", Username: rec.Username, Credential: string(identity.MethodAppKey) + ":" + rec.Name,
		Outcome: audit.OutcomeSuccess, Reason: what}
	if r != nil {
		ev.RemoteIP, ev.Method, ev.Path, ev.Actor = engine.ClientIP(r), r.Method, r.URL.Path, audit.ActorOf(r.Context())
	}
	s.engine.Audit.Record(ev)
}
