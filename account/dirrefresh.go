package account

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/gatehouse-auth/gatehouse/directory"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

// Each instance of a cluster caches what the directory says of an
// account for status_ttl. An administrator's refresh (the admin API's
// POST /gatehouse/directory/refresh/{username}, answered by one instance)
// must reach them all: an account the directory just cut off would
// otherwise keep working on the others until their copies age. So the
// refresh leaves a mark in the shared store,
//
//	dirrefresh/<name>  a random value, kept for status_ttl and a minute
//
// and every instance reads the account again when the mark it finds
// (through its store cache, which a write on another instance
// invalidates) is not the one its cached status was read under
// (directory.Directory.Status). Once the mark is gone, every cached status
// is younger than the refresh or read again anyway.
const refreshPrefix = "dirrefresh/"

// refreshMark is the account's latest refresh mark; "" when none lives.
func (s *Service) refreshMark(ctx context.Context, name string) (string, error) {
	mark, err := cache.LoadJoined(s.store, ctx, refreshPrefix, name, func(b []byte) (string, error) { return string(b), nil })
	if errors.Is(err, storage.ErrNotFound) {
		return "", nil
	}
	return mark, err
}

// directoryStatus is the directory's status of the directory account u
// (see directory.Directory.Status: its entry, also when renamed in the
// directory), read again once an administrator refreshed it on any
// instance.
func (s *Service) directoryStatus(ctx context.Context, u *User) (directory.Entry, error) {
	mark, err := s.refreshMark(ctx, u.Username)
	if err != nil {
		return directory.Entry{}, err
	}
	e, err := s.dir.Status(ctx, u.Username, u.DirectoryID, mark)
	if err != nil {
		return directory.Entry{}, directoryDown(err)
	}
	return e, nil
}

// RefreshDirectoryAccount reads the directory account u from the
// directory now, on this instance, and has every other instance sharing
// the store read it again at its next use of the account.
func (s *Service) RefreshDirectoryAccount(ctx context.Context, u *User) error {
	name := u.Username
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // never fails (crypto/rand)
	mark := hex.EncodeToString(raw[:])
	if err := s.store.Put(ctx, refreshPrefix+name, []byte(mark), s.dir.StatusTTL()+time.Minute); err != nil {
		return err
	}
	if _, err := s.dir.Status(ctx, name, u.DirectoryID, mark); err != nil {
		return directoryDown(err)
	}
	return nil
}

// DirectoryRefreshMark is the mark the latest refresh of the directory
// account name left (RefreshDirectoryAccount) while it lives, "" when
// none does or there is no directory. A password verified under another
// mark is checked again (plugin/basic), so that a refresh after a
// password change in the directory ends the old password at once on
// every instance, as it ends a disabled account's requests.
func (s *Service) DirectoryRefreshMark(ctx context.Context, name string) (string, error) {
	if s.dir == nil {
		return "", nil
	}
	return s.refreshMark(ctx, name)
}
