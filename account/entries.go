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
//	                     per name that found it, which sign in nowhere
//	                     until an administrator deletes all but one
//	direntry-indexed     present once every directory record of the
//	                     store is in the index (IndexDirectoryEntries)
const (
	entryPrefix   = "direntry/"
	entriesDone   = "direntry-indexed"
	contestedMark = "contested:" // no username holds a ':'
)

// holder returns the account that holds the directory entry id: nil when
// none does (yet, or its record was deleted), and a refusal when records
// an older version made contest it: their second factors, lockouts and
// keys were apart, and which one is the person's is for an administrator
// to say.
func (s *Service) holder(ctx context.Context, id string) (*User, error) {
	raw, err := s.store.Get(ctx, entryPrefix+id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	// One name, or the contenders': those whose records still hold the
	// entry count.
	names, _ := strings.CutPrefix(string(raw), contestedMark)
	var live []*User
	for _, name := range strings.Split(names, ",") {
		u, err := s.UserByCanonicalName(ctx, name)
		switch {
		case errors.Is(err, failure.ErrNotFound):
		case err != nil:
			return nil, err
		case u.FromDirectory() && u.DirectoryID == id: // else deleted, and the name taken since
			live = append(live, u)
		}
	}
	switch {
	case len(live) == 0:
		return nil, nil
	case len(live) == 1:
		return live[0], nil
	}
	named := make([]string, len(live))
	for i, u := range live {
		named[i] = u.Username
	}
	return nil, identity.Forbidden("this directory account has several Gatehouse users, made by an older version for each name it signed in with (" +
		strings.Join(named, ", ") + "): an administrator must delete all but one")
}

// heldBy returns the account of u: u itself, or for a directory record
// of an entry another record holds (made by an older version under
// another name of the entry), that record.
func (s *Service) heldBy(ctx context.Context, u *User) (*User, error) {
	if s.dir == nil || !u.FromDirectory() || u.DirectoryID == "" {
		return u, nil
	}
	h, err := s.holder(ctx, u.DirectoryID)
	if err != nil || h == nil {
		return u, err
	}
	return h, nil
}

// entryAccount returns the account of the directory entry e, which name
// found: the record that holds it, or else a new record, under the
// entry's own name (accountName), which then holds it. A failure.NotFound
// error when the entry's own name is none Gatehouse can hold.
func (s *Service) entryAccount(ctx context.Context, name string, e directory.Entry) (*User, error) {
	if e.ID != "" {
		if h, err := s.holder(ctx, e.ID); err != nil || h != nil {
			return h, err
		}
	}
	own, ok := accountName(e, name)
	if !ok {
		return nil, failure.NotFound("user %q not found in the directory", name)
	}
	u, err := s.directoryRecord(ctx, own, e)
	if err != nil || e.ID == "" || u.DirectoryID != e.ID {
		return u, err // no ID to index; or a record of an entry since replaced (refused as such)
	}
	err = storage.Update(ctx, s.store, entryPrefix+e.ID, 0, func(old []byte) ([]byte, error) {
		if old == nil {
			return []byte(u.Username), nil
		}
		if h, err := s.holder(ctx, e.ID); err != nil || h != nil {
			return nil, errors.Join(err, storage.ErrNoChange) // claimed meanwhile (or contested)
		}
		return []byte(u.Username), nil // the entry's last holder was deleted
	})
	if err != nil && !errors.Is(err, storage.ErrNoChange) {
		return nil, err
	}
	if h, err := s.holder(ctx, e.ID); err != nil || h != nil {
		return h, err // another name's record won a race for the entry: it is the account
	}
	return u, nil
}

// release takes u out of the index of directory entries when it is
// deleted: the entry it held is free for a new record, and an entry its
// record contested has one contender fewer (the last one holds it).
func (s *Service) release(ctx context.Context, u *User) error {
	if !u.FromDirectory() || u.DirectoryID == "" {
		return nil
	}
	return storage.Update(ctx, s.store, entryPrefix+u.DirectoryID, 0, func(old []byte) ([]byte, error) {
		names, contested := strings.CutPrefix(string(old), contestedMark)
		switch {
		case old == nil:
			return nil, storage.ErrNoChange
		case !contested && names == u.Username:
			return nil, nil
		case !contested:
			return nil, storage.ErrNoChange // another record holds it
		}
		return entryValue(slices.DeleteFunc(strings.Split(names, ","), func(n string) bool { return n == u.Username })), nil
	})
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
// index of entries (a store an older version wrote, which made a record
// for each name an entry signed in with), then records that it is done
// (entriesDone); once that is recorded it does nothing. An entry with one
// record is held by it; one with several is contested until an
// administrator deletes all but one, and each is logged. Records made
// meanwhile index themselves, and running it again, on another instance
// too, writes the same entries. Called at start, before requests, where a
// directory is configured.
func (s *Service) IndexDirectoryEntries(ctx context.Context, log *zap.Logger) error {
	if _, err := s.store.Get(ctx, entriesDone); !errors.Is(err, storage.ErrNotFound) {
		return err // done (nil), or unknown: fail the start, which is tried again
	}
	claims := map[string][]string{}
	if err := s.eachUser(ctx, func(u *User) {
		if u.FromDirectory() && u.DirectoryID != "" {
			claims[u.DirectoryID] = append(claims[u.DirectoryID], u.Username)
		}
	}); err != nil {
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(claims)) {
		names := claims[id]
		slices.Sort(names)
		if len(names) > 1 {
			log.Warn("a directory account has several Gatehouse users, made by an older version for each name it signed in with: none of them signs in until an administrator deletes all but one (DELETE /gatehouse/users/{username})",
				zap.Strings("users", names))
		}
		value := entryValue(names)
		if err := storage.Update(ctx, s.store, entryPrefix+id, 0, func(old []byte) ([]byte, error) {
			if old != nil {
				return nil, storage.ErrNoChange // indexed by a record made meanwhile, or by another instance
			}
			return value, nil
		}); err != nil {
			return err
		}
	}
	return s.store.Put(ctx, entriesDone, []byte(time.Now().UTC().Format(time.RFC3339)), 0) // when, for whoever reads the store
}
