package appkey

import (
	"net/http"
	"strings"

	"github.com/gatehouse-auth/gatehouse/guard"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/plugin"
)

// headerName is the appKey header as Go's HTTP servers (HTTP/1, 2 and 3)
// file it: they canonicalise names, so "appKey", "AppKey" and "appkey" all
// arrive as "Appkey".
const headerName = "Appkey"

// sessionHeaders ask for a session when "true", like sessionParams.
// X-Gatehouse-Session is deleted by the pipeline before any credential
// runs (it carries the identity prefix) and read back with
// guard.StrippedHeader; it is never forwarded.
var sessionHeaders = []string{"X-Gatehouse-Session", "X-Thingworx-Session"}

// The presentation refusals, allocated once.
var (
	errTwice    = identity.Unauthenticated("send the application key once: in the appKey header or the appKey query parameter")
	errQueryOff = identity.Unauthenticated("this route does not accept application keys in the query string; send the appKey header")
)

// Credential is the app_key credential kind.
type Credential struct {
	svc     *Service
	noQuery bool
}

// NewCredential returns the credential kind backed by s.
func NewCredential(s *Service) *Credential { return &Credential{svc: s} }

// Method implements plugin.Credential.
func (*Credential) Method() identity.Method { return identity.MethodAppKey }

// ForRoute implements plugin.RouteScoped: a route may turn the query form
// off. Such a route still claims a request with the appKey parameter and
// refuses it, so the key is never forwarded.
func (c *Credential) ForRoute(s plugin.RouteSettings) plugin.Credential {
	if s.NoQueryCredentials == c.noQuery {
		return c
	}
	return &Credential{svc: c.svc, noQuery: s.NoQueryCredentials}
}

// Present implements plugin.Credential.
func (*Credential) Present(r *http.Request) bool {
	if len(r.Header[headerName]) > 0 {
		return true
	}
	if r.URL.RawQuery == "" {
		return false
	}
	_, n := queryKey(r.URL.RawQuery)
	return n > 0
}

// Authenticate implements plugin.Credential.
func (c *Credential) Authenticate(r *http.Request) (identity.Identity, error) {
	value, err := c.presented(r)
	if err != nil {
		return identity.Identity{}, err
	}
	return c.svc.authenticate(r.Context(), value, c.svc.engine.ClientIP(r))
}

// presented returns the key value r carries, in the header or (where the
// route allows it) the query string, refusing a key sent twice.
func (c *Credential) presented(r *http.Request) (string, error) {
	header := r.Header[headerName]
	var value string
	var inQuery int
	if r.URL.RawQuery != "" {
		value, inQuery = queryKey(r.URL.RawQuery)
	}
	switch {
	case len(header)+inQuery != 1:
		return "", errTwice
	case inQuery == 1 && c.noQuery:
		return "", errQueryOff
	case inQuery == 0:
		value = header[0]
	}
	return value, nil
}

// Challenge implements plugin.Challenger: the scheme names the header
// (or query parameter) the key goes in; no standard scheme exists.
func (*Credential) Challenge() string { return `AppKey realm="gatehouse", header="appKey"` }

// Strip implements plugin.Credential: the key and the session request
// leave neither header nor query string, so upstream logs never see them;
// nor does the key in a URL another header carries (guard.URLHeaders).
func (*Credential) Strip(r *http.Request) {
	delete(r.Header, headerName)
	for _, h := range sessionHeaders {
		delete(r.Header, h)
	}
	for _, h := range guard.URLHeaders {
		for i, u := range r.Header[h] {
			if stripped, removed := stripKeyFromURL(u); removed {
				r.Header[h][i] = stripped
			}
		}
	}
	if r.URL.RawQuery == "" {
		return
	}
	if q, removed := stripParams(r.URL.RawQuery, strippedParams); removed {
		r.URL.RawQuery = q
		r.RequestURI = r.URL.RequestURI()
	}
}

// Finish implements plugin.Finisher: a request that asks for a session
// (x-gatehouse-session=true or x-thingworx-session=true, as query
// parameter or header) gets one once the account check allowed it,
// unless a browser sent it from another site's page (guard.SameOrigin).
func (c *Credential) Finish(w http.ResponseWriter, r *http.Request, id *identity.Identity) error {
	asked, err := sessionAsked(r)
	if err != nil || !asked {
		return err
	}
	if !guard.SameOrigin(r) {
		return errSessionFromAnotherSite.For(id.Username)
	}
	value, err := c.presented(r)
	if err != nil {
		return err
	}
	return c.svc.openSession(w, r, id, value)
}

// errSessionFromAnotherSite refuses a session asked for by a browser on
// another site's behalf: a link to ?appKey=<theirs>&x-gatehouse-session=true
// would otherwise replace the session cookie of a user signed in here with
// one of the link maker's account, whose pages the user would then use as
// their own. Clients that are no browsers send no fetch metadata, Origin
// or Referer of another site, and are not refused.
var errSessionFromAnotherSite = identity.Forbidden("a session is not opened for a request another site's page made; open it from this site's pages or from a client that is no browser")

// errSessionUnclear refuses a request whose session parameters and
// headers disagree: Gatehouse would follow one and a proxy or log reader
// might believe the other.
var errSessionUnclear = identity.BadRequest("x-gatehouse-session was sent more than once with different values; send it once")

// sessionAsked reports whether r asks for a session: every session
// parameter and header it carries says "true" (any case), and there is at
// least one. Some saying "true" and others not is refused.
func sessionAsked(r *http.Request) (bool, error) {
	var yes, no bool
	note := func(v string) {
		if asciiEqualFold(strings.TrimSpace(v), "true") {
			yes = true
		} else {
			no = true
		}
	}
	for i := 0; i < len(r.URL.RawQuery); {
		var p string
		p, i = nextParam(r.URL.RawQuery, i)
		if paramIs(p, sessionParams) {
			note(paramValue(p))
		}
	}
	for _, h := range sessionHeaders {
		for _, v := range r.Header[h] {
			note(v)
		}
		for _, v := range guard.StrippedHeader(r, h) {
			note(v)
		}
	}
	if yes && no {
		return false, errSessionUnclear
	}
	return yes, nil
}

// Interface guards.
var (
	_ plugin.Credential  = (*Credential)(nil)
	_ plugin.Finisher    = (*Credential)(nil)
	_ plugin.RouteScoped = (*Credential)(nil)
)
