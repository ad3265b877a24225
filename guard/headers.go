package guard

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// IdentityHeaders are the names of the forwarded identity headers, built
// once from the configured prefix.
type IdentityHeaders struct {
	prefix string // lower case, '-' separated, e.g. "x-gatehouse-"
	// alsoDefault is set when prefix is not the default: inbound headers
	// with the default prefix are deleted too, for upstreams written
	// against the contract's names (CONTRACT §4).
	alsoDefault bool
	User        string // X-Gatehouse-User: the username
	Roles       string // X-Gatehouse-Roles: the role names, comma-separated
	Auth        string // X-Gatehouse-Auth: the credential kind (identity.Method)
	Connector   string // X-Gatehouse-Connector: the connector name, when one was used
	AppKey      string // X-Gatehouse-App-Key: the app key's name, when one was used
	TwoFactor   string // X-Gatehouse-2FA: "true" when a second factor was passed
	Assertion   string // X-Gatehouse-Assertion: the signed identity assertion (JWS)
}

// DefaultHeaderPrefix starts the identity headers unless configured
// otherwise (engine.Config.HeaderPrefix).
const DefaultHeaderPrefix = "X-Gatehouse-"

// defaultPrefix is DefaultHeaderPrefix as matches compares it.
var defaultPrefix = normalizeHeaderName(DefaultHeaderPrefix)

// ValidateHeaderPrefix refuses a header_prefix that would not make
// working, distinct identity headers: one that is no header name ending
// in '-', and one that starts a header clients or proxies send for
// another purpose (Authorization, Cookie, Content-Type, X-Forwarded-For,
// the appKey credential, …), which stripping the prefix's inbound headers
// would delete.
func ValidateHeaderPrefix(prefix string) error {
	if !strings.HasSuffix(prefix, "-") || !httpguts.ValidHeaderFieldName(prefix+"User") || strings.Trim(prefix, "-") == "" {
		return fmt.Errorf("header_prefix %q: want a header name ending in '-', such as %q", prefix, DefaultHeaderPrefix)
	}
	lower := normalizeHeaderName(prefix)
	for _, name := range othersHeaders {
		if hasHeaderPrefix(name, lower) {
			return fmt.Errorf("header_prefix %q starts the %s header, which Gatehouse would then delete from every request; choose a prefix of Gatehouse's own, such as %q",
				prefix, name, DefaultHeaderPrefix)
		}
	}
	return nil
}

// othersHeaders are request headers of other purposes that no identity
// header prefix may start.
var othersHeaders = [...]string{
	"Accept", "Accept-Encoding", "Accept-Language", "Access-Control-Request-Method", "AppKey", "Authorization", "Cache-Control",
	"Connection", "Content-Encoding", "Content-Length", "Content-Type", "Cookie", "Early-Data", "Forwarded", "Host",
	"If-Modified-Since", "If-None-Match", "Origin", "Proxy-Authorization", "Range", "Referer", "Sec-Fetch-Site",
	"Sec-WebSocket-Key", "TE", "Traceparent", "Trailer", "Transfer-Encoding", "Upgrade", "User-Agent",
	"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-IP", "X-Request-ID",
	"CF-Connecting-IP", "True-Client-IP", "X-Client-IP", "X-Original-Forwarded-For", "X-Api-Key", "X-CSRF-Token", "X-Requested-With",
}

// NewIdentityHeaders derives the header names from prefix ("X-Gatehouse-").
func NewIdentityHeaders(prefix string) IdentityHeaders {
	canon := func(s string) string { return http.CanonicalHeaderKey(prefix + s) }
	lower := normalizeHeaderName(prefix)
	return IdentityHeaders{
		prefix:      lower,
		alsoDefault: lower != defaultPrefix,
		User:        canon("User"),
		Roles:       canon("Roles"),
		Auth:        canon("Auth"),
		Connector:   canon("Connector"),
		AppKey:      canon("App-Key"),
		TwoFactor:   http.CanonicalHeaderKey(prefix) + "2FA",
		Assertion:   canon("Assertion"),
	}
}

// Strip deletes every inbound header whose name starts with the prefix in
// any case and with '-' or '_' as separator, so a client cannot smuggle an
// identity header past Gatehouse (some upstreams treat '_' like '-'). It
// returns the deleted headers, or nil (no allocation) when there were none.
func (h *IdentityHeaders) Strip(header http.Header) (removed http.Header) {
	for name, values := range header {
		if h.matches(name) {
			if removed == nil {
				removed = http.Header{}
			}
			removed[name] = values
			delete(header, name)
		}
	}
	return removed
}

// stripInbound is Strip, deleting the rewriteHeaders too when rewrite is
// set, in one pass over header; overrides reports whether a header it
// kept is one of the methodOverrides.
func (h *IdentityHeaders) stripInbound(header http.Header, rewrite bool) (removed http.Header, overrides bool) {
	for name, values := range header {
		switch {
		case h.matches(name):
			if removed == nil {
				removed = http.Header{}
			}
			removed[name] = values
			delete(header, name)
		case rewrite && isHeaderNamed(name, rewriteHeaders[:]):
			delete(header, name)
		case isHeaderNamed(name, methodOverrides[:]):
			overrides = true
		}
	}
	return removed, overrides
}

// controlTrailers are header names that must not arrive as request
// trailers either (beside the methodOverrides, which Gatehouse did not
// check there, and the rewriteHeaders), lower case with '-': a reverse
// proxy forwards trailers after the body and some upstreams merge them
// into the headers (Apache's MergeTrailers), where they would carry a
// credential Gatehouse never saw or removed (the Authorization and appKey
// headers, cookies, the session requests), or a client address, host,
// port or scheme the upstream takes from the proxy.
var controlTrailers = [...]string{"authorization", "proxy-authorization", "cookie", "appkey", "x-thingworx-session",
	"host", "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port", "x-forwarded-ssl",
	"x-forwarded-server", "front-end-https", "x-real-ip", "x-client-ip", "true-client-ip", "x-original-host"}

// stripTrailers keeps identity-prefixed fields and controlTrailers out of
// r's trailers: it deletes the declared ones now, and has the body delete
// them again when it ends, as Go's server fills the declared trailers in
// from the wire then. (Undeclared ones go to the server's own request,
// not the copy handlers see, and Caddy's proxy forwards none.) A request
// that declares no trailers costs nothing.
func (h *IdentityHeaders) stripTrailers(r *http.Request) {
	if r.Trailer == nil || r.Body == nil {
		return
	}
	h.stripTrailerFields(r.Trailer)
	r.Body = &trailerStripper{ReadCloser: r.Body, strip: h.stripTrailerFields, r: r}
}

// StripRequest deletes the identity-prefixed headers of r (Strip) and
// such fields of its trailers: the declared ones now, and again when its
// body ends, as Go's server fills the trailers in from the wire then (a
// chunked HTTP/1.1 body adds undeclared ones beside a declared one).
// Handlers that pass a request on without judging it (gatehouse_esa on
// the paths that are not the ESA API's) use it, so that a reverse proxy
// after them forwards no identity a client chose, not even after the
// body, where upstreams that merge trailers into the headers (Apache's
// MergeTrailers) would read it.
func (h *IdentityHeaders) StripRequest(r *http.Request) {
	h.Strip(r.Header)
	if r.Trailer == nil || r.Body == nil {
		return
	}
	h.stripIdentityTrailerFields(r.Trailer)
	r.Body = &trailerStripper{ReadCloser: r.Body, strip: h.stripIdentityTrailerFields, r: r}
}

// stripIdentityTrailerFields deletes the identity-prefixed fields from
// trailer.
func (h *IdentityHeaders) stripIdentityTrailerFields(trailer http.Header) {
	for name := range trailer {
		if h.matches(name) {
			delete(trailer, name)
		}
	}
}

// stripTrailerFields deletes the identity-prefixed fields, the
// controlTrailers, every X-Forwarded-* field (X-Forwarded-User,
// X-Forwarded-Email and X-Forwarded-Groups carry another proxy's identity
// to upstreams written for it, X-Forwarded-Uri a URL that may hold a key),
// the methodOverrides and the rewriteHeaders from trailer.
func (h *IdentityHeaders) stripTrailerFields(trailer http.Header) {
	for name := range trailer {
		if h.matches(name) || isHeaderNamed(name, controlTrailers[:]) || hasHeaderPrefix(name, "x-forwarded-") ||
			isHeaderNamed(name, methodOverrides[:]) || isHeaderNamed(name, rewriteHeaders[:]) {
			delete(trailer, name)
		}
	}
}

// trailerStripper is a request body that strips the request's trailers
// (strip: stripTrailerFields or stripIdentityTrailerFields) once it has
// been read to the end.
type trailerStripper struct {
	io.ReadCloser
	strip func(http.Header)
	r     *http.Request
}

// Read implements io.Reader.
func (t *trailerStripper) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if err == io.EOF {
		t.strip(t.r.Trailer)
	}
	return n, err
}

// matches compares name to the prefix (and the default prefix, when
// another is configured) case-insensitively, treating '_' as '-', without
// allocating.
func (h *IdentityHeaders) matches(name string) bool {
	return hasHeaderPrefix(name, h.prefix) || (h.alsoDefault && hasHeaderPrefix(name, defaultPrefix))
}

// hasHeaderPrefix reports whether the header name starts with lower (lower
// case, '-' separated), in any case and with '_' or '.' for '-' (some
// upstreams, CGI and FastCGI among them, and PHP read them alike), without
// allocating.
func hasHeaderPrefix(name, lower string) bool {
	if len(name) < len(lower) {
		return false
	}
	for i := 0; i < len(lower); i++ {
		c := name[i]
		if c == '_' || c == '.' {
			c = '-'
		} else if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// normalizeHeaderName is s as hasHeaderPrefix compares it: lower case,
// with '-' for '_' and '.'.
func normalizeHeaderName(s string) string {
	return strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(s))
}

// stripConnectionTokens removes from the Connection header the tokens
// that name identity-prefixed headers: a reverse proxy deletes the
// headers a request's Connection header lists, and a client could have
// Gatehouse's own identity headers deleted that way after Gatehouse set
// them.
func (h *IdentityHeaders) stripConnectionTokens(header http.Header) {
	values, ok := header["Connection"]
	if !ok {
		return
	}
	var kept []string
	for _, v := range values {
		for token := range strings.SplitSeq(v, ",") {
			if token = strings.TrimSpace(token); token != "" && !h.matches(token) {
				kept = append(kept, token)
			}
		}
	}
	if len(kept) == 0 {
		delete(header, "Connection")
		return
	}
	header["Connection"] = []string{strings.Join(kept, ", ")}
}

// isOwnCookie reports whether a cookie name is in Gatehouse's namespace:
// "gatehouse_…", with or without the "__Host-" or "__Secure-" prefix.
// Such cookies (the login session, a login in progress) are Gatehouse's
// alone and never forwarded, on any route.
func isOwnCookie(name string) bool {
	name = strings.TrimPrefix(strings.TrimPrefix(name, "__Host-"), "__Secure-")
	return strings.HasPrefix(name, "gatehouse_")
}

// StripUnjudged removes from r what it may carry for Gatehouse when no
// route can judge it (Gatehouse not started, so the credential kinds are
// not loaded), before a 503: the identity headers h names, the
// Authorization and appKey headers, Gatehouse's cookies, and the whole
// query, which may hold a key in any of the spellings the kinds know.
func StripUnjudged(r *http.Request, h IdentityHeaders) {
	h.Strip(r.Header)
	for _, name := range unjudgedHeaders {
		delete(r.Header, name)
	}
	for _, name := range URLHeaders {
		delete(r.Header, name)
	}
	for name := range r.Header {
		if strings.EqualFold(name, "AppKey") {
			delete(r.Header, name)
		}
	}
	stripOwnCookies(r)
	r.URL.RawQuery, r.URL.ForceQuery = "", false
	DropBody(r)
}

// URLHeaders are the request headers that carry a URL with its query:
// the Referer (the address of a page a browser opened with a key in its
// query, which it sends with every request the page makes) and those in
// which a proxy in front of Caddy passes on the request's original URI.
var URLHeaders = [...]string{"Referer", "X-Forwarded-Uri", "X-Forwarded-Url", "X-Original-Uri", "X-Original-Url", "X-Rewrite-Url", "X-Envoy-Original-Path"}

// unjudgedHeaders may carry a credential in forms only the credential
// kinds know (beside URLHeaders, whose URLs may hold one in their query):
// StripUnjudged deletes them whole.
var unjudgedHeaders = [...]string{"Authorization", "X-Thingworx-Session", "X-Forwarded-Prefix"}

// DropBody leaves r without a body (nor trailers) for whatever handles it
// after Gatehouse answered it itself: a form's password, or the
// credentials of a trailer, would otherwise go on with a request a
// handler around Gatehouse sends elsewhere (intercept's reverse_proxy).
func DropBody(r *http.Request) {
	r.Body, r.ContentLength, r.TransferEncoding, r.Trailer = http.NoBody, 0, nil, nil
	r.Header.Del("Content-Length")
	r.Header.Del("Transfer-Encoding")
	r.Header.Del("Trailer")
}

// stripOwnCookies removes Gatehouse's cookies (isOwnCookie) from r's
// Cookie headers, leaving every other cookie exactly as the client sent
// it (even one Go's cookie parser would drop).
func stripOwnCookies(r *http.Request) {
	values, ok := r.Header["Cookie"]
	if !ok {
		return
	}
	var kept []string
	for _, v := range values {
		if !strings.Contains(v, "gatehouse_") {
			kept = append(kept, v)
			continue
		}
		var pairs []string
		for pair := range strings.SplitSeq(v, ";") {
			pair = strings.TrimSpace(pair)
			name, _, _ := strings.Cut(pair, "=")
			if pair != "" && !isOwnCookie(strings.TrimSpace(name)) {
				pairs = append(pairs, pair)
			}
		}
		if len(pairs) > 0 {
			kept = append(kept, strings.Join(pairs, "; "))
		}
	}
	if len(kept) == 0 {
		delete(r.Header, "Cookie")
		return
	}
	r.Header["Cookie"] = kept
}

// rewriteHeaders name the request's URL for upstreams that route by them
// instead of the request line — IIS's rewrite module and older Symfony and
// Zend read X-Original-URL and X-Rewrite-URL, Spring and ASP.NET prepend
// X-Forwarded-Prefix — so they would reach a path Gatehouse did not
// authorise. Lower case, '-' separated.
var rewriteHeaders = [...]string{"x-original-url", "x-rewrite-url", "x-forwarded-prefix"}

// isHeaderNamed reports whether a header name is one of names (lower
// case, '-' separated), in any case and with '_' for '-', without
// allocating.
func isHeaderNamed(name string, names []string) bool {
	for _, n := range names {
		if len(name) == len(n) && hasHeaderPrefix(name, n) {
			return true
		}
	}
	return false
}
