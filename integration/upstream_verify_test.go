package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// docs:begin verify-go

// verifyAssertion checks an X-Gatehouse-Assertion: its ES256 signature
// against the JWKS document (GET /.well-known/gatehouse/jwks.json), its
// expiry, that it was issued by Gatehouse for this upstream, and that it
// was forwarded with a request of this method.
func verifyAssertion(token string, jwks []byte, audience, method string) (*assertion.Claims, error) {
	claims, err := assertion.Verify(token, jwks, time.Now())
	if err != nil {
		return nil, err
	}
	if claims.Issuer != "gatehouse" || claims.Audience != audience {
		return nil, fmt.Errorf("assertion of %q for %q, not for this upstream", claims.Issuer, claims.Audience)
	}
	if claims.HTTPMethod != method {
		return nil, fmt.Errorf("assertion forwarded with %s, not %s", claims.HTTPMethod, method)
	}
	return claims, nil
}

// docs:end

// docSnippet returns the fenced block that follows the line
// "<!-- snippet: name -->" in the Markdown file path (relative to the
// repository root).
func docSnippet(t *testing.T, path, name string) string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(raw), "<!-- snippet: "+name+" -->\n")
	if !ok {
		t.Fatalf("%s has no snippet %q", path, name)
	}
	open, body, ok := strings.Cut(after, "\n")
	if !strings.HasPrefix(open, "```") || !ok {
		t.Fatalf("snippet %q of %s does not start with a fence", name, path)
	}
	body, _, ok = strings.Cut(body, "\n```\n")
	if !ok {
		t.Fatalf("snippet %q of %s is not closed", name, path)
	}
	return body + "\n"
}

// TestUpstreamSnippetsVerifyTheAssertion runs the assertion verification
// snippets of docs/upstreams.md against an assertion a real Gatehouse
// forwarded: Go (this file's verifyAssertion, which the document must
// quote exactly), Python with Debian's python3-jwt and Node with npm's jose.
// Each accepts it for its audience and method and refuses it for another
// audience, another method and with a flipped signature.
func TestUpstreamSnippetsVerifyTheAssertion(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, basicSite, harness.Options{})
	seedReader(t, inst, "alice")
	res := harness.Curl(t, "-u", "alice:correct horse", inst.HTTPSURL()+"/api/x")
	if res.Status != 200 {
		t.Fatalf("GET /api/x: %d %s", res.Status, res.Body)
	}
	token := harness.ParseEcho(t, res.Body).Headers["X-Gatehouse-Assertion"]
	jwks := harness.Curl(t, inst.HTTPSURL()+"/.well-known/gatehouse/jwks.json")
	if token == "" || jwks.Status != 200 {
		t.Fatalf("assertion %q, JWKS %d %s", token, jwks.Status, jwks.Body)
	}
	// Flip one bit of the signature's first byte.
	dot := strings.LastIndex(token, ".") + 1
	flipped := token[:dot] + string(token[dot]^1) + token[dot+1:]
	dir := t.TempDir()
	jwksFile := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksFile, []byte(jwks.Body), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, token, audience, method string
		ok                            bool
	}{{"valid", token, "demo", "GET", true}, {"other audience", token, "billing", "GET", false},
		{"flipped signature", flipped, "demo", "GET", false}, {"other method", token, "demo", "DELETE", false}}

	t.Run("go", func(t *testing.T) {
		self, err := os.ReadFile("upstream_verify_test.go")
		if err != nil {
			t.Fatal(err)
		}
		_, src, _ := strings.Cut(string(self), "// docs:begin verify-go\n\n")
		src, _, _ = strings.Cut(src, "\n// docs:end")
		if got := docSnippet(t, "docs/upstreams.md", "go"); got != src {
			t.Errorf("the Go snippet of docs/upstreams.md differs from verifyAssertion here:\n%s\nwant:\n%s", got, src)
		}
		for _, c := range cases {
			claims, err := verifyAssertion(c.token, []byte(jwks.Body), c.audience, c.method)
			if (err == nil) != c.ok || (c.ok && (claims.Subject != "alice" || strings.Join(claims.Roles, ",") != "reader")) {
				t.Errorf("%s: %+v, %v", c.name, claims, err)
			}
		}
	})
	run := func(t *testing.T, interpreter, script string) {
		for _, c := range cases {
			out, err := exec.Command(interpreter, script, c.token, jwksFile, c.audience, c.method).CombinedOutput()
			if c.ok && (err != nil || strings.TrimSpace(string(out)) != "alice reader") {
				t.Errorf("%s: %v: %s", c.name, err, out)
			}
			if !c.ok && err == nil {
				t.Errorf("%s: accepted: %s", c.name, out)
			}
		}
	}
	t.Run("python", func(t *testing.T) {
		python := "/usr/bin/python3" // Debian's, with python3-jwt
		if err := exec.Command(python, "-c", "import jwt, cryptography").Run(); err != nil {
			requireLibrary(t, "python3-jwt for /usr/bin/python3")
		}
		script := filepath.Join(dir, "verify.py")
		if err := os.WriteFile(script, []byte(docSnippet(t, "docs/upstreams.md", "python")), 0o600); err != nil {
			t.Fatal(err)
		}
		run(t, python, script)
	})
	t.Run("node", func(t *testing.T) {
		node := harness.RequireTool(t, "node")
		root, _ := harness.RepoRoot()
		modules := filepath.Join(root, "tools", "jsverify", "node_modules")
		if _, err := os.Stat(filepath.Join(modules, "jose")); err != nil {
			requireLibrary(t, "npm jose in tools/jsverify/node_modules")
		}
		// The script imports "jose", found in node_modules beside it.
		nodeDir := filepath.Join(dir, "node")
		if err := os.MkdirAll(nodeDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(modules, filepath.Join(nodeDir, "node_modules")); err != nil {
			t.Fatal(err)
		}
		script := filepath.Join(nodeDir, "verify.mjs")
		if err := os.WriteFile(script, []byte(docSnippet(t, "docs/upstreams.md", "node")), 0o600); err != nil {
			t.Fatal(err)
		}
		run(t, node, script)
	})
}

// requireLibrary fails the test when GATEHOUSE_REQUIRE_TOOLS=1 (make test
// sets it, after make tools installed what) and skips it otherwise.
func requireLibrary(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("GATEHOUSE_REQUIRE_TOOLS") == "1" {
		t.Fatalf("%s is required (make tools installs it)", what)
	}
	t.Skipf("%s is not installed", what)
}

// audienceOfAnotherRouteSite has two routes on one site that answers any
// host name: /b/* with the audience "localhost", and the rest without one,
// whose assertions name the host the request names, which the client
// chooses: "localhost" too. (Where the site itself is localhost, the
// config does not load: TestAnotherSitesAudienceFailsTheLoad.)
const audienceOfAnotherRouteSite = `{
	admin 127.0.0.1:{{.AdminPort}}
	skip_install_trust
	auto_https disable_redirects
	gatehouse {
		data_dir {{.DataDir}}
	}
}
http://:{{.HTTPPort}} {
	handle /b/* {
		gatehouse {
			accept basic
			audience localhost
		}
		reverse_proxy 127.0.0.1:{{.UpstreamPort}}
	}
	handle {
		gatehouse {
			accept basic
		}
		reverse_proxy 127.0.0.1:{{.UpstreamPort}}
	}
}
http://:{{.UpstreamPort}} {
	bind 127.0.0.1
	gatehouse_echo
}
`

// TestNoAssertionForAnotherRoutesAudience: a route without an audience
// does not sign an assertion for a host another route names as its
// audience, whose upstream would take it — from the first request after
// the start, before that other route has served any.
func TestNoAssertionForAnotherRoutesAudience(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, audienceOfAnotherRouteSite, harness.Options{})
	seedReader(t, inst, "alice")
	res := harness.Curl(t, "-u", "alice:correct horse", inst.HTTPURL()+"/api/x")
	if res.Status != 403 || !strings.Contains(res.Body, "another route") {
		t.Fatalf("the first request, on the route without an audience: %d %s; want 403", res.Status, res.Body)
	}
}
