package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// forwardSite is basicSite with "forward user roles": only those two
// identity headers go upstream.
var forwardSite = strings.Replace(basicSite, "audience demo", "audience demo\n\t\tforward user roles", 1)

// TestForwardChosenHeaders: through bin/caddy, a route with "forward user
// roles" forwards exactly those two identity headers, and every spoofed
// one (chosen or not, any case, '_' for '-') is gone.
func TestForwardChosenHeaders(t *testing.T) {
	inst := harness.Start(t, forwardSite, harness.Options{})
	seedReader(t, inst, "alice")
	res := harness.Curl(t, "--http1.1", "-u", "alice:correct horse",
		"-H", "X-Gatehouse-User: mallory", "-H", "x-gatehouse-roles: admin", "-H", "X-Gatehouse-Auth: forged",
		"-H", "X-Gatehouse-Assertion: forged", "-H", "X_Gatehouse_App_Key: forged", "-H", "X-Gatehouse-2FA: true",
		"-H", "X-Gatehouse-Connector: forged", inst.HTTPSURL()+"/api/items")
	if res.Status != 200 {
		t.Fatalf("status %d: %s", res.Status, res.Body)
	}
	h := harness.ParseEcho(t, res.Body).Headers
	if h["X-Gatehouse-User"] != "alice" || h["X-Gatehouse-Roles"] != "reader" {
		t.Fatalf("chosen headers: %v", h)
	}
	for name, value := range h {
		lower := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if strings.HasPrefix(lower, "x-gatehouse-") && lower != "x-gatehouse-user" && lower != "x-gatehouse-roles" {
			t.Errorf("upstream received %s: %q", name, value)
		}
	}

	// An unknown name is refused when the config is adapted, naming it.
	bad := filepath.Join(t.TempDir(), "Caddyfile")
	config := "http://localhost:8080 {\n\tgatehouse {\n\t\taccept basic\n\t\tforward user rolez\n\t}\n\trespond ok\n}\n"
	if err := os.WriteFile(bad, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := harness.Command(t, harness.Binary(t), "adapt", "--config", bad, "--adapter", "caddyfile")
	if err == nil || !strings.Contains(out, `unknown forwarded header \"rolez\"`) {
		t.Fatalf("adapt accepted forward rolez or did not name it: %v\n%s", err, out)
	}
}
