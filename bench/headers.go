package main

import (
	"fmt"
	"strings"
)

// assertionSize is about the length of the X-Gatehouse-Assertion a bench
// user gets (a compact ES256 JWS of its claims).
const assertionSize = 306

// identityHeadersKind is the plain_identity_headers row: no Gatehouse at
// all, plain reverse_proxy adding static headers of the names and sizes
// Gatehouse forwards. Its ratio to plain is the cost of the forwarded
// headers alone (proxy, upstream parsing, Caddy's request logging), which
// every credential kind pays on top of its own work; a kind's rps divided
// by this row's rps is Gatehouse's own cost.
var identityHeadersKind = kind{
	name:     identityHeadersRow,
	baseline: "plain",
	site: fmt.Sprintf(`
http://:{{.plain_identity_headers}} {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:{{.upstream}} {
		header_up X-Gatehouse-User bench
		header_up X-Gatehouse-Roles bench
		header_up X-Gatehouse-Auth app_key
		header_up X-Gatehouse-App-Key bench-0
		header_up X-Gatehouse-Assertion %s
	}
}
`, strings.Repeat("x", assertionSize)),
	setup: func(e *env) (row, error) {
		return row{name: identityHeadersRow, baseline: "plain",
			target: e.get("http://127.0.0.1:%d/", identityHeadersRow, nil, nil)}, nil
	},
}
