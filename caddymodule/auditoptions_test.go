package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestAuditRefusalsPerMinute: the Caddyfile takes a number of at least 1
// or unlimited (-1 in JSON), and refuses anything else with an error that
// names the option.
func TestAuditRefusalsPerMinute(t *testing.T) {
	for in, want := range map[string]int{"50": 50, "1": 1, "unlimited": -1} {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n audit_refusals_per_minute " + in + "\n}")); err != nil || a.AuditRefusalsPerMinute != want {
			t.Errorf("audit_refusals_per_minute %s: %d, %v; want %d", in, a.AuditRefusalsPerMinute, err, want)
		}
	}
	for _, bad := range []string{"0", "-1", "lots", "1.5", "", "50 60"} {
		err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n audit_refusals_per_minute " + bad + "\n}"))
		if err == nil || (bad != "" && bad != "50 60" && !strings.Contains(err.Error(), "audit_refusals_per_minute")) {
			t.Errorf("audit_refusals_per_minute %q: %v; want an error naming the option", bad, err)
		}
	}
}
