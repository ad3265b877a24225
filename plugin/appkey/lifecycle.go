package appkey

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/internal/reccodec"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// The admin operations that change stored keys: each reads the store
// itself, not the cache, and commits with a compare-and-swap, tried again
// (storage.Retry) when a concurrent change won.

// stubRetention keeps the stub a rotation leaves under the old index past
// its grace period, so the key's name still resolves if the store failed
// between the rotation's commit and the repointing of the name.
const stubRetention = 24 * time.Hour

// loaded is a record as read for a change: where it is stored, the exact
// bytes (for compare-and-swap) and the decoded record.
type loaded struct {
	index string
	raw   []byte
	rec   record
}

func notFound(name string) error { return failure.NotFound("application key %q not found", name) }

// load reads the key name from the store itself (not the cache), ready for
// a compare-and-swap. The name may point at a record a concurrent
// rotation replaced and then removed (it removes the stub of the rotation
// before it once the name points further): the name is read again then,
// a few times, before the key counts as not found.
func (s *Service) load(ctx context.Context, name string) (*loaded, error) {
	if account.ValidateName("application key", name) != nil {
		return nil, notFound(name)
	}
	for range nameReads {
		index, err := s.store.Backend().Get(ctx, namePrefix+name)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, notFound(name)
		}
		if err != nil {
			return nil, err
		}
		l, err := s.resolve(ctx, string(index))
		switch {
		case err == nil && l.rec.Name == name:
			return l, nil
		case err == nil:
			return nil, notFound(name)
		case !errors.Is(err, storage.ErrNotFound):
			return nil, err
		}
	}
	return nil, notFound(name) // a pointer a deletion left behind (see claimName)
}

// nameReads bounds the reads of a key name that leads to no record.
const nameReads = 3

// maxStubs bounds the rotation stubs resolve follows: one per rotation
// between the one the name points at and the current record, which the
// name lags behind only while those rotations repoint it.
const maxStubs = 16

// resolve reads the record at index, following the stubs of rotations
// that committed but have not repointed the name yet (or could not).
func (s *Service) resolve(ctx context.Context, index string) (*loaded, error) {
	for range maxStubs {
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

// repointName points the key name at to (nil deletes it) while it points
// at index or at a record older than index: one whose rotation stubs lead
// to index, or one removed since (only a later rotation or a deletion
// removes a record). A name pointing at a later record, or at another key
// created under the name since, is left alone. Two rotations may repoint
// the name in either order, and an unconditional write could leave it at
// the older record, a stub that expires: the name would then lead
// nowhere while its key still works.
func (s *Service) repointName(ctx context.Context, name, index string, to []byte) error {
	return storage.Retry(func() (bool, error) {
		cur, err := s.store.Backend().Get(ctx, namePrefix+name)
		if errors.Is(err, storage.ErrNotFound) {
			return true, nil // deleted since
		}
		if err != nil {
			return false, err
		}
		if string(cur) == string(to) {
			return true, nil
		}
		older, err := s.leadsTo(ctx, string(cur), index)
		if err != nil || !older {
			return true, err
		}
		return s.store.CompareAndSwap(ctx, namePrefix+name, cur, to, 0)
	})
}

// leadsTo reports whether from is index, or a record older than it: its
// stubs lead to index, or it is gone.
func (s *Service) leadsTo(ctx context.Context, from, index string) (bool, error) {
	for range maxStubs {
		if from == index {
			return true, nil
		}
		raw, err := s.store.Backend().Get(ctx, indexPrefix+from)
		if errors.Is(err, storage.ErrNotFound) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		rec, err := decodeRecord(raw)
		if err != nil || !rec.isStub() {
			return false, err // a current record: a later one, or another key's
		}
		from = rec.Successor
	}
	return false, nil
}

// retry runs attempt, one try of a change of the key name, with
// storage.Retry; running out of tries is the key's 409.
func retry(name string, attempt func() (done bool, err error)) error {
	err := storage.Retry(attempt)
	if errors.Is(err, storage.ErrConflict) {
		return failure.Conflict("application key %q is being changed concurrently; try again", name)
	}
	return err
}

// modify applies change to the key's record with compare-and-swap,
// retrying when a concurrent change won.
func (s *Service) modify(ctx context.Context, name string, change func(rec *record, now time.Time) error) (*record, error) {
	var next record
	err := retry(name, func() (bool, error) {
		l, err := s.load(ctx, name)
		if err != nil {
			return false, err
		}
		now := reccodec.Stamp(s.now())
		next = l.rec
		if err := change(&next, now); err != nil {
			return false, err
		}
		next.LastModifiedAt = now
		return s.store.CompareAndSwap(ctx, indexPrefix+l.index, l.raw, next.encode(), 0)
	})
	if err != nil {
		return nil, err
	}
	return &next, nil
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
	if errors.Is(err, failure.ErrNotFound) {
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
	// The account's entry, then the record (nobody knows its value yet),
	// then the name: the name's compare-and-swap decides who owns it. An
	// entry or a record left by a creation that failed names no key.
	if err := s.store.Put(ctx, userKeyKey(u.ID, in.Name), nil, 0); err != nil {
		return nil, err
	}
	if err := s.store.Put(ctx, indexPrefix+index, rec.encode(), 0); err != nil {
		return nil, err
	}
	if err := s.claimName(ctx, in.Name, index); err != nil {
		_ = s.store.Delete(ctx, indexPrefix+index) // best effort: nobody knows its value
		return nil, err
	}
	// The account may have been deleted since it was read, its keys
	// deleted before this one held its name: then this key goes too.
	if cur, err := s.engine.Accounts.User(ctx, u.Username); errors.Is(err, failure.ErrNotFound) || (err == nil && cur.ID != u.ID) {
		if _, err := s.deleteKey(ctx, in.Name, u.ID); err != nil {
			return nil, err
		}
		return nil, failure.Conflict("user %q was deleted while the key was being created", in.Username)
	} else if err != nil {
		return nil, err
	}
	// Again, now that the key holds its name: the deletion of an earlier
	// key of the same name and account, racing this creation, may have
	// removed the entry since (remove puts it back when it sees this key;
	// this covers it not seeing it yet).
	if err := s.store.Put(ctx, userKeyKey(u.ID, in.Name), nil, 0); err != nil {
		s.engine.Logger.Error("an application key was created, but its account's entry could not be written again; it may be missing from the account's key list", zap.String("key", in.Name), zap.Error(err))
	}
	warnings := []string{}
	if admin {
		warnings = append(warnings, fmt.Sprintf("user %q holds an admin role: the key can do everything an administrator can; "+
			"prefer a user with only the roles the client needs", u.Username))
	}
	warnings = append(warnings, allowlistWarnings(allowlist)...)
	return &Created{View: rec.view(time.Time{}, now), Key: value, Warnings: warnings}, nil
}

// allowlistWarnings warns of each entry of a canonical allowlist that
// lets every address of its family use the key (a /0), given on creation
// and on an update that sets the allowlist.
func allowlistWarnings(allowlist []string) []string {
	var warnings []string
	for _, entry := range allowlist {
		if strings.HasSuffix(entry, "/0") {
			family := "IPv6"
			if !strings.Contains(entry, ":") {
				family = "IPv4"
			}
			warnings = append(warnings, fmt.Sprintf("ip_allowlist entry %s lets every %s address use the key", entry, family))
		}
	}
	return warnings
}

// claimName points name at index unless another key holds the name. A
// pointer left over from an interrupted deletion does not hold it.
func (s *Service) claimName(ctx context.Context, name, index string) error {
	return retry(name, func() (bool, error) {
		ok, err := s.store.CompareAndSwap(ctx, namePrefix+name, nil, []byte(index), 0)
		if err != nil || ok {
			return ok, err
		}
		old, err := s.store.Backend().Get(ctx, namePrefix+name)
		if errors.Is(err, storage.ErrNotFound) {
			return false, nil // deleted meanwhile: claim it again
		}
		if err != nil {
			return false, err
		}
		_, err = s.resolve(ctx, string(old))
		if err == nil {
			return false, failure.Conflict("application key %q already exists", name)
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return false, err
		}
		return s.store.CompareAndSwap(ctx, namePrefix+name, old, []byte(index), 0)
	})
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
	var value string
	var next record
	err := retry(name, func() (bool, error) {
		l, err := s.load(ctx, name)
		if err != nil {
			return false, err
		}
		now := reccodec.Stamp(s.now())
		var index string
		value, index = newKey(s.engine.Keystore)
		next = l.rec
		next.Index, next.SealedKey, next.LastModifiedAt = index, s.engine.Keystore.Seal([]byte(value), sealContext(name)), now
		next.PrevIndex, next.PrevValidUntil = "", time.Time{}
		stub := record{Name: name, Index: l.index, Successor: index, GraceUntil: now}
		if grace > 0 {
			stub.GraceUntil = reccodec.Stamp(now.Add(grace))
			next.PrevIndex, next.PrevValidUntil = l.index, stub.GraceUntil
		}
		if err := s.store.Put(ctx, indexPrefix+index, next.encode(), 0); err != nil {
			return false, err
		}
		// The commit: from here the old value works only as the stub allows.
		ok, err := s.store.CompareAndSwap(ctx, indexPrefix+l.index, l.raw, stub.encode(), grace+stubRetention)
		if err != nil || !ok {
			_ = s.store.Delete(ctx, indexPrefix+index) // best effort: nobody knows its value
			return false, err
		}
		if err := s.repointName(ctx, name, index, []byte(index)); err != nil {
			return true, err
		}
		// The account's entry again: indexUserKeys, reading every key while
		// this rotation moved the record (a Redis scan lists the keys
		// before it reads them), may have found only the stub. The stub of
		// the rotation before goes only now that the name points past it.
		ops := []storage.Op{{Kind: storage.OpPut, Key: userKeyKey(l.rec.UserID, name)}}
		if l.rec.PrevIndex != "" {
			ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: indexPrefix + l.rec.PrevIndex})
		}
		return true, s.store.Batch(ctx, ops)
	})
	if err != nil {
		return "", nil, err
	}
	return value, &next, s.endSessions(ctx, name)
}

// deleteKey removes the key and ends its sessions. With userID set, it
// removes the key only while it runs as that account, and returns a nil
// record when it does not.
func (s *Service) deleteKey(ctx context.Context, name, userID string) (*record, error) {
	var deleted *record // the key the last try removed, or failed to remove
	err := retry(name, func() (bool, error) {
		l, err := s.load(ctx, name)
		if err != nil {
			return false, err
		}
		if userID != "" && l.rec.UserID != userID {
			return true, nil
		}
		ok, err := s.remove(ctx, l)
		if ok || err != nil {
			deleted = &l.rec
		}
		return ok, err
	})
	return deleted, err
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
	s.noteDeleted(name)
	if err := s.repointName(ctx, name, l.index, nil); err != nil {
		return true, err
	}
	entry := userKeyKey(l.rec.UserID, name)
	ops := []storage.Op{{Kind: storage.OpDelete, Key: usedPrefix + name}, {Kind: storage.OpDelete, Key: entry}}
	if l.rec.PrevIndex != "" {
		ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: indexPrefix + l.rec.PrevIndex})
	}
	if err := s.store.Batch(ctx, ops); err != nil {
		return true, err
	}
	// A key of the same name and account created since the name was let
	// go shares the entry just removed: put it back (the creation puts it
	// again too, once it holds the name, for when it did not yet).
	if now, err := s.load(ctx, name); err == nil && now.rec.UserID == l.rec.UserID {
		return true, s.store.Put(ctx, entry, nil, 0)
	}
	return true, nil
}
