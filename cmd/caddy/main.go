// Command caddy is Caddy with the Gatehouse modules compiled in; it is the
// file xcaddy would generate from xcaddy.json.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// Gatehouse.
	_ "github.com/gatehouse-auth/gatehouse/caddymodule"
)

func main() {
	caddycmd.Main()
}
