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
}

// kinds are the measured rows, in order; each credential kind adds itself
// from its own file.
var kinds = []kind{basicKind}

const benchRole = `{"rules":[{"methods":["GET"],"paths":["/*"]}]}`

var basicKind = kind{
	name:     "basic",
	baseline: "plain",
	site: `
http://:{{.basic}} {
	bind 127.0.0.1
	gatehouse {
		accept basic
	}
	reverse_proxy 127.0.0.1:{{.upstream}}
}
`,
	setup: func(e *env) (row, error) {
		if err := seedBenchUser(e); err != nil {
			return row{}, err
		}
		auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("bench:correct horse battery"))
		return row{name: "basic", baseline: "plain",
			target: e.get("http://127.0.0.1:%d/", "basic", http.Header{"Authorization": {auth}}, nil)}, nil
	},
}

// seedBenchUser creates the role and user every row authenticates as,
// through the admin API of a (the main Caddy, or another one).
func seedBenchUser(a adminAPI) error {
	if _, err := a.mustCall(200, "PUT", "/gatehouse/roles/bench", rawJSON(benchRole)); err != nil {
		return err
	}
	status, _, err := a.call("POST", "/gatehouse/users", map[string]any{"username": "bench", "roles": []string{"bench"}, "password": "correct horse battery"})
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
