package engine

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
)

// TestRefusalCodes: each refusal kind is answered with the status and the
// "error" code docs/clients.md names.
func TestRefusalCodes(t *testing.T) {
	for _, c := range []struct {
		refusal *identity.Refusal
		status  int
		code    string
	}{
		{identity.BadRequest("x"), 400, "bad_request"},
		{identity.Unauthenticated("x"), 401, "unauthenticated"},
		{identity.Forbidden("x"), 403, "forbidden"},
		{identity.Throttled("x", time.Second), 429, "throttled"},
	} {
		if status, code := failure.Status(c.refusal), refusalCode(c.refusal); status != c.status || code != c.code {
			t.Errorf("%v: %d %q, want %d %q", c.refusal, status, code, c.status, c.code)
		}
	}
}

// TestJSONErrorsAreNeitherCachedNorSniffed: an error answer is JSON for
// what it says it is, never stored by a cache, and never taken for
// another type by a browser (its message may quote what a client sent).
func TestJSONErrorsAreNeitherCachedNorSniffed(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteJSONError(rec, http.StatusBadRequest, "bad_request", `username "<script>" is not allowed`)
	h := rec.Result().Header
	if rec.Code != http.StatusBadRequest || h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" ||
		h.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("%d %v", rec.Code, h)
	}
}

// TestLoopbackShortcutAgreesWithTheParse: the cleartext warning's
// shortcut for a loopback client (isLoopbackIPv4) says loopback only for
// addresses the parse it spares finds loopback.
func TestLoopbackShortcutAgreesWithTheParse(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:40000", "127.0.0.1:", "127.0.0.1", "127.0.0.1:1:2", "127.0.0.10:80",
		"127.0.0.2:80", "[::1]:80", "[::ffff:127.0.0.1]:80", "192.0.2.1:80", "127.0.0.1.example:80", "", "x127.0.0.1:80"} {
		parsed := false
		if ip, err := netip.ParseAddr(RemoteHost(&http.Request{RemoteAddr: addr})); err == nil {
			parsed = ip.Unmap().IsLoopback()
		}
		if isLoopbackIPv4(addr) && !parsed {
			t.Errorf("%q: the shortcut says loopback, the parse does not", addr)
		}
	}
	if !isLoopbackIPv4("127.0.0.1:40000") {
		t.Error("127.0.0.1:40000 not taken as loopback")
	}
}
