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
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"

	"github.com/gatehouse-auth/gatehouse/account"
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
	// Query names the query parameters Handle reads. Any other is refused
	// (400) before Handle runs, and so are a parameter given twice and a
	// query that does not parse (checkQuery). An empty value is a filter
	// left open, as the contract writes the calls (?username=&kind=).
	Query []string
	// Body is true when Handle reads a request body. A route without one
	// refuses a body that says anything (400) before Handle runs: a call
	// whose body would be ignored (`{"dry_run":true}` on a purge) must not
	// change anything. `{}`, `null` and white space say nothing, and are
	// let through: clients that always send JSON send them.
	Body bool
}

// Provider is implemented by every part of Gatehouse that has admin routes.
type Provider interface {
	AdminRoutes() []Route
}

// Handler is the admin API: the routes of every provider on one mux.
type Handler struct {
	mux    *http.ServeMux
	routes []Route
}

// NewHandler builds the admin API from the routes of every provider.
func NewHandler(e *engine.Engine, providers ...Provider) *Handler {
	h := &Handler{mux: http.NewServeMux()}
	for _, p := range providers {
		for _, rt := range p.AdminRoutes() {
			h.mux.Handle(rt.Pattern, handler(e, rt))
			h.routes = append(h.routes, rt)
		}
	}
	h.mux.HandleFunc("/gatehouse/", func(w http.ResponseWriter, r *http.Request) {
		err := failure.NotFound("no Gatehouse admin endpoint %s %s", r.Method, r.URL.Path)
		WriteError(w, err)
		recordCall(e, r, &note{}, err) // a call, if to nothing: probing is worth knowing about
	})
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Routes lists the registered routes, in registration order: the
// operations the API's OpenAPI document must describe, with their query
// parameters and bodies.
func (h *Handler) Routes() []Route { return slices.Clone(h.routes) }

func handler(e *engine.Engine, rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		n := &note{username: r.PathValue("username")}
		r = r.WithContext(context.WithValue(r.Context(), noteKey{}, n))
		err := checkQuery(r.URL.RawQuery, rt.Query)
		if err == nil && n.username == "" && slices.Contains(rt.Query, "username") {
			n.username = r.URL.Query().Get("username") // a listing filtered to one user concerns that user
		}
		if err == nil && !rt.Body {
			err = refuseBody(r)
		}
		if err == nil {
			err = rt.Handle(w, r)
		}
		if err != nil {
			if !failure.IsCallerError(err) {
				e.LogFailure("answering an admin API call", err) // the answer says only "internal error"
			}
			WriteError(w, err)
		}
		if audited(r, rt) {
			recordCall(e, r, n, err)
		}
	})
}

// audited reports whether the call r to rt is audited: every call, reads
// too (the contract: every admin call is audited; who listed the users or
// read a key is worth knowing), but the audit log's own queries, which
// would fill the log they page through, and the reads the console makes
// in-process to draw a page or check a form (audit.ActorOf): a page view
// is no admin call, and any signed-in user's reloads of their own account
// page would write events without bound, past the refusal allowance,
// which counts refusals only. What the console changes is audited, with
// its actor.
func audited(r *http.Request, rt Route) bool {
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	return rt.Pattern != auditQueryPattern && !(read && audit.ActorOf(r.Context()) != "")
}

// recordCall writes the audit event of the admin call r, which err (nil
// when it succeeded) ended, about what n noted.
func recordCall(e *engine.Engine, r *http.Request, n *note, err error) {
	ev := e.RequestEvent(r, audit.Event{Kind: audit.KindAdmin, Outcome: audit.OutcomeSuccess, Username: n.username, Reason: n.reason})
	if err != nil {
		ev.Outcome, ev.Reason = audit.OutcomeFailure, failure.Message(err)
	}
	e.Audit.Record(ev)
}

// checkQuery refuses a query its endpoint would not read whole: one that
// does not parse, a parameter the endpoint does not take (allowed), or
// one given twice. A condition the server did not see must not widen what
// a call lists or deletes: ?user=alice on GET /gatehouse/tokens would
// otherwise list every user's tokens, for a script to revoke. An empty
// value stays a filter left open: the contract writes the calls so
// (GET /gatehouse/tokens?username=&connector=), and scripts send them so.
func checkQuery(raw string, allowed []string) error {
	if raw == "" {
		return nil
	}
	query, err := url.ParseQuery(raw)
	if err != nil {
		return failure.Invalid("the query could not be read (%v); escape its values (url.QueryEscape)", err)
	}
	names := slices.Sorted(maps.Keys(query))
	for _, name := range names {
		switch {
		case !slices.Contains(allowed, name):
			takes := "none"
			if len(allowed) > 0 {
				takes = strings.Join(allowed, ", ")
			}
			return failure.Invalid("unknown query parameter %q; this endpoint takes %s", name, takes)
		case len(query[name]) > 1:
			return failure.Invalid("the query parameter %s is given more than once", name)
		}
	}
	return nil
}

// refuseBody refuses a request whose body says anything, for a route that
// reads none: `{}`, `null` and white space say nothing (Route.Body).
func refuseBody(r *http.Request) error {
	if r.ContentLength == 0 {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxEmptyBody+1))
	switch strings.Join(strings.Fields(string(body)), "") {
	case "", "{}", "null":
		if len(body) <= maxEmptyBody {
			return nil
		}
	}
	return failure.Invalid("%s %s takes no request body; send none", r.Method, r.URL.Path)
}

// maxEmptyBody bounds the body refuseBody reads to see that it says
// nothing.
const maxEmptyBody = 64

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

// PathUser returns the account admin call r names by its {username}, as
// account.Service.User reads the name (EXAMPLE\alice, or another name of
// a directory account, is that account), and makes the call's audit
// event name it so.
func PathUser(r *http.Request, accounts *account.Service) (*account.User, error) {
	u, err := accounts.User(r.Context(), r.PathValue("username"))
	if err != nil {
		return nil, err
	}
	if n, ok := r.Context().Value(noteKey{}).(*note); ok {
		n.username = u.Username
	}
	return u, nil
}

// WriteJSON writes v as the JSON response with status.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	// JSON for programs, never placed in a page: an otpauth:// URI keeps
	// its "&" (which HTML escaping would write \u0026, past a copy and paste).
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
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
		return describeJSONError(err, reflect.TypeOf(v))
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

// describeJSONError says what is wrong with a body that did not decode
// into a value of type t.
func describeJSONError(err error, t reflect.Type) error {
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
	case errors.As(err, &typ) && typ.Field == "":
		return failure.Invalid("the request body must be %s, not JSON %s", jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.As(err, &typ):
		return failure.Invalid("field %q must be %s, not JSON %s", jsonField(t, typ.Field), jsonKind(typ.Type.Kind().String()), typ.Value)
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

// jsonField is the JSON path, as the client wrote it, of the Field of a
// json.UnmarshalTypeError from decoding into a value of type t:
// encoding/json names an embedded struct in it by its Go type
// ("Metadata.tags"), a member no client wrote, so such segments are left
// out.
func jsonField(t reflect.Type, field string) string {
	var kept []string
	for seg := range strings.SplitSeq(field, ".") {
		for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map) {
			t = t.Elem()
		}
		if t != nil && t.Kind() == reflect.Struct {
			if f, ok := t.FieldByName(seg); ok && f.Anonymous {
				t = f.Type
				continue
			}
			t = memberType(t, seg)
		}
		kept = append(kept, seg)
	}
	return strings.Join(kept, ".")
}

// memberType is the type of the field of struct type t that decodes the
// JSON member name (nil when none).
func memberType(t reflect.Type, name string) reflect.Type {
	for _, f := range reflect.VisibleFields(t) {
		if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag == name {
			return f.Type
		}
	}
	return nil
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
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "a whole number"
	case "float32", "float64":
		return "a number"
	default:
		return fmt.Sprintf("a %s", strings.TrimRight(goKind, "0123456789"))
	}
}
