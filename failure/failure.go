// Package failure is Gatehouse's one error vocabulary: a small set of
// sentinel kinds (ErrInvalid, ErrNotFound, ErrConflict, …) that domain code
// classifies its errors with and tests with errors.Is, and the one rule by
// which every front end renders a kind as an HTTP status.
//
// # Classifying
//
// Domain code (account, session, the credential plugins) returns a
// classified error made by a constructor (Invalid, NotFound, Conflict,
// Throttled, or New with a kind) whose message is safe to show to the
// caller: it says what was wrong and what to change, and never carries a
// secret or an internal detail. The data plane's refusals
// (identity.Refusal) carry a kind in the same way. A store failure wraps
// storage.ErrUnavailable, which is ErrUnavailable. Anything else is
// unclassified: an internal error, answered with a generic message while
// the details go to the log only.
//
// Domain code asks what happened with errors.Is(err, failure.ErrNotFound),
// never by an HTTP status: statuses are decided only where an answer is
// rendered, by Status (the admin API's writer, the data plane's refusal
// in the engine, the login portal, the console; the ESA API answers in
// its own protocol). A test in this package keeps Status out of domain
// code and out of comparisons.
//
// # Wrapping: %w or %v
//
// Wrap with %w when a caller may need to tell the cause apart: a
// classified error, storage.ErrUnavailable, storage.ErrNotFound or another
// sentinel of this module. Wrapping keeps the kind and the client message:
// fmt.Errorf("loading connector %q: %w", name, err) of a NotFound error is
// still a 404 with the constructor's message, and of a store failure
// still a 503. Format with %v an error from outside the module (a
// library, the operating system) whose type callers must not come to
// depend on, and the cause of a classified error made from it
// (Invalid("bad key: %v", err)), which keeps only its text. A classified
// error's message is the caller's to read: put in it only what the caller
// sent or may know.
package failure

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gatehouse-auth/gatehouse/storage"
)

// The kinds. Each is a sentinel that errors.Is finds in a classified
// error's chain; the comment says how front ends render it.
var (
	// ErrInvalid is bad input: a malformed or inconsistent request (400).
	ErrInvalid = errors.New("invalid request")
	// ErrUnauthenticated is a missing, unknown or no longer valid
	// credential (401).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden is a valid credential whose account may not do what
	// was asked (403).
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound is an unknown object named by the request (404).
	ErrNotFound = errors.New("not found")
	// ErrConflict is a request at odds with the current state, such as a
	// name that is taken (409).
	ErrConflict = errors.New("conflict")
	// ErrThrottled is a request refused for now to bound attempts or
	// cost; the same request may succeed later (429).
	ErrThrottled = errors.New("throttled")
	// ErrTooEarly is a request that came in TLS early data (0-RTT), which
	// can be replayed and whose client address is not yet verified; the
	// same request succeeds once the handshake is complete (425, RFC 8470).
	ErrTooEarly = errors.New("too early")
	// ErrUnavailable is a failure of the backing store itself; it is
	// storage.ErrUnavailable, so every store error is of this kind (503).
	// Callers fail closed on it.
	ErrUnavailable = storage.ErrUnavailable
)

// rendering is how a kind is answered: its HTTP status, and the message
// for an error of the kind that carries none of its own (a bare sentinel).
type rendering struct {
	kind    error
	status  int
	message string
}

// renderings lists every kind Status knows (and storage.ErrConflict), in the order they are looked
// for in a chain without a classified error: a store failure first, so a
// chain that holds one fails closed.
var renderings = []rendering{
	{ErrUnavailable, http.StatusServiceUnavailable, "the Gatehouse store is unavailable"},
	{ErrInvalid, http.StatusBadRequest, "invalid request"},
	{ErrUnauthenticated, http.StatusUnauthorized, "unauthenticated"},
	{ErrForbidden, http.StatusForbidden, "forbidden"},
	{ErrNotFound, http.StatusNotFound, "not found"},
	{ErrConflict, http.StatusConflict, "conflict"},
	// The store's own conflict: an optimistic update that kept losing to
	// other writers (storage.Update). Callers usually say which record;
	// one that does not is still a 409, never a 500.
	{storage.ErrConflict, http.StatusConflict, "the record is being changed concurrently; try again"},
	{ErrThrottled, http.StatusTooManyRequests, "too many requests; try again later"},
	{ErrTooEarly, http.StatusTooEarly, "sent in TLS early data; send it again once the handshake is complete"},
}

// Error is a classified error: a kind and a message safe to return to the
// caller.
type Error struct {
	// Kind is one of the kinds of this package (ErrInvalid, …).
	Kind error
	// Message says what went wrong, without secrets.
	Message string
}

// Error implements error.
func (e *Error) Error() string { return e.Message }

// Unwrap returns the kind, so errors.Is(err, failure.ErrNotFound) holds
// for a NotFound error.
func (e *Error) Unwrap() error { return e.Kind }

// New returns an error of kind with message, which must be safe to show
// to the caller.
func New(kind error, message string) *Error { return &Error{Kind: kind, Message: message} }

// Invalid returns an ErrInvalid error (bad input).
func Invalid(format string, args ...any) error { return New(ErrInvalid, fmt.Sprintf(format, args...)) }

// NotFound returns an ErrNotFound error (an unknown object).
func NotFound(format string, args ...any) error {
	return New(ErrNotFound, fmt.Sprintf(format, args...))
}

// Conflict returns an ErrConflict error (at odds with the current state).
func Conflict(format string, args ...any) error {
	return New(ErrConflict, fmt.Sprintf(format, args...))
}

// Throttled returns an ErrThrottled error (refused for now).
func Throttled(format string, args ...any) error {
	return New(ErrThrottled, fmt.Sprintf(format, args...))
}

// find returns the first classified error in err's chain and the
// rendering of its kind; for a chain with no classified error, the
// rendering of the first kind found, with a nil *Error.
func find(err error) (*Error, rendering, bool) {
	var e *Error
	if errors.As(err, &e) {
		for _, r := range renderings {
			if errors.Is(e.Kind, r.kind) {
				return e, r, true
			}
		}
		return e, rendering{status: http.StatusInternalServerError}, true
	}
	for _, r := range renderings {
		if errors.Is(err, r.kind) {
			return nil, r, true
		}
	}
	return nil, rendering{}, false
}

// Status is the HTTP status a front end answers err with: its kind's
// (see the kinds), 500 for an unclassified error. Only the code that
// renders an answer calls it; domain code tests kinds with errors.Is.
func Status(err error) int {
	if _, r, ok := find(err); ok {
		return r.status
	}
	return http.StatusInternalServerError
}

// Message is the client-safe text of err: the classified message, the
// kind's own for a bare kind (a store failure: "the Gatehouse store is
// unavailable"), or a generic one for unclassified errors (which may
// carry internal details).
func Message(err error) string {
	e, r, ok := find(err)
	switch {
	case e != nil:
		return e.Message
	case ok:
		return r.message
	default:
		return "internal error"
	}
}

// IsCallerError reports whether err is of a kind the caller caused and
// can act on (bad input, an unknown object, a conflict, a refused
// credential, throttling), so that its Message is the answer; false for a
// store failure or an internal error, which a front end answers
// generically and logs.
func IsCallerError(err error) bool {
	_, r, ok := find(err)
	return ok && r.status < http.StatusInternalServerError
}

// ForStatus is the kind an HTTP status renders: the inverse of Status,
// for a front end that reads another's answer (the console calling the
// admin API in-process). A status of no kind gives nil: an internal
// error.
func ForStatus(status int) error {
	for _, r := range renderings {
		if r.status == status {
			return r.kind
		}
	}
	return nil
}
