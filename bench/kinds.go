package main

import (
	"encoding/base64"
	"net/http"
)

// kind is one Gatehouse row: its site snippet, how to seed it once Caddy
// runs (returning the row's target), and the baseline it is compared to.
type kind struct {
	name     string
	baseline string
	// fullSet: a Gatehouse row on the main Caddy forwarding every identity
	// header over plain HTTP, whose limit is plain_identity_headers (its
	// Result gets an IdentityHeadersRatio).
	fullSet bool
	// site is a Caddyfile template snippet for the row's port ({{.<name>}}).
	site string
	// prepare runs before Caddy starts (e.g. seeding the store offline).
	prepare func(*env) error
	// setup seeds through the admin API and returns the row.
	setup func(*env) (row, error)
}

// row is a kind ready to measure.
type row struct {
	name, baseline string
	target         target
	// drawn: the row draws scale-mode keys at random.
	drawn bool
	// fullSet is its kind's (set by the bench, not by setup).
	fullSet bool
}

// kinds are the measured rows, in order: each Gatehouse kind with all
// identity headers and then with "forward user" only, the limit of the
// full set (plain_identity_headers), the peers (Caddy's basic_auth,
// forward_auth), the Redis-backed row and the directory-backed one; then
// the rows of the forward sweep, which run only when named (sweepOnly).
var kinds = []kind{basicKind, basicDirectoryKind, basicForwardUserKind, appKeyKind, appKeyForwardUserKind, connectorKind,
	connectorForwardUserKind, sessionKind, sessionForwardUserKind, identityHeadersKind, basicAuthPeerKind, forwardAuthPeerKind, appKeyRedisKind,
	appKeyForwardRolesKind, appKeyForwardAuthKind, appKeyForwardNoAssertionKind}

const benchRole = `{"rules":[{"methods":["GET"],"paths":["/*"]}]}`

var basicKind = kind{
	name:     "basic",
	baseline: "plain",
	fullSet:  true,
	site:     gatehouseSite("basic", "basic", ""),
	setup:    basicSetup("basic"),
}

// basicAuthorization is the Authorization header of the bench user.
var basicAuthorization = "Basic " + base64.StdEncoding.EncodeToString([]byte("bench:"+benchPassword))

// benchPassword is the bench user's password.
const benchPassword = "correct horse battery"

// basicSetup seeds the bench user and returns the row name, sending its
// password with HTTP Basic to the port of the same name.
func basicSetup(name string) func(*env) (row, error) {
	return func(e *env) (row, error) {
		if err := seedBenchUser(e); err != nil {
			return row{}, err
		}
		return row{name: name, baseline: "plain",
			target: e.get("http://127.0.0.1:%d/", name, http.Header{"Authorization": {basicAuthorization}}, nil)}, nil
	}
}

// gatehouseSite is the Caddyfile snippet of a Gatehouse route on the port
// {{.<port>}} accepting the credential kind accept and, unless forward is
// empty, forwarding only the headers it names, in front of the upstream.
func gatehouseSite(port, accept, forward string) string {
	if forward != "" {
		forward = "\n\t\tforward " + forward
	}
	return `
http://:{{.` + port + `}} {
	bind 127.0.0.1
	gatehouse {
		accept ` + accept + forward + `
	}
	reverse_proxy 127.0.0.1:{{.upstream}}
}
`
}

// seedBenchUser creates the role and user every row authenticates as,
// through the admin API of a (the main Caddy, or another one).
func seedBenchUser(a adminAPI) error {
	if _, err := a.mustCall(200, "PUT", "/gatehouse/roles/bench", rawJSON(benchRole)); err != nil {
		return err
	}
	status, _, err := a.call("POST", "/gatehouse/users", map[string]any{"username": "bench", "roles": []string{"bench"}, "password": benchPassword})
	if err != nil {
		return err
	}
	if status != 201 && status != 409 {
		return errStatus
	}
	return nil
}

// rawJSON is a JSON body passed through unchanged.
type rawJSON string

// MarshalJSON implements json.Marshaler.
func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }
