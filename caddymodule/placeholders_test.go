package caddymodule

import (
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse-auth/gatehouse/identity"
)

// TestUserPlaceholdersHoldTheIdentity: each placeholder holds the
// identity's value as a string (what Caddy's expressions and logs read),
// and only the values that vary by user are boxed on each request: the
// method is one of a few constants.
func TestUserPlaceholdersHoldTheIdentity(t *testing.T) {
	repl := caddy.NewReplacer()
	for _, m := range []identity.Method{identity.MethodBasic, identity.MethodConnector, identity.MethodAppKey,
		identity.MethodSession, identity.MethodAppKeySession, identity.Method("future_kind")} {
		id := &identity.Identity{Username: "ålice", Roles: []string{"reader", "ops"}, Method: m, Connector: "c1", AppKey: "k1"}
		setUserPlaceholders(repl, id)
		want := map[string]string{"id": "ålice", "roles": "reader,ops", "method": string(m.Forwarded()), "connector": "c1", "app_key": "k1", "2fa": "false"}
		for name, value := range want {
			if got, ok := repl.Get("http.auth.user." + name); got != value || !ok {
				t.Errorf("method %s: {http.auth.user.%s} = %#v, %t; want the string %q", m, name, got, ok, value)
			}
		}
	}
	setUserPlaceholders(repl, &identity.Identity{Username: "sam", Method: identity.MethodSession, SecondFactor: true})
	if got, _ := repl.Get("http.auth.user.2fa"); got != "true" {
		t.Errorf("a session past its second factor: {http.auth.user.2fa} = %#v; want \"true\"", got)
	}
	id := &identity.Identity{Username: "alice", Roles: []string{"reader"}, Method: identity.MethodBasic}
	if n := testing.AllocsPerRun(100, func() { setUserPlaceholders(repl, id) }); n > 2 {
		t.Fatalf("setting the placeholders of a one-role basic identity allocates %.0f times; want at most 2 (the user's name and role boxed)", n)
	}
	// Several roles, joined when the account was cached (as the account
	// check sets them): not joined again per request.
	roles := []string{"ops", "reader"}
	id.SetRoles(roles, identity.JoinRoles(roles))
	if n := testing.AllocsPerRun(100, func() { setUserPlaceholders(repl, id) }); n > 2 {
		t.Fatalf("setting the placeholders of a two-role identity allocates %.0f times; want at most 2 (the user's name and roles boxed)", n)
	}
	if got, _ := repl.Get("http.auth.user.roles"); got != "ops,reader" {
		t.Fatalf("{http.auth.user.roles} = %#v; want \"ops,reader\"", got)
	}
}
