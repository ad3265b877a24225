package failure_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// TestRendering: every kind renders as the status the contract names,
// wrapped or not, with the classified message; a store failure is 503
// and anything unclassified a generic 500.
func TestRendering(t *testing.T) {
	cases := []struct {
		name    string
		err     error
		kind    error
		status  int
		message string
		caller  bool
	}{
		{"invalid", failure.Invalid("name %q is too long", "x"), failure.ErrInvalid, 400, `name "x" is too long`, true},
		{"not found", failure.NotFound("user %q not found", "bob"), failure.ErrNotFound, 404, `user "bob" not found`, true},
		{"conflict", failure.Conflict("user %q exists", "bob"), failure.ErrConflict, 409, `user "bob" exists`, true},
		{"throttled", failure.Throttled("%d texts sent", 10), failure.ErrThrottled, 429, "10 texts sent", true},
		{"unauthenticated", failure.New(failure.ErrUnauthenticated, "sign in"), failure.ErrUnauthenticated, 401, "sign in", true},
		{"forbidden", failure.New(failure.ErrForbidden, "not yours"), failure.ErrForbidden, 403, "not yours", true},
		{"wrapped keeps kind and message", fmt.Errorf("loading user: %w", failure.NotFound("user %q not found", "bob")), failure.ErrNotFound, 404, `user "bob" not found`, true},
		{"store failure", fmt.Errorf("reading: %w: connection refused", storage.ErrUnavailable), failure.ErrUnavailable, 503, "the Gatehouse store is unavailable", false},
		{"store failure as a kind", failure.New(failure.ErrUnavailable, "store down"), storage.ErrUnavailable, 503, "store down", false},
		{"the store's conflict", fmt.Errorf("updating user: %w", storage.ErrConflict), storage.ErrConflict, 409, "the record is being changed concurrently; try again", true},
		{"bare kind", fmt.Errorf("role %q: %w", "r", failure.ErrConflict), failure.ErrConflict, 409, "conflict", true},
		{"classified beats a store failure behind it", fmt.Errorf("%w (%w)", failure.Invalid("bad"), storage.ErrUnavailable), failure.ErrInvalid, 400, "bad", true},
		{"a store failure beats a bare kind", errors.Join(failure.ErrNotFound, storage.ErrUnavailable), failure.ErrUnavailable, 503, "the Gatehouse store is unavailable", false},
		{"unclassified", io.ErrUnexpectedEOF, nil, 500, "internal error", false},
		{"classified without a kind", failure.New(nil, "the admin API failed"), nil, 500, "the admin API failed", false},
		{"not found in the store is internal", storage.ErrNotFound, nil, 500, "internal error", false},
	}
	for _, c := range cases {
		if got := failure.Status(c.err); got != c.status {
			t.Errorf("%s: Status %d, want %d", c.name, got, c.status)
		}
		if got := failure.Message(c.err); got != c.message {
			t.Errorf("%s: Message %q, want %q", c.name, got, c.message)
		}
		if got := failure.IsCallerError(c.err); got != c.caller {
			t.Errorf("%s: IsCallerError %v, want %v", c.name, got, c.caller)
		}
		if c.kind != nil && !errors.Is(c.err, c.kind) {
			t.Errorf("%s: errors.Is(err, %v) is false", c.name, c.kind)
		}
	}
	if failure.IsCallerError(nil) {
		t.Error("IsCallerError(nil) is true")
	}
}

// TestKindsAreDistinct: no classified error is of two kinds, so a test
// for one kind never matches another.
func TestKindsAreDistinct(t *testing.T) {
	kinds := []error{failure.ErrInvalid, failure.ErrUnauthenticated, failure.ErrForbidden, failure.ErrNotFound,
		failure.ErrConflict, failure.ErrThrottled, failure.ErrTooEarly, failure.ErrUnavailable}
	for _, k := range kinds {
		err := failure.New(k, "x")
		for _, other := range kinds {
			if other != k && errors.Is(err, other) {
				t.Errorf("an error of kind %v is also %v", k, other)
			}
		}
	}
}

// TestForStatusInvertsStatus: the console reads the admin API's answers
// back into the same kinds.
func TestForStatusInvertsStatus(t *testing.T) {
	for _, k := range []error{failure.ErrInvalid, failure.ErrUnauthenticated, failure.ErrForbidden, failure.ErrNotFound,
		failure.ErrConflict, failure.ErrThrottled, failure.ErrTooEarly, failure.ErrUnavailable} {
		status := failure.Status(failure.New(k, "x"))
		if got := failure.ForStatus(status); got != k {
			t.Errorf("ForStatus(%d) = %v, want %v", status, got, k)
		}
	}
	for _, status := range []int{500, 418, 302} {
		if got := failure.ForStatus(status); got != nil {
			t.Errorf("ForStatus(%d) = %v, want nil (internal)", status, got)
		}
		if got := failure.Status(failure.New(failure.ForStatus(status), "x")); got != 500 {
			t.Errorf("an answer of %d read back renders as %d, want 500", status, got)
		}
	}
}
