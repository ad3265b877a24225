package caddymodule

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestNoClientIPIsWarnedOfOnce: a request over a unix socket (peer "@"),
// for which Caddy resolves no client address without
// trusted_proxies_unix, counts as its peer, and the first such request
// is warned of: every client of that listener is one client network. A
// request Caddy resolved an address for, and one it did not serve (the
// admin endpoint's, with no resolved address at all), are not.
func TestNoClientIPIsWarnedOfOnce(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	a := &App{logger: zap.New(core)}
	request := func(remoteAddr string, vars map[string]any) string {
		r := httptest.NewRequest("GET", "http://example.test/", nil)
		r.RemoteAddr = remoteAddr
		if vars != nil {
			r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars))
		}
		return a.clientIP(r)
	}
	if got := request("127.0.0.2:4000", map[string]any{caddyhttp.ClientIPVarKey: "10.0.0.1"}); got != "10.0.0.1" {
		t.Fatalf("resolved client IP = %q, want Caddy's 10.0.0.1", got)
	}
	if got := request("127.0.0.1:4000", nil); got != "127.0.0.1" {
		t.Fatalf("unresolved (admin endpoint) client IP = %q, want the peer", got)
	}
	if n := logs.Len(); n != 0 {
		t.Fatalf("%d warnings before any request over a unix socket: %v", n, logs.All())
	}
	for range 2 {
		if got := request("@", map[string]any{caddyhttp.ClientIPVarKey: ""}); got != "@" {
			t.Fatalf("unix socket client IP = %q, want the peer @", got)
		}
	}
	warned := logs.FilterMessageSnippet("trusted_proxies_unix").All()
	if len(warned) != 1 || logs.Len() != 1 {
		t.Fatalf("warnings = %v, want one naming trusted_proxies_unix", logs.All())
	}
	if peer := warned[0].ContextMap()["peer"]; peer != "@" {
		t.Errorf("warning's peer = %v, want @", peer)
	}
}

// TestMappedClientIPIsItsIPv4Address: an IPv4-mapped address Caddy
// resolved from a trusted proxy's X-Forwarded-For is the IPv4
// address it holds, as the allowlists and the client networks read it:
// the audit log names the client 10.0.0.1 either way.
func TestMappedClientIPIsItsIPv4Address(t *testing.T) {
	a := &App{logger: zap.NewNop()}
	for resolved, want := range map[string]string{
		"::ffff:10.0.0.1": "10.0.0.1",
		"10.0.0.1":        "10.0.0.1",
		"::ffff:1:0:0":    "::ffff:1:0:0", // not a mapped address
		"2001:db8::1":     "2001:db8::1",
	} {
		r := httptest.NewRequest("GET", "http://example.test/", nil)
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: resolved}))
		if got := a.clientIP(r); got != want {
			t.Errorf("clientIP with Caddy's %q = %q, want %q", resolved, got, want)
		}
	}
}
