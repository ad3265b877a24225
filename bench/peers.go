package main

import (
	"fmt"
	"net/http"

	"golang.org/x/crypto/bcrypt"
)

// The <kind>_forward_user rows: the same credential on a route with
// "forward user", which sends X-Gatehouse-User alone (no assertion is
// signed). Compared with bare plain: what Gatehouse costs an upstream
// that reads only the user.
var (
	basicForwardUserKind = kind{
		name: "basic_forward_user", baseline: "plain",
		site:  gatehouseSite("basic_forward_user", "basic", "user"),
		setup: basicSetup("basic_forward_user"),
	}
	appKeyForwardUserKind  = appKeyForwardKind("app_key_forward_user", "user")
	sessionForwardUserKind = kind{
		name: "session_forward_user", baseline: "plain",
		site:  gatehouseSite("session_forward_user", "session", "user"),
		setup: func(e *env) (row, error) { return sessionRow("session_forward_user", e) },
	}
)

// basicAuthPeerKind is the basic_auth_peer row: Caddy's own basic_auth
// (bcrypt, with its hash cache, as the Caddyfile sets it up) and one
// header_up naming the user — the least a Caddy site can do to tell an
// upstream who is calling.
var basicAuthPeerKind = kind{
	name: "basic_auth_peer", baseline: "plain",
	site: fmt.Sprintf(`
http://:{{.basic_auth_peer}} {
	bind 127.0.0.1
	basic_auth {
		bench %s
	}
	reverse_proxy 127.0.0.1:{{.upstream}} {
		header_up X-Gatehouse-User {http.auth.user.id}
	}
}
`, benchPasswordBcrypt()),
	setup: func(e *env) (row, error) {
		return row{name: "basic_auth_peer", baseline: "plain",
			target: e.get("http://127.0.0.1:%d/", "basic_auth_peer", http.Header{"Authorization": {basicAuthorization}}, nil)}, nil
	},
}

// benchPasswordBcrypt is the bcrypt hash of benchPassword for basic_auth.
func benchPasswordBcrypt() string {
	hash, err := bcrypt.GenerateFromPassword([]byte(benchPassword), bcrypt.MinCost) // basic_auth caches the check, so the cost does not matter
	if err != nil {
		panic(err) // only for a password over 72 bytes
	}
	return string(hash)
}

// forwardAuthPeerKind is the forward_auth_peer row: Caddy's forward_auth
// asking an auth endpoint that answers 200 at once with the user's header,
// which is copied upstream — the best any external auth service
// (Authelia, oauth2-proxy, …) reached this way could do. The endpoint is
// a backend site, beside the upstream.
var forwardAuthPeerKind = kind{
	name: "forward_auth_peer", baseline: "plain",
	site: `
http://:{{.forward_auth_peer}} {
	bind 127.0.0.1
	forward_auth 127.0.0.1:{{.auth_endpoint}} {
		uri /auth
		copy_headers X-Gatehouse-User
	}
	reverse_proxy 127.0.0.1:{{.upstream}}
}
`,
	setup: func(e *env) (row, error) {
		return row{name: "forward_auth_peer", baseline: "plain",
			target: e.get("http://127.0.0.1:%d/", "forward_auth_peer", http.Header{"Authorization": {basicAuthorization}}, nil)}, nil
	},
}
