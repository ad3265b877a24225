package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestDirectiveTakesNoMatcher: a request matcher on the gatehouse directive
// is refused when the Caddyfile is adapted (the requests it leaves out
// would reach the upstream unchecked, with the identity headers clients
// send), with an error naming the public option; without one, or with
// the match-all `*`, the site adapts.
func TestDirectiveTakesNoMatcher(t *testing.T) {
	site := func(directive string) string {
		return "http://:8080 {\n\t@protected not path /public/*\n\t" + directive + " {\n\t\taccept basic\n\t}\n\treverse_proxy 127.0.0.1:9\n}\n"
	}
	for _, refused := range []string{"gatehouse /admin/*", "gatehouse @protected", "gatehouse /"} {
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(site(refused)), nil)
		if err == nil || !strings.Contains(err.Error(), "gatehouse takes no request matcher") || !strings.Contains(err.Error(), "public option") {
			t.Errorf("%s: %v; want the matcher refused, naming the public option", refused, err)
		}
	}
	for _, accepted := range []string{"gatehouse", "gatehouse *"} {
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(site(accepted)), nil)
		if err != nil {
			t.Errorf("%s: %v", accepted, err)
			continue
		}
		if !strings.Contains(string(out), `"handler":"gatehouse"`) {
			t.Errorf("%s: no gatehouse handler in %s", accepted, out)
		}
	}
}

// TestOpenPublicPatternsAreNamed: the patterns Provision warns of are those
// that let every path through, and only those.
func TestOpenPublicPatternsAreNamed(t *testing.T) {
	got := openPatterns([]string{"/healthz", "/public/*", "*", "/assets/*", "/*", "/"})
	if strings.Join(got, " ") != "* /*" {
		t.Fatalf("open patterns: %q; want * and /*", got)
	}
}
