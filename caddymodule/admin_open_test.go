package caddymodule

import (
	"crypto/tls"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestAdminCallFromAnotherMachineIsWarnedOfOnce: a call to the admin API
// over plain TCP from another machine is warned of, once, naming the
// peer; calls from a loopback address (IPv4, IPv6, IPv4-mapped), over a
// unix socket or over TLS (Caddy's remote admin) are not.
func TestAdminCallFromAnotherMachineIsWarnedOfOnce(t *testing.T) {
	warnedOpenAdmin.Store(false)
	t.Cleanup(func() { warnedOpenAdmin.Store(false) })
	core, logs := observer.New(zapcore.WarnLevel)
	logger := zap.New(core)
	call := func(remote string, overTLS bool) {
		r := httptest.NewRequest("GET", "/gatehouse/users", nil)
		r.RemoteAddr = remote
		if overTLS {
			r.TLS = &tls.ConnectionState{HandshakeComplete: true}
		}
		warnOpenAdminCall(logger, r)
	}
	for _, remote := range []string{"127.0.0.1:40000", "[::1]:40000", "[::ffff:127.0.0.1]:40000", "@", ""} {
		call(remote, false)
	}
	call("192.0.2.7:40000", true)
	if n := logs.Len(); n != 0 {
		t.Fatalf("%d warnings for local calls and a remote admin call over TLS: %v", n, logs.All())
	}
	call("[::ffff:192.0.2.7]:40000", false)
	call("198.51.100.9:40000", false)
	all := logs.All()
	if len(all) != 1 {
		t.Fatalf("%d warnings for two calls from other machines; want one: %v", len(all), all)
	}
	if peer := all[0].ContextMap()["peer"]; peer != "192.0.2.7" {
		t.Fatalf("the warning names the peer %v; want 192.0.2.7", peer)
	}
}

// TestAdminCallWarningQuotesThePathsStart: the warning quotes the first
// 200 bytes of the caller's path, not a path as long as the admin
// endpoint takes (it logged the whole of it).
func TestAdminCallWarningQuotesThePathsStart(t *testing.T) {
	warnedOpenAdmin.Store(false)
	t.Cleanup(func() { warnedOpenAdmin.Store(false) })
	core, logs := observer.New(zapcore.WarnLevel)
	r := httptest.NewRequest("GET", "/gatehouse/users/"+strings.Repeat("a", 50_000), nil)
	r.RemoteAddr = "192.0.2.7:40000"
	warnOpenAdminCall(zap.New(core), r)
	all := logs.All()
	if len(all) != 1 {
		t.Fatalf("%d warnings; want one", len(all))
	}
	path, _ := all[0].ContextMap()["path"].(string)
	if !strings.HasPrefix(path, "/gatehouse/users/aaa") || len(path) > 210 {
		t.Fatalf("the warning quotes a path of %d bytes (%.40q…); want its first 200", len(path), path)
	}
}
