package guard

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
)

// SameOrigin reports whether a state-changing browser request (a form
// post, a logout) comes from this origin's own pages, or from no page at
// all (a typed URL, a client that is no browser), rather than from another
// site. It refuses when fetch metadata (Sec-Fetch-Site) names another site
// or origin, when Origin names another origin or is "null" (sandboxed
// frames, cross-origin redirects, privacy modes), and, without Origin,
// when Referer names another origin. Browsers without fetch metadata still
// send Origin on a POST and most send Referer (Gatehouse's pages set
// Referrer-Policy: same-origin); a request with neither passes, and the
// endpoint's other checks (CSRF token, cookies) still apply. Every
// state-changing portal endpoint uses it; the console uses the stricter
// SameOriginStrict.
func SameOrigin(r *http.Request) bool {
	return sameOrigin(r, false)
}

// SameOriginStrict is SameOrigin for pages that only browsers use (the
// admin console): the request must show that it comes from a page of this
// origin, served over https. Sec-Fetch-Site, when sent, must be
// same-origin ("none", a typed URL, is refused too), and the Origin header
// or, without one, the Referer must be sent and name https://<the
// request's host>; a request with neither is refused.
func SameOriginStrict(r *http.Request) bool {
	return sameOrigin(r, true)
}

// Navigation reports whether r is, as far as the browser tells, the
// user's own navigation to a page (Sec-Fetch-Mode navigate,
// Sec-Fetch-Dest document): a link followed, a URL typed, a form
// submitted — not a script's fetch, a frame, an image or a prefetch. The
// console serves its pages to navigations only, so that a script of its
// origin (an upstream page on the same route) cannot read them, their
// CSRF token included. A request without fetch metadata (a browser from
// before it, a client that is no browser) passes; a page's script cannot
// remove these headers, which browsers forbid it to set.
func Navigation(r *http.Request) bool {
	mode, dest := r.Header.Get("Sec-Fetch-Mode"), r.Header.Get("Sec-Fetch-Dest")
	return (mode == "" || mode == "navigate") && (dest == "" || dest == "document")
}

// sameOrigin is SameOrigin, or SameOriginStrict when strict.
func sameOrigin(r *http.Request, strict bool) bool {
	site := r.Header.Get("Sec-Fetch-Site")
	if site != "" && site != "same-origin" && (strict || site != "none") {
		return false
	}
	if origin, ok := r.Header["Origin"]; ok {
		return len(origin) == 1 && namesRequestOrigin(r, origin[0], strict)
	}
	if referer, ok := r.Header["Referer"]; ok {
		return len(referer) == 1 && namesRequestOrigin(r, referer[0], strict)
	}
	return !strict
}

// namesRequestOrigin reports whether the URL raw (an Origin or a Referer)
// has r's scheme (https when r came over TLS or httpsOnly is set; either
// behind a proxy that ended TLS) and r's host and port, a default port
// written or not.
func namesRequestOrigin(r *http.Request, raw string, httpsOnly bool) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" || u.Opaque != "" || u.User != nil {
		return false // "null", not an absolute URL, one without a host name, or with user info
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && r.TLS == nil && !httpsOnly:
	default:
		return false
	}
	return strings.EqualFold(withoutDefaultPort(u.Host, u.Scheme), withoutDefaultPort(r.Host, u.Scheme))
}

// withoutDefaultPort removes the scheme's default port from host.
func withoutDefaultPort(host, scheme string) string {
	if scheme == "https" {
		return strings.TrimSuffix(host, ":443")
	}
	return strings.TrimSuffix(host, ":80")
}

// ShowsOrigin reports whether r carries any of the headers SameOrigin
// reads: Sec-Fetch-Site, Origin or Referer. A request with none passes
// SameOrigin, yet it may come from another site's page: a browser from
// before fetch metadata sends no Origin on a GET, and that page can
// withhold the Referer (referrerpolicy="no-referrer" on a link or an
// image). An endpoint whose effect a user notices, such as logout, asks
// such a request for a confirmation instead of acting on it.
func ShowsOrigin(r *http.Request) bool {
	h := r.Header
	return h.Get("Sec-Fetch-Site") != "" || len(h["Origin"]) > 0 || len(h["Referer"]) > 0
}

// FormCookie returns the value of a cookie named name, n bytes long,
// that r carries and whose form token (token(value)) is csrf, compared in
// constant time ("" when no cookie's is), and whether r carries a cookie
// of that name and length at all. A browser sends every cookie of a name it
// holds, and a sibling subdomain can give it one of its own
// (Domain=<parent>, a more specific path, so it comes first: the
// __Secure- prefix does not stop that, as __Host- would); read the first
// alone, such a cookie made every form of that browser refused for as
// long as it lived. Its value does not help its planter: a form is taken
// only with the token of a cookie it came with, and from this origin.
func FormCookie(r *http.Request, name string, n int, csrf string, token func(value string) string) (value string, sent bool) {
	for _, ck := range r.CookiesNamed(name) {
		if len(ck.Value) != n {
			continue
		}
		sent = true
		if subtle.ConstantTimeCompare([]byte(csrf), []byte(token(ck.Value))) == 1 {
			return ck.Value, true
		}
	}
	return "", sent
}
