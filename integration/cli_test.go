package integration

import (
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// cliSite is twoFactorSite (its ESA API, SMS file and lockout) whose
// protected site takes every credential kind, connectors' client
// certificates asked for when given.
var cliSite = strings.Replace(twoFactorSite, "\ttls internal\n\tgatehouse {\n\t\taccept basic session\n", `	tls internal {
		client_auth {
			mode verify_if_given
			trust_pool gatehouse_connectors
		}
	}
	gatehouse {
		accept basic app_key connector session
`, 1)

// gatehouseCLI runs bin/caddy gatehouse against inst's admin endpoint.
type gatehouseCLI struct {
	t    *testing.T
	addr string
}

// run runs the command with stdin, returning its output and whether it
// exited 0.
func (c gatehouseCLI) run(stdin string, args ...string) (string, bool) {
	c.t.Helper()
	out, status := c.exit(stdin, args...)
	return out, status == 0
}

// exit runs the command with stdin, returning its output and exit status.
func (c gatehouseCLI) exit(stdin string, args ...string) (string, int) {
	c.t.Helper()
	cmd := exec.Command(harness.Binary(c.t), append([]string{"gatehouse", "--address", c.addr}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var exited *exec.ExitError
	if err != nil && !errors.As(err, &exited) {
		c.t.Fatalf("caddy gatehouse %v: %v", args, err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// must runs the command, which must succeed, and returns its output.
func (c gatehouseCLI) must(stdin string, args ...string) string {
	c.t.Helper()
	out, ok := c.run(stdin, args...)
	if !ok {
		c.t.Fatalf("caddy gatehouse %v failed:\n%s", args, out)
	}
	return out
}

// json runs the command, which must succeed, and decodes its output.
func (c gatehouseCLI) json(into any, stdin string, args ...string) {
	c.t.Helper()
	out := c.must(stdin, args...)
	if err := json.Unmarshal([]byte(out), into); err != nil {
		c.t.Fatalf("caddy gatehouse %v: %v in\n%s", args, err, out)
	}
}

// fails runs the command, which must exit non-zero saying want.
func (c gatehouseCLI) fails(want, stdin string, args ...string) {
	c.t.Helper()
	if out, ok := c.run(stdin, args...); ok || !strings.Contains(out, want) {
		c.t.Errorf("caddy gatehouse %v: exit 0 %v, want a failure saying %q:\n%s", args, ok, want, out)
	}
}

// TestCLIManagesEveryCredential: every credential the admin API manages —
// application keys, connectors and their packages, bearer tokens, second
// factors, ESA API credentials, sessions — is managed with the CLI alone,
// and what it did is what a client then sees (curl, openssl, oathtool, the
// ESA API); secrets go in on stdin; commands given wrongly fail and change
// nothing.
func TestCLIManagesEveryCredential(t *testing.T) {
	parallel(t)
	harness.RequireTool(t, "openssl")
	ti := startTwoFactorSite(t, cliSite, harness.Options{})
	cli := gatehouseCLI{t: t, addr: "127.0.0.1:" + strconv.Itoa(ti.Ports.AdminPort)}
	cli.must("", "roles", "put", "staff", "--allow", "GET / /app/* /api/*")
	cli.must(tfPassword+"\n", "users", "add", "carol", "--role", "staff", "--password-stdin")
	site := ti.HTTPSURL()

	t.Run("appkeys", func(t *testing.T) {
		status := func(key string) int { return harness.Curl(t, "-H", "appKey: "+key, site+"/app/x").Status }
		var created struct {
			Key       string    `json:"key"`
			ExpiresAt time.Time `json:"expires_at"`
			Allowlist []string  `json:"ip_allowlist"`
			Tags      []string  `json:"tags"`
		}
		cli.json(&created, "", "appkeys", "create", "k1", "--username", "carol", "--expires-in", "2h",
			"--allow-ip", "127.0.0.1,::1", "--tag", "nightly", "--tag", "export", "--description", "the nightly export")
		if until := time.Until(created.ExpiresAt); until < 110*time.Minute || until > 2*time.Hour+time.Minute {
			t.Errorf("--expires-in 2h: expires in %s", until)
		}
		if !slices.Equal(created.Tags, []string{"nightly", "export"}) || len(created.Allowlist) != 2 || created.Key == "" {
			t.Errorf("created: %+v", created)
		}
		if s := status(created.Key); s != 200 {
			t.Fatalf("key made by the CLI: %d", s)
		}
		cli.must("", "appkeys", "update", "k1", "--allow-ip", "192.0.2.1")
		if s := status(created.Key); s == 200 {
			t.Fatal("the key works from an address its new allowlist leaves out")
		}
		// An empty value ("--allow-ip $IPS", IPS unset) is no "any address".
		cli.fails("an empty value", "", "appkeys", "update", "k1", "--allow-ip", "")
		cli.fails("an empty value", "", "appkeys", "update", "k1", "--allow-ip", "192.0.2.1,")
		if s := status(created.Key); s == 200 {
			t.Fatal("an empty --allow-ip opened the key to any address")
		}
		cli.must("", "appkeys", "update", "k1", "--allow-any-ip")
		if s := status(created.Key); s != 200 {
			t.Fatalf("after --allow-any-ip: %d", s)
		}
		// update sends only the fields given: the description stays.
		got := cli.must("", "appkeys", "get", "k1")
		if !strings.Contains(got, "the nightly export") || strings.Contains(got, created.Key) {
			t.Errorf("appkeys get k1 (the description kept, never the value):\n%s", got)
		}
		var revealed, rotated, again struct{ Key string }
		cli.json(&revealed, "", "appkeys", "key", "k1")
		if revealed.Key != created.Key {
			t.Error("appkeys key shows another value")
		}
		cli.json(&rotated, "", "appkeys", "rotate", "k1", "--grace", "5m")
		if status(rotated.Key) != 200 || status(created.Key) != 200 {
			t.Error("after a rotation with --grace 5m the new value and the old should both work")
		}
		cli.json(&again, "", "appkeys", "rotate", "k1")
		if status(again.Key) != 200 || status(rotated.Key) == 200 {
			t.Error("after a rotation without grace only the new value should work")
		}
		if !strings.Contains(cli.must("", "appkeys", "list", "--username", "carol"), `"k1"`) {
			t.Error("appkeys list --username carol lacks k1")
		}
		// Wrong commands fail and change nothing.
		cli.fails("nothing to change", "", "appkeys", "update", "k1")
		cli.fails("RFC 3339", "", "appkeys", "update", "k1", "--expires-at", "tomorrow")
		cli.fails("a time ahead", "", "appkeys", "update", "k1", "--expires-in", "-1h")
		cli.fails("whole seconds", "", "appkeys", "rotate", "k1", "--grace", "1.5s")
		cli.fails(`required flag(s) "username"`, "", "appkeys", "create", "k2")
		cli.fails("not found", "", "appkeys", "delete", "k1", "--username", "admin-nobody")
		cli.fails("--username is empty", "", "appkeys", "delete", "k1", "--username", "")
		cli.fails("an empty name", "", "appkeys", "rotate", "")
		// Another service answering JSON at --address is not taken for Gatehouse.
		wrong := gatehouseCLI{t: t, addr: "127.0.0.1:" + strconv.Itoa(ti.Ports.UpstreamPort)}
		wrong.fails("without Gatehouse's Gatehouse-Admin-Api header", "", "appkeys", "delete", "k1")
		if status(again.Key) != 200 {
			t.Fatal("the key after the failed commands stopped working")
		}
		cli.must("", "appkeys", "delete", "k1")
		if s := status(again.Key); s == 200 {
			t.Fatal("a deleted key works")
		}
		if !strings.Contains(cli.must("", "appkeys", "purge-expired"), `"deleted"`) {
			t.Error("purge-expired answers no count")
		}
	})

	t.Run("connectors and tokens", func(t *testing.T) {
		dir := t.TempDir()
		var first connectorAnswer
		cli.json(&first, "", "connectors", "create", "c1", "--username", "carol")
		c1 := connectorFiles{name: "c1", cert: writeFile(t, dir, "c1.crt", first.Certificate), key: writeFile(t, dir, "c1.key", first.PrivateKeyPEM)}
		tok := mustToken(t, ti.Instance, c1)
		if s := callAPI(t, ti.Instance, c1, tok.AccessToken).Status; s != 200 {
			t.Fatalf("token of a connector made by the CLI: %d", s)
		}
		var tokens []map[string]any
		cli.json(&tokens, "", "tokens", "list", "--connector", "c1", "--username", "carol")
		if len(tokens) != 1 || strings.Contains(cli.must("", "tokens", "list"), tok.AccessToken) {
			t.Fatalf("tokens list: %v (one token, never its value)", tokens)
		}
		cli.must("", "tokens", "revoke", tokens[0]["id"].(string))
		if s := callAPI(t, ti.Instance, c1, tok.AccessToken).Status; s != 401 {
			t.Fatalf("token revoked by the CLI: %d", s)
		}

		// A package: to a new file only its owner reads, the password on stdin.
		fingerprint := func() string {
			var got connectorAnswer
			cli.json(&got, "", "connectors", "get", "c1")
			return got.Fingerprint
		}
		zipPath := filepath.Join(dir, "c1.zip")
		cli.must("package password\n", "connectors", "package", "c1", "--output", zipPath)
		info, err := os.Stat(zipPath)
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("package file: %v %v; want mode 0600", info, err)
		}
		zipped, _ := os.ReadFile(zipPath)
		pfx := writeFile(t, dir, "c1.pfx", string(unzip(t, zipped)["certificates.pfx"]))
		pem := filepath.Join(dir, "c1-pkg.pem")
		openPKCS12(t, pfx, "package password", pem, "-nodes")
		pkg := connectorFiles{name: "c1", cert: pem, key: pem}
		if s := tokenRequest(t, ti.Instance, c1, "", "-d", "grant_type=certificate").status; s == 200 {
			t.Fatal("the certificate before the package still gets tokens")
		}
		mustToken(t, ti.Instance, pkg)
		// A package that cannot be written, or without a password, is not
		// issued: the installed certificate keeps working.
		packaged := fingerprint()
		cli.fails("must be a new file", "other password\n", "connectors", "package", "c1", "--output", zipPath)
		cli.fails("no password", "", "connectors", "package", "c1", "--output", filepath.Join(dir, "c1-again.zip"))
		cli.fails("required flag", "other password\n", "connectors", "package", "c1")
		if fingerprint() != packaged {
			t.Fatal("a failed package command replaced the certificate")
		}
		if _, err := os.Stat(filepath.Join(dir, "c1-again.zip")); err == nil {
			t.Error("a failed package command left a file")
		}
		mustToken(t, ti.Instance, pkg)
		// A package issued but not written (here: over the file size limit)
		// is said to be lost, and leaves no file.
		tooBig := filepath.Join(dir, "c1-too-big.zip")
		cmd := exec.Command("bash", "-c", `ulimit -f 1 && exec "$0" "$@"`, harness.Binary(t),
			"gatehouse", "--address", cli.addr, "connectors", "package", "c1", "--output", tooBig)
		cmd.Stdin = strings.NewReader("package password\n")
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "issued but not written") {
			t.Errorf("a package that could not be written: %v\n%s", err, out)
		}
		if _, err := os.Stat(tooBig); err == nil {
			t.Error("a package that could not be written left a file")
		}
		if fingerprint() == packaged {
			t.Fatal("the package over the size limit was not issued; the test proves nothing")
		}
		cli.must("package password\n", "connectors", "package", "c1", "--output", "-")
		// --format legacy: 3DES and a SHA-1 MAC, for the clients that cannot
		// read the default; a format of another name is refused, and no file
		// is left.
		legacyZip := filepath.Join(dir, "c1-legacy.zip")
		cli.must("package password\n", "connectors", "package", "c1", "--format", "legacy", "--output", legacyZip)
		zipped, _ = os.ReadFile(legacyZip)
		legacyPFX := writeFile(t, dir, "c1-legacy.pfx", string(unzip(t, zipped)["certificates.pfx"]))
		if info, err := harness.Command(t, "openssl", "pkcs12", "-info", "-noout", "-in", legacyPFX, "-passin", "pass:package password"); err != nil ||
			!strings.Contains(info, "pbeWithSHA1And3-KeyTripleDES-CBC") || !strings.Contains(info, "MAC: sha1") {
			t.Errorf("connectors package --format legacy: %v\n%s", err, info)
		}
		cli.fails("format must be", "package password\n", "connectors", "package", "c1", "--format", "des", "--output", filepath.Join(dir, "c1-des.zip"))
		if _, err := os.Stat(filepath.Join(dir, "c1-des.zip")); err == nil {
			t.Error("a package of an unknown format left a file")
		}

		// A certificate for the operator's own key, from a CSR.
		key, csr := filepath.Join(dir, "own.key"), filepath.Join(dir, "own.csr")
		if out, err := harness.Command(t, "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
			"-subj", "/CN=own", "-keyout", key, "-out", csr); err != nil {
			t.Fatalf("openssl req: %v\n%s", err, out)
		}
		var reissued connectorAnswer
		cli.json(&reissued, "", "connectors", "reissue", "c1", "--csr", csr)
		if reissued.PrivateKeyPEM != "" || reissued.Certificate == "" {
			t.Fatalf("reissue with a CSR: %+v", reissued)
		}
		own := connectorFiles{name: "c1", cert: writeFile(t, dir, "own.crt", reissued.Certificate), key: key}
		tok = mustToken(t, ti.Instance, own)
		cli.must("", "connectors", "delete", "c1")
		if s := callAPI(t, ti.Instance, own, tok.AccessToken).Status; s != 401 {
			t.Fatalf("token of a connector deleted by the CLI: %d", s)
		}
	})

	t.Run("second factors, ESA credentials and sessions", func(t *testing.T) {
		var cred apiCredential
		cli.json(&cred, "", "api-credentials", "create", "cli-esa", "--auth-api")
		if cred.Username == "" || cred.Password == "" || strings.Contains(cli.must("", "api-credentials", "list"), cred.Password) {
			t.Fatalf("api-credentials create/list: %+v", cred)
		}
		authenticate := func(otp string) any {
			return ti.esa(cred, "/auth/v1/authenticate", `{"username":"carol","otp":"`+otp+`"}`)["authenticated"]
		}
		var enrolled struct {
			URI string `json:"otpauth_uri"`
		}
		raw := cli.must("", "otp", "add", "carol", "app")
		if !strings.Contains(raw, "&digits=") {
			t.Errorf("otp add app: the URI's & is escaped, past a copy and paste:\n%s", raw)
		}
		if err := json.Unmarshal([]byte(raw), &enrolled); err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(enrolled.URI)
		if err != nil || u.Query().Get("secret") == "" {
			t.Fatalf("otp add app: %q", enrolled.URI)
		}
		if got := authenticate(totpNow(t, u.Query().Get("secret"))); got != true {
			t.Fatalf("TOTP of the app enrolled by the CLI: %v", got)
		}
		const tokenSecret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
		cli.must(tokenSecret+"\n", "otp", "add", "carol", "hard-token", "--secret-stdin", "--counter", "5")
		if got := authenticate(oathtool(t, "-c", "5", "-b", tokenSecret)); got != true {
			t.Fatalf("HOTP of the token imported by the CLI: %v", got)
		}

		// A portal session, listed and ended.
		portal := portalLogin(t, ti, "carol", tfPassword, oathtool(t, "-c", "6", "-b", tokenSecret))
		if s := portal.do(site + "/app/x").Status; s != 200 {
			t.Fatalf("portal session: %d", s)
		}
		var sessions []map[string]any
		cli.json(&sessions, "", "sessions", "list", "carol")
		if len(sessions) != 1 {
			t.Fatalf("sessions list carol: %v", sessions)
		}
		cli.must("", "sessions", "end", sessions[0]["id"].(string))
		if s := portal.do(site + "/app/x").Status; s == 200 {
			t.Fatal("a session ended by the CLI still works")
		}

		cli.fails("app, sms or hard-token", "", "otp", "add", "carol", "totp")
		cli.fails("--secret-stdin", "", "otp", "add", "carol", "hard-token")
		cli.fails("--all", "", "otp", "remove", "carol")
		cli.fails("an empty name", "", "otp", "remove", "", "--all")
		cli.fails("an empty name", "", "users", "end-sessions", "")
		cli.must("", "users", "set-mobile", "carol", "+421 900 123 456")
		if got := cli.must("", "users", "get", "carol"); !strings.Contains(got, "+421900123456") {
			t.Errorf("users set-mobile: %s", got)
		}
		cli.fails("--none", "", "users", "set-mobile", "carol")
		cli.fails("the number is empty", "", "users", "set-mobile", "carol", "")
		cli.must("", "users", "set-mobile", "carol", "--none")
		if got := cli.must("", "users", "get", "carol"); strings.Contains(got, "+421") {
			t.Errorf("users set-mobile --none: %s", got)
		}
		cli.fails("enable the credential", "", "api-credentials", "create", "nothing-enabled")
		show := func() string { return cli.must("", "otp", "show", "carol") }
		if got := show(); !strings.Contains(got, "APP") || !strings.Contains(got, "HARD_TOKEN") {
			t.Fatalf("after the failed commands: %s", got)
		}
		cli.must("", "otp", "remove", "carol", "app")
		if got := show(); strings.Contains(got, `"APP"`) || !strings.Contains(got, "HARD_TOKEN") {
			t.Fatalf("otp remove carol app: %s", got)
		}
		cli.must("", "otp", "unlock", "carol")
		cli.must("", "otp", "remove", "carol", "--all")
		if got := show(); strings.Contains(got, "HARD_TOKEN") {
			t.Fatalf("otp remove carol --all: %s", got)
		}
		cli.must("", "api-credentials", "delete", "cli-esa")
		if s := harness.Curl(t, "-u", cred.Username+":"+cred.Password, "-H", "Content-Type: application/json",
			"-d", `{"username":"carol","otp":"000000"}`, ti.esaURL()+"/auth/v1/authenticate").Status; s != 403 {
			t.Fatalf("ESA credential deleted by the CLI: %d; want 403, ESA's answer to unknown credentials", s)
		}
	})
}
