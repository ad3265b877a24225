package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestOptionErrorsNameTheOption: a wrong duration, number or on/off value
// is refused with an error that names the option it was given to (Caddy
// adds only the file and line), so that an operator with several such
// options on a line's neighbours knows which one to fix.
func TestOptionErrorsNameTheOption(t *testing.T) {
	for _, tc := range []struct{ global, want string }{
		{"assertion_lifetime 5x", `assertion_lifetime: "5x" is not a positive duration`},
		{"session_idle 0", `session_idle: "0" is not a positive duration`},
		{"lockout_threshold -1", `lockout_threshold: "-1" is not a whole number`},
		{"hotp_window many", `hotp_window: "many" is not a whole number`},
		{"audit_allowed maybe", `audit_allowed: "maybe": want on or off`},
		{"sms webhook https://sms.example/send {\n timeout 0s\n }", `timeout: "0s" is not a positive duration`},
		{"directory ldap {\n status_ttl -1s\n }", `status_ttl: "-1s" is not a positive duration`},
		{"directory ldap {\n starttls maybe\n }", `starttls: "maybe": want on or off`},
	} {
		err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n " + tc.global + "\n}"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error containing %q", tc.global, err, tc.want)
		}
	}
	for _, tc := range []struct{ route, want string }{
		{"appkey_query maybe", `appkey_query: "maybe": want on or off`},
		{"console yes", `console: "yes": want on or off`},
		{"forward_rewrite_headers 1", `forward_rewrite_headers: "1": want on or off`},
	} {
		err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n accept basic app_key\n " + tc.route + "\n}"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error containing %q", tc.route, err, tc.want)
		}
	}
}

// TestRouteOptionsThatCannotApply: `appkey_query off` on a route that
// does not accept app_key, a kind accepted twice, and a require_role that
// no role could be named, are refused with what is wrong rather than read
// as if they meant something.
func TestRouteOptionsThatCannotApply(t *testing.T) {
	for _, tc := range []struct {
		accept  []string
		noQuery bool
		require []string
		want    string
	}{
		{[]string{"basic", "session"}, true, nil, "does not accept app_key"},
		{[]string{"basic", "app_key", "basic"}, false, nil, `"basic" twice`},
		{[]string{"basic"}, false, []string{"finance", "plant operators"}, `require_role: role name "plant operators" may only hold`},
	} {
		h := &Handler{Accept: tc.accept, NoAppKeyQuery: tc.noQuery, RequireRole: tc.require}
		if _, err := h.routeOptions(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("accept %v, appkey_query off %t, require_role %v: %v; want an error containing %q", tc.accept, tc.noQuery, tc.require, err, tc.want)
		}
	}
	if _, err := (&Handler{Accept: []string{"basic", "app_key"}, NoAppKeyQuery: true}).routeOptions(); err != nil {
		t.Errorf("appkey_query off beside app_key: %v", err)
	}
}

// TestOptionGivenTwiceIsRefused: an option that takes one value given a
// second time in its block, and a second gatehouse global option block,
// fail the adapt naming the option: the last used to win without a word
// (audience a then audience b forwarded b; a second global block dropped
// the first one's data_dir). Options that take lists still add up.
func TestOptionGivenTwiceIsRefused(t *testing.T) {
	for _, block := range []string{
		"session_idle 30m\n session_idle 5m",
		"storage badger\n storage redis://localhost:6379/0",
		"directory ldap {\n bind_dn a\n bind_dn b\n }",
		"sms webhook https://sms.example/send {\n timeout 5s\n timeout 6s\n }",
	} {
		err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n " + block + "\n}"))
		if err == nil || !strings.Contains(err.Error(), "given twice") {
			t.Errorf("%q: %v; want a given twice error", block, err)
		}
	}
	for _, block := range []string{"audience a\n audience b", "stream_recheck 10s\n stream_recheck off", "console on\n console off", "appkey_query on\n appkey_query off"} {
		err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n accept basic app_key\n " + block + "\n}"))
		if err == nil || !strings.Contains(err.Error(), "given twice") {
			t.Errorf("%q: %v; want a given twice error", block, err)
		}
	}
	if err := new(ESAHandler).UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse_esa {\n portal_url https://a.example\n portal_url https://b.example\n}")); err == nil || !strings.Contains(err.Error(), "portal_url is given twice") {
		t.Errorf("portal_url twice: %v", err)
	}
	var a App
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n default_domain CORP\n default_domain corp.example.com\n connector_servers https://a.example\n connector_servers https://b.example\n directory ldap {\n url ldap://a\n url ldap://b\n group_role g1 r1\n group_role g2 r2\n }\n}")); err != nil {
		t.Fatalf("list options given twice: %v", err)
	}
	if len(a.DefaultDomain) != 2 || len(a.ConnectorServers) != 2 || len(a.Directory.URLs) != 2 || len(a.Directory.GroupRoles) != 2 {
		t.Errorf("list options given twice did not add up: %q %q %+v", a.DefaultDomain, a.ConnectorServers, a.Directory)
	}
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n accept basic\n accept session\n public /a\n public /b\n forward user\n forward roles\n}")); err != nil {
		t.Fatalf("route list options given twice: %v", err)
	}
	if len(h.Accept) != 2 || len(h.Public) != 2 || len(h.Forward) != 2 {
		t.Errorf("route list options given twice did not add up: %q %q %q", h.Accept, h.Public, h.Forward)
	}
	if _, err := parseGlobalOption(caddyfile.NewTestDispenser("gatehouse {\n issuer x\n}"), "an earlier block's value"); err == nil || !strings.Contains(err.Error(), "global option is given twice") {
		t.Errorf("a second global block: %v", err)
	}
}
