// Package failure classifies errors of the management plane (admin API,
// services) into the HTTP statuses the contract names: 400 for bad input,
// 404 for an unknown object, 409 for a conflict, 503 when the store is down.
package failure

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gatehouse-auth/gatehouse/storage"
)

// Error is a classified error with a message safe to return to the caller.
type Error struct {
	// Status is the HTTP status the error maps to.
	Status int
	// Message says what went wrong, without secrets.
	Message string
}

// Error implements error.
func (e *Error) Error() string { return e.Message }

// Invalid returns a 400 error.
func Invalid(format string, args ...any) error {
	return &Error{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// NotFound returns a 404 error.
func NotFound(format string, args ...any) error {
	return &Error{Status: http.StatusNotFound, Message: fmt.Sprintf(format, args...)}
}

// Conflict returns a 409 error.
func Conflict(format string, args ...any) error {
	return &Error{Status: http.StatusConflict, Message: fmt.Sprintf(format, args...)}
}

// Status maps err to an HTTP status: the classified status, 503 for a store
// failure, 500 for anything else.
func Status(err error) int {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Status
	case errors.Is(err, storage.ErrUnavailable):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// Message is the client-safe text of err: the classified message, or a
// generic one for unclassified errors (which may carry internal details).
func Message(err error) string {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Message
	case errors.Is(err, storage.ErrUnavailable):
		return "the Gatehouse store is unavailable"
	default:
		return "internal error"
	}
}
