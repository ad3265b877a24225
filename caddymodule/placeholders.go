package caddymodule

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
)

// expandSecret replaces the placeholders Caddy knows everywhere
// ({env.NAME}, {file./path}) in the value of a config option that holds
// a secret, so that the secret need not be in the config, which Caddy's
// GET /config/ serves; others stay as written. The error, naming option
// and the placeholder, says that one of them is empty: a variable unset
// in Caddy's environment (a systemd unit without it) or a file Caddy's
// user cannot read. The value comes back expanded either way. Callers
// fail the start with the error, not the config's provisioning, which
// `caddy validate`, often run from a shell without the service's
// environment, goes through too.
func expandSecret(option, value string) (string, error) {
	repl := caddy.NewReplacer()
	expanded := repl.ReplaceKnown(value, "")
	if _, err := repl.ReplaceOrErr(value, true, false); err != nil {
		return expanded, fmt.Errorf("%s: %v: set the variable in Caddy's environment (systemd: Environment= or EnvironmentFile=), "+
			"or give Caddy's user a file it can read", option, err)
	}
	return expanded, nil
}
