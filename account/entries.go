package account

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/directory"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// The index of directory entries: one Gatehouse account per directory
// entry, whatever name finds it (a second uid, a mail address a custom
// user_filter matches).
//
//	direntry/<entry ID>  the name of the account that holds the entry: its
//	                     one record, which every name finding the entry
//	                     signs in to; or contestedMark and the names of
//	                     the records an older version made for it, one
//	                     per name that found it, each kept blocked (its
//	                     stored status) until an administrator deletes
//	                     all but one
const (
	entryPrefix   = "direntry/"
	contestedMark = "contested:" // no username holds a ':'
)

// errContested refuses a name of a contested entry that has no record of
// its own.
var errContested = identity.Forbidden("this directory account has several Gatehouse users, made by an older version for each name it signed in with: an administrator must delete all but one")

// holder returns the account that holds the directory entry id: nil
// when none does (yet, or its record was deleted or its name taken
// since). contenders are the names of the records that contest the entry
// when several do — made by an older version, one per name the entry
// signed in with, whose second factors, lockouts and keys were apart, so
// that which one is the person's is for an administrator to say — and
// only those that still exist: one left holds the entry, none frees it.
func (s *Service) holder(ctx context.Context, id string) (h *User, contenders []string, err error) {
	raw, err := s.store.Get(ctx, entryPrefix+id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, nil, nil
	case err != nil:
		return nil, nil, err
	}
	names, _ := strings.CutPrefix(string(raw), contestedMark)
	var live []*User
	for _, name := range strings.Split(names, ",") {
		u, err := s.UserByCanonicalName(ctx, name)
		switch {
		case errors.Is(err, failure.ErrNotFound):
		case err != nil:
			return nil, nil, err
		case u.FromDirectory() && u.DirectoryID == id: // else the name was taken since
			live = append(live, u)
		}
	}
	if len(live) == 1 {
		return live[0], nil, nil
	}
	for _, u := range live {
		contenders = append(contenders, u.Username)
	}
	return nil, contenders, nil
}

// held returns u, or a copy of it blocked when it does not hold its
// directory entry while another record does, or others contest it: a
// record an older instance made for another name of an entry after this
// version indexed the entry, whose second factors are not the account's,
// signs in nowhere (nor is the ESA API told of its factors) until the
// next start indexes it, when it contests the entry. A contender's own
// stored status blocks it already (setContested).
func (s *Service) held(ctx context.Context, u *User) (*User, error) {
	if s.dir == nil || !u.FromDirectory() || u.DirectoryID == "" {
		return u, nil
	}
	h, contenders, err := s.holder(ctx, u.DirectoryID)
	switch {
	case err != nil:
		return nil, err
	case h != nil && h.Username != u.Username, len(contenders) > 1 && !slices.Contains(contenders, u.Username):
		c := *u
		c.Status = StatusBlocked
		return &c, nil
	}
	return u, nil
}

// entryAccount returns the account of the directory entry e, which name
// found: the record that holds it, or else a new one, which then holds
// it, named after the entry's own name (accountName). The entry is
// claimed in the index before its record is made, so that first sign-ins
// by two names at once make one record. A failure.NotFound error when
// the entry's own name is none Gatehouse can hold.
func (s *Service) entryAccount(ctx context.Context, name string, e directory.Entry) (*User, error) {
	own, ok := accountName(e, name)
	if !ok {
		return nil, failure.NotFound("user %q not found in the directory", name)
	}
	if e.ID == "" {
		return s.directoryRecord(ctx, own, e)
	}
	switch h, contenders, err := s.holder(ctx, e.ID); {
	case err != nil || h != nil:
		return h, err
	case len(contenders) > 1:
		return nil, errContested
	}
	// Nobody holds it: its index names nobody, a record being made now by
	// a first sign-in under another name (made here too, under that
	// name), or records since deleted (claimed anew).
	var claimed string
	err := storage.Update(ctx, s.store, entryPrefix+e.ID, 0, func(old []byte) ([]byte, error) {
		claimed = own
		if old == nil {
			return []byte(own), nil
		}
		if strings.HasPrefix(string(old), contestedMark) {
			return []byte(own), nil // its contenders are all deleted
		}
		claimed = string(old)
		u, err := s.UserByCanonicalName(ctx, claimed)
		switch {
		case errors.Is(err, failure.ErrNotFound):
			return nil, storage.ErrNoChange // being made by a sign-in under another name now, or deleted: made under that name
		case err != nil:
			return nil, err
		case u.FromDirectory() && u.DirectoryID == e.ID:
			return nil, storage.ErrNoChange // held
		}
		claimed = own // the name is another entry's, or a local account's, now
		return []byte(own), nil
	})
	if err != nil {
		return nil, err
	}
	return s.directoryRecord(ctx, claimed, e)
}

// release takes u out of the index of directory entries when it is
// deleted: the entry it held is free for a new record, and an entry its
// record contested has one contender fewer; the last one holds it, and
// is no longer blocked.
func (s *Service) release(ctx context.Context, u *User) error {
	if !u.FromDirectory() || u.DirectoryID == "" {
		return nil
	}
	var contested bool
	err := storage.Update(ctx, s.store, entryPrefix+u.DirectoryID, 0, func(old []byte) ([]byte, error) {
		var names string
		names, contested = strings.CutPrefix(string(old), contestedMark)
		switch {
		case old == nil || !contested && names != u.Username:
			return nil, storage.ErrNoChange // not indexed, or another record holds it
		case !contested:
			return nil, nil
		}
		return entryValue(slices.DeleteFunc(strings.Split(names, ","), func(n string) bool { return n == u.Username })), nil
	})
	if err != nil || !contested {
		return err // nothing was blocked for this entry
	}
	h, _, err := s.holder(ctx, u.DirectoryID)
	if err != nil || h == nil {
		return err // still contested, or free
	}
	return s.setContested(ctx, h.Username, false)
}

// setContested blocks (or unblocks) the directory record name as a
// contender for its entry: a directory record's stored status is
// otherwise always active (the directory's decides), so Authorize, every
// sign-in and the ESA API refuse it while it is blocked.
func (s *Service) setContested(ctx context.Context, name string, contested bool) error {
	status := StatusActive
	if contested {
		status = StatusBlocked
	}
	_, err := s.modifyUser(ctx, name, func(u *User, now time.Time) {
		if u.FromDirectory() && u.Status != status {
			u.Status, u.UpdatedAt = status, now
		}
	})
	return err
}

// entryValue is the index value of an entry the records names claim.
func entryValue(names []string) []byte {
	switch len(names) {
	case 0:
		return nil
	case 1:
		return []byte(names[0])
	}
	return []byte(contestedMark + strings.Join(names, ","))
}

// IndexDirectoryEntries puts every directory record of the store in the
// index of entries, and frees the contests no record holds any more, at
// every start where a directory is configured, before requests: a record an older version made (for each name an
// entry signed in with; an older instance in a cluster, or a version
// rolled back to, makes them still) holds its entry when it is the
// entry's only one, and contests it with the others otherwise — each
// contender blocked, and logged, until an administrator deletes all but
// one. Records made meanwhile claim their entry themselves.
func (s *Service) IndexDirectoryEntries(ctx context.Context, log *zap.Logger) error {
	claims := map[string][]string{}
	blocked := map[string]bool{}
	if err := s.store.Scan(ctx, userPrefix, func(e storage.Entry) error {
		u, err := decodeUser(e.Value)
		if err != nil {
			// Refused where it is used; one bad record must not stop the start.
			log.Error("skipping a user record that does not decode", zap.String("key", e.Key), zap.Error(err))
			return nil
		}
		if u.FromDirectory() && u.DirectoryID != "" {
			claims[u.DirectoryID] = append(claims[u.DirectoryID], u.Username)
			blocked[u.Username] = u.Status == StatusBlocked
		}
		return nil
	}); err != nil {
		return err
	}
	indexed := map[string]string{} // one scan, so that a start makes no round trip per entry
	if err := s.store.Scan(ctx, entryPrefix, func(e storage.Entry) error {
		indexed[strings.TrimPrefix(e.Key, entryPrefix)] = string(e.Value)
		return nil
	}); err != nil {
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(indexed)) {
		// A contest no record holds any more (its records deleted behind
		// Gatehouse's back, a backup restored): free. Only a start writes a
		// contest; a single name may be a sign-in's claim on another
		// instance whose record is being made now, and holder and
		// entryAccount read one of a deleted record as free anyway.
		if _, claimed := claims[id]; claimed || !strings.HasPrefix(indexed[id], contestedMark) {
			continue
		}
		stale := indexed[id]
		if err := storage.Update(ctx, s.store, entryPrefix+id, 0, func(old []byte) ([]byte, error) {
			if string(old) != stale {
				return nil, storage.ErrNoChange
			}
			return nil, nil
		}); err != nil {
			return err
		}
	}
	for _, id := range slices.Sorted(maps.Keys(claims)) {
		names := claims[id]
		slices.Sort(names)
		contested := len(names) > 1
		if contested {
			log.Warn("a directory account has several Gatehouse users, made by an older version for each name it signed in with: they are blocked until an administrator deletes all but one (DELETE /gatehouse/users/{username}; keep the one with the user's second factors)",
				zap.Strings("users", names))
		}
		if value := string(entryValue(names)); indexed[id] != value {
			if err := storage.Update(ctx, s.store, entryPrefix+id, 0, func(old []byte) ([]byte, error) {
				if string(old) == value {
					return nil, storage.ErrNoChange
				}
				return []byte(value), nil
			}); err != nil {
				return err
			}
		}
		for _, name := range names {
			if blocked[name] != contested {
				if err := s.setContested(ctx, name, contested); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
