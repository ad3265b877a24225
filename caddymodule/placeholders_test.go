package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/conncount"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor/sms"
)

// TestUserPlaceholdersHoldTheIdentity: each placeholder holds the
// identity's value as a string (what Caddy's expressions and logs read),
// and only the values that vary by user and were not boxed beforehand are
// boxed on each request: the method is one of a few constants, a cached
// account's name and roles are boxed once.
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
	// Several roles, joined and boxed when the account was cached, and
	// its name boxed then too (as the account check sets them): nothing
	// boxed per request.
	roles := []string{"ops", "reader"}
	id.SetRoles(roles, identity.JoinRoles(roles))
	id.SetUsernameValue("alice")
	if n := testing.AllocsPerRun(100, func() { setUserPlaceholders(repl, id) }); n != 0 {
		t.Fatalf("setting the placeholders of a cached account's identity allocates %.0f times; want none (its name and roles boxed once)", n)
	}
	if got, _ := repl.Get("http.auth.user.id"); got != "alice" {
		t.Fatalf("{http.auth.user.id} = %#v; want \"alice\"", got)
	}
	if got, _ := repl.Get("http.auth.user.roles"); got != "ops,reader" {
		t.Fatalf("{http.auth.user.roles} = %#v; want \"ops,reader\"", got)
	}
}

// TestSMSWebhookPlaceholders: the SMS webhook's URL and headers take
// {env.*} and {file.*} placeholders, so that a gateway key stays out of
// the config (which GET /config/ serves), and a brace that is no
// placeholder Caddy knows stays as written. A placeholder that is empty
// where Caddy runs fails the start, naming it, as bind_password's does:
// before, the header was sent empty, and every SMS code was refused by
// the gateway with nothing said at the start. So does a value no HTTP
// header can carry.
func TestSMSWebhookPlaceholders(t *testing.T) {
	type request struct {
		header http.Header
		query  url.Values
	}
	got := make(chan request, 1)
	gateway := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		got <- request{r.Header.Clone(), r.URL.Query()}
	}))
	defer gateway.Close()
	keyFile := filepath.Join(t.TempDir(), "sms-key")
	if err := os.WriteFile(keyFile, []byte("file-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GATEHOUSE_TEST_SMS_TOKEN", "env-token")
	t.Setenv("GATEHOUSE_TEST_SMS_UNSET", "")
	start := func(headers map[string]string) (*App, error) {
		raw, err := json.Marshal(map[string]any{"sender": "webhook", "url": gateway.URL + "/send?t={env.GATEHOUSE_TEST_SMS_TOKEN}", "headers": headers})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		t.Cleanup(cancel)
		a := &App{DataDir: t.TempDir(), SMSRaw: raw}
		if err := a.Provision(ctx); err != nil {
			t.Fatalf("Provision (caddy validate) of %v: %v; want it to pass", headers, err)
		}
		t.Cleanup(func() { _ = a.Stop(); _ = a.cleanup(true) })
		return a, a.Start()
	}
	a, err := start(map[string]string{"X-Api-Key": "{file." + keyFile + "}", "X-Literal": "a{b}c"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.smsSender.Send(t.Context(), sms.Message{To: "+15550100", Message: "hello"}); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.header.Get("X-Api-Key") != "file-key" || r.header.Get("X-Literal") != "a{b}c" || r.query.Get("t") != "env-token" {
		t.Fatalf("the gateway got X-Api-Key %q, X-Literal %q and t=%q; want the file's key, a{b}c and the variable's token",
			r.header.Get("X-Api-Key"), r.header.Get("X-Literal"), r.query.Get("t"))
	}
	const unset = "{env.GATEHOUSE_TEST_SMS_UNSET}"
	if _, err := start(map[string]string{"X-Api-Key": unset}); err == nil || !strings.Contains(err.Error(), unset) ||
		!strings.Contains(err.Error(), "X-Api-Key") || !strings.Contains(err.Error(), "environment") {
		t.Fatalf("start with %s unset in the header: %v; want an error naming the header, the placeholder and Caddy's environment", unset, err)
	}
	// A value with a line break (a key file ending in two newlines:
	// Caddy trims one) is no header Go's client sends: every SMS failed,
	// "invalid header field value", with nothing said at the start.
	if err := os.WriteFile(keyFile, []byte("file-key\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := start(map[string]string{"Authorization": "Bearer {file." + keyFile + "}"}); err == nil ||
		!strings.Contains(err.Error(), "Authorization") || !strings.Contains(err.Error(), keyFile) || strings.Contains(err.Error(), "file-key") {
		t.Fatalf("start with a header value ending in a line break: %v; want an error naming the header and the placeholder, not the key", err)
	}
}

// TestReloadClosesTheSMSGatewaysConnections: the context Caddy cancels
// when a reload or the exit lets go of a config closes the webhook
// sender's connection to the gateway (an outside review saw it outlive
// the reload by the transport's idle timeout, 90 s).
func TestReloadClosesTheSMSGatewaysConnections(t *testing.T) {
	gateway := conncount.Start(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	a := &App{DataDir: t.TempDir(), SMSRaw: json.RawMessage(`{"sender":"webhook","url":"` + gateway.URL + `"}`)}
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if err := a.smsSender.Send(t.Context(), sms.Message{To: "+15550100", Message: "hello"}); err != nil {
		t.Fatal(err)
	}
	if gateway.Open() != 1 {
		t.Fatalf("%d connections to the gateway after a text; want the one kept for the next", gateway.Open())
	}
	_ = a.Stop()
	cancel() // what Caddy does to the old config's context
	_ = a.cleanup(true)
	gateway.WaitAllClosed(t, "after the config was let go of")
}
