package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// esaPassOnSite serves the ESA API on a site whose other paths go to the
// upstream with no gatehouse handler (an operator's choice: that route
// is not Gatehouse's).
const esaPassOnSite = `{
	admin 127.0.0.1:{{.AdminPort}}
	skip_install_trust
	auto_https disable_redirects
	gatehouse {
		data_dir {{.DataDir}}
	}
}
https://localhost:{{.ESAPort}} {
	tls internal
	gatehouse_esa
	reverse_proxy 127.0.0.1:{{.UpstreamPort}}
}
http://:{{.UpstreamPort}} {
	bind 127.0.0.1
	gatehouse_echo
}
`

// TestESASitePassesOnNoIdentityHeaders: through bin/caddy, a request that
// gatehouse_esa passes on (not an ESA path) reaches the upstream without
// the identity headers the client sent, in any spelling; its other
// headers go on.
func TestESASitePassesOnNoIdentityHeaders(t *testing.T) {
	inst := harness.Start(t, esaPassOnSite, harness.Options{})
	waitTLS(t, inst.Ports.ESAPort)
	res := harness.Curl(t, "-H", "X-Gatehouse-User: mallory", "-H", "x-gatehouse-roles: admins", "-H", "X-Gatehouse-Assertion: forged",
		"-H", "X-Other: kept", fmt.Sprintf("https://localhost:%d/app/x", inst.Ports.ESAPort))
	var echo struct {
		Headers map[string]string `json:"headers"`
	}
	if res.Status != 200 || json.Unmarshal([]byte(res.Body), &echo) != nil {
		t.Fatalf("passed on: %d %s", res.Status, res.Body)
	}
	for name := range echo.Headers {
		if strings.HasPrefix(strings.ToLower(name), "x-gatehouse-") {
			t.Errorf("the upstream got %s: %q", name, echo.Headers[name])
		}
	}
	if echo.Headers["X-Other"] != "kept" {
		t.Errorf("X-Other: %q, want kept", echo.Headers["X-Other"])
	}
}
