package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// TestConnectorPackageInRealClients: a package, in each format, works in
// the clients connector developers use. openssl 3 reads certificates.pfx
// without -legacy and shows the format's algorithms; curl presents it as
// it is (--cert-type P12); and the Python (cryptography, ssl, urllib) and
// Node (https with pfx) clients of docs/clients.md, run as written there,
// get a token pair with it, call a protected route, refresh the pair and
// call it again. curl's refresh also shows the old access token refused.
func TestConnectorPackageInRealClients(t *testing.T) {
	parallel(t)
	harness.RequireTool(t, "openssl")
	inst := startConnectorSite(t, harness.Options{})
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/api/*"]}]}`)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "alice", "roles": []string{"reader"}})
	newConnector(t, inst, "c1", "alice")
	// Caddy's `tls internal` root, which the clients trust for the site.
	serverCA := filepath.Join(inst.Ports.Dir, "xdg-data", "caddy", "pki", "authorities", "local", "root.crt")
	const password = "Tulip harbour 93"
	api := inst.HTTPSURL() + "/api/items"
	for _, tc := range []struct {
		name, format string
		algorithms   []string // what `openssl pkcs12 -info` shows
	}{
		{"modern", "", []string{"MAC: sha256, Iteration 100000", "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 100000, PRF hmacWithSHA256"}},
		{"legacy", "legacy", []string{"MAC: sha1, Iteration 2048", "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]string{"password": password}
			if tc.format != "" {
				body["format"] = tc.format
			}
			status, zipped := inst.Admin(t, "POST", "/gatehouse/connectors/c1/package", body)
			if status != 200 {
				t.Fatalf("package: %d %s", status, zipped)
			}
			dir := t.TempDir()
			files := unzip(t, zipped)
			zipFile := writeFile(t, dir, "c1.zip", string(zipped))
			pfx := writeFile(t, dir, "certificates.pfx", string(files["certificates.pfx"]))
			meta := writeFile(t, dir, "metadata.json", string(files["metadata.json"]))

			info, err := harness.Command(t, "openssl", "pkcs12", "-info", "-noout", "-in", pfx, "-passin", "pass:"+password)
			if err != nil {
				t.Fatalf("openssl pkcs12 -info (without -legacy): %v\n%s", err, info)
			}
			for _, want := range tc.algorithms {
				if !strings.Contains(info, want) {
					t.Errorf("openssl pkcs12 -info lacks %q:\n%s", want, info)
				}
			}

			p12 := []string{"--cert-type", "P12", "--cert", pfx + ":" + password}
			tokenCall := func(form ...string) oauthAnswer {
				t.Helper()
				args := append(append([]string{}, p12...), "-X", "POST", inst.HTTPSURL()+"/gatehouse/v1/token")
				for _, f := range form {
					args = append(args, "-d", f)
				}
				a := parseOAuth(t, harness.Curl(t, args...))
				if a.status != 200 || a.AccessToken == "" || a.RefreshToken == "" {
					t.Fatalf("curl token %v: %d %s %s", form, a.status, a.Error, a.Description)
				}
				return a
			}
			get := func(access string) int {
				t.Helper()
				return harness.Curl(t, append(append([]string{}, p12...), "-H", "Authorization: Bearer "+access, api)...).Status
			}
			first := tokenCall("grant_type=certificate")
			if s := get(first.AccessToken); s != 200 {
				t.Errorf("curl: the access token got %d", s)
			}
			second := tokenCall("grant_type=refresh_token", "refresh_token="+first.RefreshToken)
			if s1, s2 := get(first.AccessToken), get(second.AccessToken); s1 != 401 || s2 != 200 {
				t.Errorf("curl after a refresh: the old access token got %d, the new one %d; want 401 and 200", s1, s2)
			}

			env := []string{"PKG_PASSWORD=" + password, "SERVER_CA=" + serverCA}
			const want = "certificate grant: 200\nrefreshed: 200\n"
			t.Run("python", func(t *testing.T) {
				python := "/usr/bin/python3" // Debian's, with python3-cryptography (make tools)
				if err := exec.Command(python, "-c", "import cryptography").Run(); err != nil {
					requireLibrary(t, "python3-cryptography for /usr/bin/python3")
				}
				script := writeFile(t, dir, "connector.py", docSnippet(t, "docs/clients.md", "connector-python"))
				if out := runClient(t, env, python, script, zipFile, api); out != want {
					t.Errorf("the Python client printed %q; want %q", out, want)
				}
			})
			t.Run("node", func(t *testing.T) {
				node := harness.RequireTool(t, "node")
				script := writeFile(t, dir, "connector.js", docSnippet(t, "docs/clients.md", "connector-node"))
				if out := runClient(t, env, node, script, pfx, meta, api); out != want {
					t.Errorf("the Node client printed %q; want %q", out, want)
				}
			})
		})
	}
}

// runClient runs a client program with env added to the environment and
// returns its output, failing the test when it fails.
func runClient(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
