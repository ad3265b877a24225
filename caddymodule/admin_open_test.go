package caddymodule

import (
	"crypto/tls"
	"net/http/httptest"
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
