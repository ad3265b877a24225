// Package storeutil holds the argument checks and error conventions shared
// by the storage backends, so that every backend rejects the same calls with
// the same errors.
package storeutil

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gatehouse-auth/gatehouse/storage"
)

// ErrEmptyKey rejects the empty key, which the storage contract forbids.
var ErrEmptyKey = errors.New("storage: empty key")

// ErrNotInteger is returned by Incr when the stored value is not a decimal
// integer, or when adding the delta would overflow an int64; the stored
// value is left unchanged.
var ErrNotInteger = errors.New("storage: incr: stored value is not a decimal int64 or the result would overflow")

// CheckKey rejects keys the contract forbids.
func CheckKey(key string) error {
	if key == "" {
		return ErrEmptyKey
	}
	return nil
}

// CheckReserved rejects a key starting with a prefix the backend named by
// keeps for itself.
func CheckReserved(key, prefix, by string) error {
	if strings.HasPrefix(key, prefix) {
		return fmt.Errorf("storage: keys starting with %q are reserved by %s", prefix, by)
	}
	return nil
}

// CheckOps validates a whole batch up front with checkKey, the backend's
// key check (CheckKey and its own limits), so that an invalid op fails the
// batch before anything is written.
func CheckOps(ops []storage.Op, checkKey func(string) error) error {
	for i, op := range ops {
		if err := checkKey(op.Key); err != nil {
			return fmt.Errorf("storage: batch op %d: %w", i, err)
		}
		if op.Kind != storage.OpPut && op.Kind != storage.OpDelete {
			return fmt.Errorf("storage: batch op %d: unknown kind %d", i, op.Kind)
		}
	}
	return nil
}

// Unavailable wraps a failure of the backing store so that errors.Is
// matches both storage.ErrUnavailable and the cause (for example
// context.DeadlineExceeded). what names the operation, as in "badger get";
// it must never contain a key or a value.
func Unavailable(what string, err error) error {
	return fmt.Errorf("%s: %w: %w", what, storage.ErrUnavailable, err)
}
