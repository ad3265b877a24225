package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// UpdateAttempts is how many times Update reads a record and tries to
// swap its change in, and Retry tries, before giving up with ErrConflict.
// A swap is lost only when another writer changed the record between the
// read and the swap, so the budget bounds how many concurrent changes of
// one record an update outlasts, not how long it takes.
const UpdateAttempts = 100

// ErrConflict reports that Update lost the compare-and-swap to other
// writers of the record UpdateAttempts times in a row (nothing was
// written), or that Retry ran out of tries. The caller may try again; it
// is a conflict (409) to the admin API's clients.
var ErrConflict = errors.New("storage: the record is being changed concurrently; try again")

// ErrNoChange may be returned by an Update function to leave the record as
// it is: Update then returns nil without writing.
var ErrNoChange = errors.New("storage: no change")

// Update changes the record at key by optimistic concurrency: it reads
// the record, calls change with its value and swaps the result in only if
// the record is still the value read (CompareAndSwap); when another writer
// got there first it reads again and calls change again, at most
// UpdateAttempts times, and then returns ErrConflict.
//
// change receives nil when the record is absent (a record holding the
// empty value is a non-nil empty slice) and returns the value to store
// with the given ttl (zero: no expiry), or nil to delete the record;
// deleting an absent record writes nothing. ErrNoChange leaves the record
// as it is; any other error ends the update with nothing written and is
// returned as it is. change may run several times, so it must not have
// effects that cannot be repeated.
func Update(ctx context.Context, s Store, key string, ttl time.Duration, change func(old []byte) (next []byte, err error)) error {
	return Retry(func() (bool, error) {
		old, err := s.Get(ctx, key)
		switch {
		case errors.Is(err, ErrNotFound):
			old = nil
		case err != nil:
			return false, err
		case old == nil:
			old = []byte{} // the empty value: present, unlike nil
		}
		next, err := change(old)
		switch {
		case errors.Is(err, ErrNoChange):
			return true, nil
		case err != nil:
			return false, err
		case old == nil && next == nil:
			return true, nil // deleting what is not there
		}
		return s.CompareAndSwap(ctx, key, old, next, ttl)
	})
}

// Retry runs attempt, one try of an optimistic change, until it reports
// done, at most UpdateAttempts times, and then returns ErrConflict. An
// attempt that lost a compare-and-swap to another writer reports not done
// (and no error) to be tried again; an error ends the retries and is
// returned as it is. After the first lost swaps it waits a random while,
// longer each time (up to maxBackoff), before trying again: writers that
// keep colliding on one record (a hundred guesses at one account's second
// factor, on a busy machine) spread out instead of all losing again, and
// none runs out of tries while its record is free at times. Update is
// Retry for a change of one record; Retry
// itself is for changes that span records, such as a name and the record
// it points to, or that keep compare-and-swap semantics of their own
// (consume once, create if absent) and look again after a lost swap.
func Retry(attempt func() (done bool, err error)) error {
	for i := range UpdateAttempts {
		if done, err := attempt(); err != nil || done {
			return err
		}
		if i >= 2 {
			time.Sleep(rand.N(min(time.Microsecond<<min(i, 11), maxBackoff))) //nolint:gosec // G404: a jitter, no secret
		}
	}
	return ErrConflict
}

// maxBackoff bounds Retry's wait between two tries: a hundred tries wait
// at most about a fifth of a second in all.
const maxBackoff = 2 * time.Millisecond

// UpdateJSON is Update for a record stored as JSON: change receives the
// decoded record, nil when it is absent, and returns the record to store,
// or nil to delete it (or ErrNoChange, or another error, as with Update).
// It returns the record as it is after the update: the one change
// returned, the one read on ErrNoChange, nil when there is none.
func UpdateJSON[T any](ctx context.Context, s Store, key string, ttl time.Duration, change func(cur *T) (*T, error)) (*T, error) {
	var result *T
	err := Update(ctx, s, key, ttl, func(old []byte) ([]byte, error) {
		result = nil
		if old != nil {
			result = new(T)
			if err := json.Unmarshal(old, result); err != nil {
				return nil, fmt.Errorf("decoding the record %s: %w", key, err)
			}
		}
		next, err := change(result)
		if err != nil {
			return nil, err
		}
		if result = next; next == nil {
			return nil, nil
		}
		return json.Marshal(next)
	})
	if err != nil {
		return nil, err
	}
	return result, nil
}
