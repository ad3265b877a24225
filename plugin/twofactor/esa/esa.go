// Package esa serves the ESET Secure Authentication API v1 on top of
// Gatehouse's second factors, unchanged for its existing clients:
//
//	POST /auth/v1/start2fa                 {"username"}
//	POST /auth/v1/authenticate             {"username","otp"}
//	GET  /manage/users/v1/profile/{username}
//	POST /manage/users/v1/profile          {"username"}
//	POST /manage/users/v1/unlock           {"username"}
//	POST /manage/users/v1/deprovision      {"username"}
//	POST /manage/users/v1/provisionmobileapp    {"username"}
//	POST /manage/users/v1/provisiontextmessage  {"username"}
//
// Requests carry HTTP Basic API credentials, each enabled for the Auth API,
// the User Management API or both. HTTP-level errors have an empty body:
// 401 without credentials, 400 for a malformed Authorization header, 403
// for wrong credentials or an API they are not enabled for, 500 on a fatal
// error. API errors are HTTP 200 with "error" set to ERROR_USER_NOT_FOUND
// or ERROR_FAULT and a message.
package esa

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/guard"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/smallbody"
	"github.com/gatehouse-auth/gatehouse/internal/strictjson"
	"github.com/gatehouse-auth/gatehouse/plugin/basic"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
)

// credentialKind names an ESA API credential in audit events
// ("esa_api:<name>").
const credentialKind = "esa_api"

// Path prefixes of the two APIs.
const (
	AuthPrefix   = "/auth/v1/"
	ManagePrefix = "/manage/users/v1/"
	// profileEndpoint is the profile's endpoint under ManagePrefix,
	// followed by "/{username}" in the GET form.
	profileEndpoint = "profile"
	profilePath     = ManagePrefix + profileEndpoint + "/"
)

// The ESA error codes.
const (
	ErrorNone         = "ERROR_NONE"
	ErrorUserNotFound = "ERROR_USER_NOT_FOUND"
	ErrorFault        = "ERROR_FAULT"
)

// MaxBodyBytes caps a request body.
const MaxBodyBytes = 64 << 10

// Handler serves the ESA API.
type Handler struct {
	svc       *twofactor.Service
	engine    *engine.Engine
	creds     *Credentials
	portalURL string
}

// Options configure a Handler.
type Options struct {
	// PortalURL is the base URL of the login portal (https://host[:port])
	// that installation_url links point to. provisionmobileapp answers
	// ERROR_FAULT without it.
	PortalURL string
}

// New returns the ESA API handler.
func New(svc *twofactor.Service, opts Options) (*Handler, error) {
	portalURL, err := CheckPortalURL(opts.PortalURL)
	if err != nil {
		return nil, err
	}
	e := svc.Engine()
	return &Handler{svc: svc, engine: e, creds: NewCredentials(e), portalURL: portalURL}, nil
}

// CheckPortalURL validates a portal base URL (empty is allowed) and
// returns it without a trailing slash.
func CheckPortalURL(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("portal_url must be a base URL such as https://login.example.com:8443, not %q", s)
	}
	return strings.TrimSuffix(s, "/"), nil
}

// Handles reports whether path belongs to the ESA API, in any case
// (route).
func Handles(path string) bool {
	_, _, ok := route(path)
	return ok
}

// route splits a request path into the API it belongs to and the endpoint
// it names, the part after AuthPrefix or ManagePrefix without one trailing
// slash. Paths match as the .NET service routes them: in any (ASCII) case,
// with or without that slash, so "/AUTH/v1/Start2FA/" is start2fa; the
// endpoint keeps the path's case (a profile's username is in it). ok is
// false for a path of neither API.
func route(path string) (api API, endpoint string, ok bool) {
	switch {
	case hasPrefixFold(path, AuthPrefix):
		api, endpoint = AuthAPI, path[len(AuthPrefix):]
	case hasPrefixFold(path, ManagePrefix):
		api, endpoint = UserManagementAPI, path[len(ManagePrefix):]
	default:
		return 0, "", false
	}
	return api, strings.TrimSuffix(endpoint, "/"), true
}

// hasPrefixFold reports whether s starts with prefix, an ASCII string, in
// any case. Only ASCII matches: a string of prefix's length in bytes that
// folds to it holds no wider rune (the Kelvin sign folds to "k" in three
// bytes).
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// is reports whether endpoint is name, an ASCII endpoint name, in any
// case.
func is(endpoint, name string) bool {
	return len(endpoint) == len(name) && strings.EqualFold(endpoint, name)
}

// ServeHTTP implements http.Handler for paths where Handles is true.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if guard.EarlyData(r) {
		// Replayable (guard.EarlyData): a start2fa sent again would send
		// another SMS. The client sends it again on the completed handshake.
		h.svc.Record(r, audit.Event{Kind: audit.KindRequest, Credential: credentialKind, Outcome: audit.OutcomeDenied, Reason: guard.ErrEarlyData.Reason()})
		emptyStatus(w, r, http.StatusTooEarly)
		return
	}
	api, endpoint, _ := route(r.URL.Path)
	cred, status := h.authorize(r, api)
	if status != 0 {
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="ESA API"`)
		}
		emptyStatus(w, r, status)
		return
	}
	c := &call{h: h, w: w, r: r, cred: cred}
	auth, manage := api == AuthAPI, api == UserManagementAPI
	switch {
	case auth && is(endpoint, "start2fa"):
		c.start2fa()
	case auth && is(endpoint, "authenticate"):
		c.authenticate()
	case manage && hasPrefixFold(endpoint, profileEndpoint+"/"):
		c.profile()
	case manage && is(endpoint, profileEndpoint):
		c.profileOfBody()
	case manage && is(endpoint, "unlock"):
		c.manage("user unlocked", c.h.svc.Unlock, false)
	case manage && is(endpoint, "deprovision"):
		c.manage("second factors removed", c.h.svc.Deprovision, false)
	case manage && is(endpoint, "provisionmobileapp"):
		c.provisionMobileApp()
	case manage && is(endpoint, "provisiontextmessage"):
		c.manage("SMS codes enabled", c.h.svc.EnrolSMS, true)
	default:
		emptyStatus(w, r, http.StatusNotFound)
	}
}

// emptyStatus answers an HTTP-level error with an empty body. It reads (a
// bounded part of) the request body first: an HTTP/2 client still sending
// it would otherwise see its stream reset instead of the answer.
func emptyStatus(w http.ResponseWriter, r *http.Request, status int) {
	smallbody.Drain(w, r, MaxBodyBytes) // the status is the answer, read or not
	writeEmpty(w, status)
}

// writeEmpty answers status with an empty body.
func writeEmpty(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Length", "0")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
}

// authorize checks the API credentials; a non-zero status refuses.
func (h *Handler) authorize(r *http.Request, api API) (*Credential, int) {
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		h.svc.Record(r, audit.Event{Kind: audit.KindRequest, Credential: credentialKind, Outcome: audit.OutcomeDenied, Reason: "no ESA API credentials"})
		return nil, http.StatusUnauthorized
	}
	username, password, ok := basic.ParseAuthorization(values[0])
	if !ok || len(values) > 1 {
		h.svc.Record(r, audit.Event{Kind: audit.KindRequest, Credential: credentialKind, Outcome: audit.OutcomeDenied,
			Reason: "malformed ESA API credentials (HTTP Basic, once)"})
		return nil, http.StatusBadRequest
	}
	cred, err := h.creds.Check(r.Context(), username, password)
	switch {
	case errors.Is(err, errBadCredentials):
		// A refused request, like the data plane's: summarised past
		// audit_refusals_per_minute, as anyone can send one.
		h.svc.Record(r, audit.Event{Kind: audit.KindRequest, Credential: credentialKind, Outcome: audit.OutcomeDenied, Reason: "unknown ESA API credentials"})
		return nil, http.StatusForbidden
	case err != nil:
		h.engine.LogFailure("ESA API: checking credentials", err)
		return nil, http.StatusInternalServerError
	case !cred.enabled(api):
		h.svc.Record(r, audit.Event{Kind: audit.KindRequest, Credential: audit.Credential(credentialKind, cred.Name), Outcome: audit.OutcomeDenied,
			Reason: "ESA API credential not enabled for this API"})
		return nil, http.StatusForbidden
	}
	return cred, 0
}

// Request is an ESA request body. Its member names match in any case, as
// the .NET service's JSON binding does.
type Request struct {
	// Username is the "username" member: the Gatehouse account concerned.
	Username string `json:"username"`
	// OTP is the "otp" member: the one-time code to verify; empty when
	// absent.
	OTP string `json:"otp"`
}

// wireRequest is a Request as sent: its members' JSON values.
type wireRequest struct {
	Username json.RawMessage `json:"username"`
	OTP      json.RawMessage `json:"otp"`
}

// ParseRequest decodes a request body: one JSON object whose "username"
// and "otp" members, when present, are strings or whole numbers (a .NET
// client's int code, 123456, is "123456", as the .NET service's JSON
// binding reads it into its string member). Member names match in any
// case ("USERNAME" is "username", as for the real ESA), and no member
// appears twice in any object of the body, in any case (strictjson), so no
// other JSON parser reads a different request from the same bytes; other
// members are ignored, as ESA clients may send more than this API reads.
func ParseRequest(body []byte) (Request, error) {
	// A UTF-8 byte order mark, which .NET's StreamWriter(…, Encoding.UTF8)
	// writes before the JSON, is no part of it.
	body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))
	if !bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("{")) {
		return Request{}, errors.New("the request body must be a JSON object")
	}
	var wire wireRequest
	err := strictjson.Decode(body, &wire, strictjson.IgnoreUnknownAnyCase)
	var key *strictjson.KeyError
	switch {
	case err == nil:
		var req Request
		if req.Username, err = memberText("username", wire.Username); err != nil {
			return Request{}, err
		}
		if req.OTP, err = memberText("otp", wire.OTP); err != nil {
			return Request{}, err
		}
		return req, nil
	case errors.As(err, &key):
		return Request{}, key
	case errors.Is(err, strictjson.ErrTrailing):
		return Request{}, errors.New("the request body holds more than one JSON value")
	default:
		return Request{}, errors.New("the request body is not valid JSON")
	}
}

// memberText is the text of the member name's JSON value: a string, the
// digits of a whole number (no sign, fraction or exponent), or "" for an
// absent or null member.
func memberText(name string, value json.RawMessage) (string, error) {
	if len(value) == 0 || string(value) == "null" {
		return "", nil
	}
	if value[0] == '"' {
		var s string
		err := json.Unmarshal(value, &s)
		return s, err // a string strictjson.Decode read: err is nil
	}
	if strings.Trim(string(value), "0123456789") == "" {
		return string(value), nil
	}
	return "", fmt.Errorf("field %q must be a string", name)
}

// call is one API request being served.
type call struct {
	h    *Handler
	w    http.ResponseWriter
	r    *http.Request
	cred *Credential
	// asked is the username the request's body named (user), as sent.
	asked string
}

// reply is the error part every answer carries. Strings in ESA answers are
// never null: an absent message is "".
type reply struct {
	Error        string `json:"error"`
	ErrorMessage string `json:"error_message"`
}

func ok() reply { return reply{Error: ErrorNone} }

func fault(msg string) reply { return reply{Error: ErrorFault, ErrorMessage: msg} }

func (c *call) write(v any) {
	body, err := json.Marshal(v)
	if err != nil {
		c.fatal(err)
		return
	}
	c.w.Header().Set("Content-Type", "application/json; charset=utf-8")
	c.w.Header().Set("Cache-Control", "no-store")
	c.w.Write(append(body, '\n'))
}

// fatal answers 500 with an empty body.
func (c *call) fatal(err error) {
	c.h.engine.Logger.Error("ESA API request failed", zap.String("path", c.r.URL.Path), zap.Error(err))
	emptyStatus(c.w, c.r, http.StatusInternalServerError)
}

// user reads the JSON body of a POST endpoint and resolves its user.
// When it returns nil, the answer (405, ERROR_FAULT, ERROR_USER_NOT_FOUND
// or 500) was written — API errors through answer, which wraps the error
// reply into the endpoint's response shape.
func (c *call) user(answer func(reply)) (*account.User, Request) {
	if c.r.Method != http.MethodPost {
		c.w.Header().Set("Allow", http.MethodPost)
		emptyStatus(c.w, c.r, http.StatusMethodNotAllowed)
		return nil, Request{}
	}
	body, err := smallbody.Read(c.w, c.r, MaxBodyBytes)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			answer(fault(fmt.Sprintf("the request body exceeds %d bytes", MaxBodyBytes)))
			return nil, Request{}
		}
		writeEmpty(c.w, http.StatusBadRequest) // unreadable, or too slow: nothing more is read
		return nil, Request{}
	}
	req, err := ParseRequest(body)
	if err != nil {
		answer(fault(err.Error()))
		return nil, req
	}
	c.asked = req.Username
	return c.lookup(req.Username, answer), req
}

// lookup resolves a username like user does. A username qualified with
// the configured default domain (`DOMAIN\user`, `user@domain`) names the
// account user (account.StripDomain; one qualified twice names none).
func (c *call) lookup(username string, answer func(reply)) *account.User {
	if username == "" {
		answer(fault("username is required"))
		return nil
	}
	u, err := (*account.User)(nil), failure.NotFound("user %q not found", username)
	if name, stripErr := account.StripDomain(username, c.h.engine.Config.DefaultDomain); stripErr == nil {
		u, err = c.h.engine.Accounts.User(c.r.Context(), name)
	}
	if errors.Is(err, failure.ErrNotFound) {
		// Audited, or an API client could look for names without a trace
		// (the name as sent, cut to 64 bytes).
		name := username
		if len(name) > 64 {
			name = strings.ToValidUTF8(name[:64], "") + "…"
		}
		c.auditUnbounded("", "no such user: "+name)
		answer(reply{Error: ErrorUserNotFound, ErrorMessage: "user " + username + " not found"})
		return nil
	}
	if refusal, ok := identity.AsRefusal(err); ok {
		// The account may not be judged (a directory account several
		// records of an older version contest): a fault the client
		// refuses, never a 500 it may take for "server down, let in".
		answer(fault(refusal.Reason()))
		return nil
	}
	if failure.IsCallerError(err) {
		// A directory account given no record under its name (beside
		// its '+'/space twin, or with too many '+' signs): a fault that
		// says why, as the admin API's 400 or 409 does, not a 500 the
		// client retries and Caddy's log records as a failure of its own.
		answer(fault(failure.Message(err)))
		return nil
	}
	if err != nil {
		c.fatal(err)
		return nil
	}
	return u
}

// fail answers err: a refused operation is ERROR_FAULT with its message,
// anything else (a store failure) a 500.
func (c *call) fail(err error, answer func(reply)) {
	if failure.IsCallerError(err) || errors.Is(err, twofactor.ErrSMSDelivery) {
		answer(fault(smsRefusal(err)))
		return
	}
	c.fatal(err)
}

// smsRefusal is the message of a refused operation (fail): the refusal's,
// or the SMS gateway's failure, never more of it.
func smsRefusal(err error) string {
	if errors.Is(err, twofactor.ErrSMSDelivery) {
		return twofactor.ErrSMSDelivery.Error()
	}
	return failure.Message(err)
}

func (c *call) audit(username string, outcome, reason string) {
	c.h.svc.Record(c.r, audit.Event{Username: username, Credential: audit.Credential(credentialKind, c.cred.Name), Outcome: outcome, Reason: reason})
}

// auditUnbounded records a failure that the caller may repeat without
// end, as nothing counts it towards a lockout (no code was checked, or
// no text sent): past audit_refusals_per_minute it is summarised.
func (c *call) auditUnbounded(username, reason string) {
	c.h.svc.Record(c.r, audit.Event{Username: username, Credential: audit.Credential(credentialKind, c.cred.Name), Outcome: audit.OutcomeFailure,
		Reason: reason, Summarise: audit.SummariseAlways})
}

// typeNames is never nil, so an empty list is [] in JSON.
func typeNames(types []twofactor.Type) []twofactor.Type {
	if types == nil {
		return []twofactor.Type{}
	}
	return types
}

type start2faResponse struct {
	ExpectedOTP []twofactor.Type `json:"expected_otp"`
	reply
}

func (c *call) start2fa() {
	out := start2faResponse{ExpectedOTP: []twofactor.Type{}}
	answer := func(r reply) { out.reply = r; c.write(out) }
	u, _ := c.user(answer)
	if u == nil {
		return
	}
	if !active(u, answer) {
		return
	}
	ctx := c.r.Context()
	types, err := c.h.svc.Types(ctx, u)
	if err != nil {
		c.fatal(err)
		return
	}
	out.ExpectedOTP = typeNames(types)
	if !slices.Contains(types, twofactor.TypeSMS) {
		answer(ok())
		return
	}
	locked, err := c.h.svc.Locked(ctx, u)
	if err != nil {
		c.fatal(err)
		return
	}
	if locked {
		answer(reply{Error: ErrorNone, ErrorMessage: twofactor.ReasonLocked + "; no SMS code was sent"})
		return
	}
	if err := c.h.svc.SendCode(ctx, u); err != nil {
		c.auditUnbounded(u.Username, "sending the SMS code failed")
		if len(types) > 1 && (failure.IsCallerError(err) || errors.Is(err, twofactor.ErrSMSDelivery)) {
			// The user's other factors still work: a client that asks
			// for a code only on ERROR_NONE must not refuse them.
			answer(reply{Error: ErrorNone, ErrorMessage: "no SMS code was sent (" + smsRefusal(err) + "); a code of another factor works"})
			return
		}
		c.fail(err, answer)
		return
	}
	c.audit(u.Username, audit.OutcomeSuccess, "SMS code sent")
	answer(ok())
}

type authenticateResponse struct {
	Authenticated bool `json:"authenticated"`
	reply
}

func (c *call) authenticate() {
	var out authenticateResponse
	answer := func(r reply) { out.reply = r; c.write(out) }
	u, req := c.user(answer)
	if u == nil {
		return
	}
	if req.OTP == "" {
		answer(fault("otp is required"))
		return
	}
	res, err := c.h.svc.Verify(c.r, u, req.OTP)
	if err != nil {
		c.fatal(err)
		return
	}
	if res.OK {
		c.audit(u.Username, audit.OutcomeSuccess, "second factor accepted ("+string(res.Type)+")")
		out.Authenticated = true
		answer(ok())
		return
	}
	switch res.Reason {
	case twofactor.ReasonLocked, twofactor.ReasonBusy, twofactor.ReasonBlocked, twofactor.ReasonNotEnabled: // no code was checked
		c.auditUnbounded(u.Username, res.Reason)
	default: // a code checked, which the lockout counts
		c.audit(u.Username, audit.OutcomeFailure, res.Reason)
	}
	answer(reply{Error: ErrorNone, ErrorMessage: res.Reason})
}

// esaTime formats a time as the ESA profile does: UTC, no zone, seconds.
type esaTime struct{ t *time.Time }

// MarshalJSON implements json.Marshaler: "2014-01-01T00:00:00" or null.
func (e esaTime) MarshalJSON() ([]byte, error) {
	if e.t == nil {
		return []byte("null"), nil
	}
	return []byte(`"` + e.t.UTC().Format("2006-01-02T15:04:05") + `"`), nil
}

// profileResponse is a user's profile. An unknown user's profile echoes
// the username asked for; a user without a mobile number has "".
type profileResponse struct {
	Username            string           `json:"username"`
	MobileNumber        string           `json:"mobile_number"`
	IsLocked            bool             `json:"is_locked"`
	LastSuccess         esaTime          `json:"last_success"`
	LastFailure         esaTime          `json:"last_failure"`
	ConsecutiveFailures int64            `json:"consecutive_failures"`
	CredentialType      []twofactor.Type `json:"credential_type"`
	reply
}

// profile is GET /manage/users/v1/profile/{username}, the contract's
// form.
func (c *call) profile() {
	if c.r.Method != http.MethodGet && c.r.Method != http.MethodHead {
		c.w.Header().Set("Allow", "GET, HEAD")
		emptyStatus(c.w, c.r, http.StatusMethodNotAllowed)
		return
	}
	out := profileResponse{CredentialType: []twofactor.Type{}}
	answer := func(r reply) { out.reply = r; c.write(out) }
	// The username as escaped in the path (route matched the rest in any
	// case, and a trailing slash may follow it).
	escaped := c.r.URL.EscapedPath()
	if hasPrefixFold(escaped, profilePath) {
		escaped = strings.TrimSuffix(escaped[len(profilePath):], "/")
	}
	username, err := url.PathUnescape(escaped)
	if err != nil || strings.Contains(escaped, "/") {
		answer(fault("the profile path must be " + profilePath + "{username}, with the username URL-encoded"))
		return
	}
	out.Username = username
	c.writeProfile(&out, c.lookup(username, answer), answer)
}

// profileOfBody is POST /manage/users/v1/profile with {"username"}: the
// same answer, for clients that, as ESET documents its API, POST every
// call as JSON.
func (c *call) profileOfBody() {
	out := profileResponse{CredentialType: []twofactor.Type{}}
	answer := func(r reply) {
		if out.Username == "" { // a refusal: the name as asked, as the GET form echoes it
			out.Username = c.asked
		}
		out.reply = r
		c.write(out)
	}
	u, _ := c.user(answer)
	c.writeProfile(&out, u, answer)
}

// writeProfile answers the profile of u into out; nothing when u is nil
// (the answer was written).
func (c *call) writeProfile(out *profileResponse, u *account.User, answer func(reply)) {
	if u == nil || !active(u, answer) {
		return
	}
	st, err := c.h.svc.Status(c.r.Context(), u)
	if err != nil {
		c.fatal(err)
		return
	}
	out.Username, out.MobileNumber = u.Username, u.MobileNumber // never the directory's, which no code goes to
	out.IsLocked, out.ConsecutiveFailures = st.Locked, st.ConsecutiveFailures
	out.LastSuccess, out.LastFailure = esaTime{st.LastSuccess}, esaTime{st.LastFailure}
	out.CredentialType = typeNames(st.Types)
	answer(ok())
}

// active reports whether u may sign in, and else answers a fault: never
// "no second factor" (start2fa's [], profile's credential_type), which
// an ESA client takes for "let in on the password alone", nor a new
// factor for an account that is blocked — by an administrator, by its
// directory, or as one of several records an older version made for one
// directory entry, whose factors tell an administrator which to keep.
// Unlocking and removing factors stay open (an offboarding flow blocks,
// then deprovisions).
func active(u *account.User, answer func(reply)) bool {
	if !u.Active() {
		answer(fault(twofactor.ReasonBlocked))
	}
	return u.Active()
}

// manage runs a user-management operation that answers only the error
// part; one that enrols a factor is refused for an account that is not
// active.
func (c *call) manage(what string, op func(context.Context, *account.User) error, enrols bool) {
	answer := func(r reply) { c.write(r) }
	u, _ := c.user(answer)
	if u == nil || enrols && !active(u, answer) {
		return
	}
	if err := op(c.r.Context(), u); err != nil {
		c.fail(err, answer)
		return
	}
	c.audit(u.Username, audit.OutcomeSuccess, what)
	answer(ok())
}

// provisionResponse carries the enrolment link; "" when none was made.
type provisionResponse struct {
	InstallationURL string `json:"installation_url"`
	reply
}

func (c *call) provisionMobileApp() {
	var out provisionResponse
	answer := func(r reply) { out.reply = r; c.write(out) }
	u, _ := c.user(answer)
	if u == nil || !active(u, answer) {
		return
	}
	if c.h.portalURL == "" {
		answer(fault("provisionmobileapp needs the login portal's address: set portal_url in the gatehouse_esa directive"))
		return
	}
	ctx := c.r.Context()
	en, err := c.h.svc.EnrolApp(ctx, u, nil)
	if err != nil {
		c.fail(err, answer)
		return
	}
	token, err := c.h.svc.NewEnrolmentLink(ctx, en, u)
	if err != nil {
		c.fatal(err)
		return
	}
	link := c.h.portalURL + twofactor.EnrolPath + "?t=" + token
	out.InstallationURL = link
	c.audit(u.Username, audit.OutcomeSuccess, "authenticator app provisioned; enrolment link issued")
	if u.TextNumber() == "" || !c.h.svc.SMSAvailable() {
		msg := "the installation URL was not sent by SMS: the user has no mobile number or no SMS sender is configured"
		answer(reply{Error: ErrorNone, ErrorMessage: msg})
		return
	}
	if err := c.h.svc.SendText(ctx, u, "Set up two-factor authentication in your authenticator app: "+link); err != nil {
		c.fail(err, answer)
		return
	}
	answer(ok())
}
