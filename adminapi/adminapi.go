// Package adminapi serves Gatehouse's management API under /gatehouse/ on
// Caddy's admin endpoint: JSON in and out, errors as {"error": "..."} with
// 400 for bad input, 404 for unknown objects, 409 for conflicts and 503
// when the store is down. Every change is written to the audit log.
package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/internal/strictjson"
)

// MaxBodyBytes caps the size of a request body.
const MaxBodyBytes = 1 << 20

// Route is one admin endpoint.
type Route struct {
	// Pattern is a net/http ServeMux pattern, e.g. "POST /gatehouse/users".
	Pattern string
	// Handle serves it; a returned error is written as the error response.
	Handle func(w http.ResponseWriter, r *http.Request) error
}

// Provider is implemented by every part of Gatehouse that has admin routes.
type Provider interface {
	AdminRoutes() []Route
}

// Handler is the admin API: the routes of every provider on one mux.
type Handler struct {
	mux      *http.ServeMux
	patterns []string
}

// NewHandler builds the admin API from the routes of every provider.
func NewHandler(e *engine.Engine, providers ...Provider) *Handler {
	h := &Handler{mux: http.NewServeMux()}
	for _, p := range providers {
		for _, rt := range p.AdminRoutes() {
			h.mux.Handle(rt.Pattern, handler(e, rt.Handle))
			h.patterns = append(h.patterns, rt.Pattern)
		}
	}
	h.mux.HandleFunc("/gatehouse/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, failure.NotFound("no Gatehouse admin endpoint %s %s", r.Method, r.URL.Path))
	})
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Patterns lists the registered routes' patterns ("METHOD /path"), in
// registration order: the operations the API's OpenAPI document must
// describe.
func (h *Handler) Patterns() []string { return slices.Clone(h.patterns) }

func handler(e *engine.Engine, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		n := &note{username: r.PathValue("username")}
		r = r.WithContext(context.WithValue(r.Context(), noteKey{}, n))
		err := h(w, r)
		if err != nil {
			WriteError(w, err)
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			ev := audit.Event{Kind: "admin", RemoteIP: e.ClientIP(r), Method: r.Method, Path: r.URL.Path,
				Outcome: audit.OutcomeSuccess, Username: n.username, Reason: n.reason, Actor: audit.ActorOf(r.Context())}
			if err != nil {
				ev.Outcome, ev.Reason = audit.OutcomeFailure, failure.Message(err)
			}
			e.Audit.Record(ev)
		}
	})
}

// note is what a handler tells its call's audit event (see Note).
type note struct{ username, reason string }

type noteKey struct{}

// Note sets the user and the reason of the audit event of admin call r
// (the user defaults to the path's {username}): who was changed and how,
// by field names and non-secret values, never a password. It does nothing
// outside an admin call.
func Note(r *http.Request, username, reason string) {
	if n, ok := r.Context().Value(noteKey{}).(*note); ok {
		n.username, n.reason = username, reason
	}
}

// WriteJSON writes v as the JSON response with status.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// WriteError writes err in Caddy's admin error shape with the status of
// its kind (failure.Status) and its client-safe message.
func WriteError(w http.ResponseWriter, err error) {
	_ = WriteJSON(w, failure.Status(err), map[string]string{"error": failure.Message(err)}) // the status is sent; nobody to tell of a failed body
}

// DecodeJSON reads the request body into v strictly: one JSON value, at
// most MaxBodyBytes, and at every nesting level each member at most once
// and named exactly (case-sensitively) like a field of v (the
// Content-Type is not checked, so a plain `curl -d` works). Errors say
// what is wrong (400).
func DecodeJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = strictjson.Decode(body, v, strictjson.RefuseUnknown)
	}
	if err != nil {
		return describeJSONError(err)
	}
	return nil
}

// DecodeOptionalJSON is DecodeJSON for endpoints whose body may be empty.
func DecodeOptionalJSON(r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	err := DecodeJSON(r, v)
	if err != nil && strings.Contains(err.Error(), "body is empty") {
		return nil
	}
	return err
}

func describeJSONError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tooBig *http.MaxBytesError
	var key *strictjson.KeyError
	switch {
	case errors.Is(err, io.EOF):
		return failure.Invalid("request body is empty; a JSON object is required")
	case errors.As(err, &syntax):
		return failure.Invalid("malformed JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return failure.Invalid("malformed JSON: unexpected end of body")
	case errors.As(err, &typ):
		return failure.Invalid("field %q must be %s, not JSON %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.As(err, &tooBig):
		return failure.Invalid("request body exceeds %d bytes", tooBig.Limit)
	case errors.As(err, &key):
		return failure.Invalid("%v", key)
	case errors.Is(err, strictjson.ErrTrailing):
		return failure.Invalid("request body holds more than one JSON value")
	default:
		return failure.Invalid("invalid JSON body: %v", err)
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	case "bool":
		return "a boolean"
	default:
		return fmt.Sprintf("a %s", strings.TrimRight(goKind, "0123456789"))
	}
}
