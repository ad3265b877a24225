package connector

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/smallbody"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// maxTokenRequestBytes bounds a token request's form body.
const maxTokenRequestBytes = 4096

// OAuth 2 error codes (RFC 6749 §5.2).
const (
	errInvalidRequest       = "invalid_request"
	errInvalidClient        = "invalid_client"
	errInvalidGrant         = "invalid_grant"
	errUnsupportedGrantType = "unsupported_grant_type"
	errUnavailable          = "temporarily_unavailable"
	errServer               = "server_error"
)

// oauthError is a refusal of the token endpoint.
type oauthError struct {
	status      int
	code        string
	description string
	// revoked says that the refusal revoked a live token pair (a refresh
	// token presented again): its audit event records that pair's end,
	// a credential's lifecycle, and is never summarised with a flood of
	// refusals nor deleted past audit_max_size.
	revoked bool
}

// Error implements error: the OAuth error code and its description.
func (e *oauthError) Error() string { return e.code + ": " + e.description }

func invalidRequest(description string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: errInvalidRequest, description: description}
}

func invalidClient(description string) *oauthError {
	return &oauthError{status: http.StatusUnauthorized, code: errInvalidClient, description: description}
}

func invalidGrant(description string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: errInvalidGrant, description: description}
}

// tokenParams are the parameters of a token request.
type tokenParams struct {
	grantType    string
	refreshToken string
}

// queryCredentials are the parameters that carry a credential: the OAuth
// endpoints refuse them in the query string, which access logs, proxies
// and browser histories keep (RFC 6749 §3.2, OAuth 2.1 §3.2.2).
var queryCredentials = []string{"refresh_token", "access_token", "token", "client_secret", "client_assertion", "password"}

// tokenQueryCredentials are the credentials the token endpoint refuses in
// the query string: all of queryCredentials but refresh_token, which
// Gatehouse's contract puts there (POST
// /gatehouse/v1/token?grant_type=refresh_token&refresh_token=R) and
// connectors built to it send there. A refresh token read from a log is
// worth nothing without the connector's private key: it is exchanged only
// on a TLS connection with the certificate it was issued to, and checked
// against that certificate before anything else, its reuse detection
// included. Caddyfile.example's log filter hides it from Caddy's logs.
var tokenQueryCredentials = []string{"access_token", "token", "client_secret", "client_assertion", "password"}

// requestParams are an OAuth endpoint's parameters: the query string's
// and an application/x-www-form-urlencoded body's.
type requestParams struct{ query, form url.Values }

// readParams parses the query string and the form body (OAuth clients send
// a form body; other parameters work in the query string too, the
// credentials named do not).
func readParams(rawQuery, contentType string, body []byte, credentials ...string) (requestParams, *oauthError) {
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return requestParams{}, invalidRequest("the query string is malformed")
	}
	for _, name := range credentials {
		if query.Has(name) {
			return requestParams{}, invalidRequest(name + " must be sent in the form body, not in the query string, where logs keep it")
		}
	}
	form := url.Values{}
	if len(body) > 0 {
		mediaType, _, err := mime.ParseMediaType(contentType)
		if err != nil || mediaType != "application/x-www-form-urlencoded" {
			return requestParams{}, invalidRequest("send the parameters as application/x-www-form-urlencoded")
		}
		if form, err = url.ParseQuery(string(body)); err != nil {
			return requestParams{}, invalidRequest("the form body is malformed")
		}
	}
	return requestParams{query, form}, nil
}

// single returns the parameter name ("" when absent), refusing one given
// more than once, in either place (RFC 6749 §3.2).
func (rp requestParams) single(name string) (string, *oauthError) {
	q, f := rp.query[name], rp.form[name]
	switch {
	case len(q)+len(f) > 1:
		return "", invalidRequest("the parameter " + name + " is given more than once")
	case len(q) == 1:
		return q[0], nil
	case len(f) == 1:
		return f[0], nil
	}
	return "", nil
}

// parseTokenParams reads a token request's parameters (readParams): the
// refresh token in the query string or the form body, once.
func parseTokenParams(rawQuery, contentType string, body []byte) (tokenParams, *oauthError) {
	var p tokenParams
	rp, oerr := readParams(rawQuery, contentType, body, tokenQueryCredentials...)
	if oerr != nil {
		return p, oerr
	}
	if p.grantType, oerr = rp.single("grant_type"); oerr != nil {
		return p, oerr
	}
	if p.refreshToken, oerr = rp.single("refresh_token"); oerr != nil {
		return p, oerr
	}
	switch p.grantType {
	case "":
		return p, invalidRequest("grant_type is required: certificate or refresh_token")
	case GrantCertificate:
		if p.refreshToken != "" {
			return p, invalidRequest("refresh_token belongs to grant_type=refresh_token")
		}
	case GrantRefreshToken:
		if p.refreshToken == "" {
			return p, invalidRequest("refresh_token is required with grant_type=refresh_token")
		}
	default:
		return p, &oauthError{status: http.StatusBadRequest, code: errUnsupportedGrantType,
			description: "grant_type must be certificate or refresh_token"}
	}
	return p, nil
}

// tokenResponse is the successful answer (RFC 6749 §5.1).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

// serveToken is the token endpoint: POST over TLS with the connector's
// client certificate, grant_type=certificate for a new token pair or
// grant_type=refresh_token&refresh_token=R to exchange a refresh token.
func (p *Plugin) serveToken(w http.ResponseWriter, r *http.Request) {
	ev := p.engine.RequestEvent(r, audit.Event{Kind: audit.KindToken, Credential: string(identity.MethodConnector)})
	out, err := p.handleToken(w, r, &ev)
	if err != nil {
		var oerr *oauthError
		if !errors.As(err, &oerr) {
			oerr = p.internalError(err)
		}
		ev.Outcome, ev.Reason = audit.OutcomeFailure, oerr.description
		if oerr.revoked {
			ev.Summarise = audit.SummariseNever
		}
		p.engine.Audit.Record(ev)
		writeOAuthError(w, oerr)
		return
	}
	ev.Outcome, ev.Reason = audit.OutcomeSuccess, "issued token pair "+out.meta.ID+" (grant "+out.meta.Grant+")"
	ev.Summarise = audit.SummariseAlways // a connector may ask in a loop: summarised in a flood
	p.engine.Audit.Record(ev)
	writeTokenAnswer(w, http.StatusOK, tokenResponse{AccessToken: out.access, TokenType: "bearer", //nolint:gosec // G117: the token endpoint's answer is the token
		ExpiresIn: int64(p.engine.Config.TokenLifetime.Seconds()), RefreshToken: out.refresh})
}

// handleToken does the work of serveToken, filling in the audit event as
// it learns who is asking.
func (p *Plugin) handleToken(w http.ResponseWriter, r *http.Request, ev *audit.Event) (issued, error) {
	body, oerr := readPost(w, r, "token")
	if oerr != nil {
		return issued{}, oerr
	}
	params, oerr := parseTokenParams(r.URL.RawQuery, r.Header.Get("Content-Type"), body)
	if oerr != nil {
		return issued{}, oerr
	}
	leaf := peerCertificate(r)
	if leaf == nil {
		return issued{}, invalidClient("present the connector's client certificate on the TLS connection")
	}
	name, err := CertificateConnector(leaf)
	if err != nil {
		return issued{}, invalidClient("the client certificate was not issued for connector use")
	}
	ev.Credential = string(identity.MethodConnector) + ":" + name
	ctx := r.Context()
	conn, err := p.liveConnector(ctx, name)
	if err != nil {
		if _, refused := identity.AsRefusal(err); refused {
			return issued{}, invalidClient("the connector " + name + " is unknown or revoked")
		}
		return issued{}, err
	}
	ev.Username = conn.Username
	if !bytes.Equal(leaf.Raw, conn.certDER) {
		return issued{}, invalidClient("the client certificate is not the current certificate of connector " + name)
	}
	if !validAt(leaf, p.now()) {
		return issued{}, invalidClient("the client certificate of connector " + name + " is expired or not yet valid")
	}
	u, err := p.engine.Accounts.User(ctx, conn.Username)
	switch {
	case errors.Is(err, failure.ErrNotFound) || (err == nil && u.ID != conn.UserID):
		return issued{}, invalidGrant("the account of connector " + name + " no longer exists")
	case err != nil:
		return issued{}, err
	case !u.Active():
		return issued{}, invalidGrant("the account of connector " + name + " is blocked")
	}
	if params.grantType == GrantCertificate {
		return p.issueForCertificate(ctx, conn, u)
	}
	return p.refresh(ctx, conn, u, params.refreshToken)
}

// readPost reads the body of a POST to the named OAuth endpoint, refusing
// another method (405) or a body over maxTokenRequestBytes.
func readPost(w http.ResponseWriter, r *http.Request, endpoint string) ([]byte, *oauthError) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, &oauthError{status: http.StatusMethodNotAllowed, code: errInvalidRequest, description: "the " + endpoint + " endpoint takes POST"}
	}
	body, err := smallbody.Read(w, r, maxTokenRequestBytes)
	if err != nil {
		return nil, invalidRequest("the request body is unreadable or larger than " + strconv.Itoa(maxTokenRequestBytes) + " bytes")
	}
	return body, nil
}

// internalError maps a store or internal failure to its OAuth answer and
// logs it (never with a secret: only the error).
func (p *Plugin) internalError(err error) *oauthError {
	p.engine.LogFailure("token endpoint", err)
	if errors.Is(err, storage.ErrUnavailable) {
		return &oauthError{status: http.StatusServiceUnavailable, code: errUnavailable, description: engine.Unavailable(err, "the token store") + " is unavailable; try again later"}
	}
	return &oauthError{status: http.StatusInternalServerError, code: errServer, description: "internal error; no token was issued"}
}

func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	writeTokenAnswer(w, e.status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{e.code, e.description})
}

// writeTokenAnswer writes v as the token endpoint's JSON answer, never to
// be cached (RFC 6749 section 5.1).
func writeTokenAnswer(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	w.Write(body) //nolint:errcheck // a client gone away mid-answer is not an error to report
}
