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
// does not accept app_key, and a kind accepted twice, are refused with
// what is wrong rather than read as if they meant something.
func TestRouteOptionsThatCannotApply(t *testing.T) {
	for _, tc := range []struct {
		accept  []string
		noQuery bool
		want    string
	}{
		{[]string{"basic", "session"}, true, "does not accept app_key"},
		{[]string{"basic", "app_key", "basic"}, false, `"basic" twice`},
	} {
		h := &Handler{Accept: tc.accept, NoAppKeyQuery: tc.noQuery}
		if _, err := h.routeOptions(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("accept %v, appkey_query off %t: %v; want an error containing %q", tc.accept, tc.noQuery, err, tc.want)
		}
	}
	if _, err := (&Handler{Accept: []string{"basic", "app_key"}, NoAppKeyQuery: true}).routeOptions(); err != nil {
		t.Errorf("appkey_query off beside app_key: %v", err)
	}
}
