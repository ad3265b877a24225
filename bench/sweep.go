package main

// The forward sweep: the app_key row with one more identity header
// forwarded per row, from "forward user" (app_key_forward_user) to the
// full set (app_key), so that the difference between neighbouring rows is
// what one header costs (docs/benchmarks.md, "What each forwarded header
// costs"). Its rows run only when asked for: -kinds forward_sweep runs the
// whole sweep (sweepRows), or name single rows.
var (
	appKeyForwardRolesKind       = appKeyForwardKind("app_key_forward_user_roles", "user roles")
	appKeyForwardAuthKind        = appKeyForwardKind("app_key_forward_user_roles_auth", "user roles auth")
	appKeyForwardNoAssertionKind = appKeyForwardKind("app_key_forward_no_assertion", "user roles auth app_key")
)

// appKeyForwardKind is the app_key row named name on a route forwarding
// only the headers forward names.
func appKeyForwardKind(name, forward string) kind {
	return kind{name: name, baseline: "plain", site: gatehouseSite(name, "app_key", forward), setup: setupAppKeys(name)}
}

// sweepOnly are the rows that run only when named (or through
// forward_sweep), not in a default run.
var sweepOnly = []kind{appKeyForwardRolesKind, appKeyForwardAuthKind, appKeyForwardNoAssertionKind}

// sweepRows is what -kinds forward_sweep stands for, in the sweep's
// order: each row forwards what the one before it does and one header
// more.
var sweepRows = []string{"app_key_forward_user", "app_key_forward_user_roles", "app_key_forward_user_roles_auth",
	"app_key_forward_no_assertion", "app_key"}
