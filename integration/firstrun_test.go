package integration

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// exampleTemplate turns the checkout's Caddyfile.example into a harness
// template: its fixed ports become free ones, and extraGlobal (when set) is
// added to the gatehouse global option after data_dir. Everything else is
// the file as `make run` runs it.
func exampleTemplate(t *testing.T, extraGlobal string) string {
	t.Helper()
	s := readExample(t)
	for _, swap := range [][2]string{{"localhost:2019", "localhost:{{.AdminPort}}"}, {":8443", ":{{.HTTPSPort}}"},
		{":8001", ":{{.ESAPort}}"}, {":9080", ":{{.UpstreamPort}}"}, {"data_dir ./data\n", "data_dir ./data\n" + extraGlobal + "\n"}} {
		if !strings.Contains(s, swap[0]) {
			t.Fatalf("Caddyfile.example no longer holds %q; update this test with it", swap[0])
		}
		s = strings.ReplaceAll(s, swap[0], swap[1])
	}
	return s
}

// readExample returns the checkout's Caddyfile.example.
func readExample(t *testing.T) string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// unprivileged is the credential of an ordinary user for Caddy when the
// test runs as root (nil otherwise: the test user is ordinary already).
func unprivileged(t *testing.T) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("running as root, the first-run test needs the user nobody to drop privileges to: %v", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// startExample runs Caddyfile.example as `make run` would (in a copy of the
// checkout: its own directory with ./data), as an ordinary user whose home
// directory is elsewhere, and returns the instance and that home.
func startExample(t *testing.T, extraGlobal string, opts harness.Options) (*harness.Instance, string) {
	t.Helper()
	checkout, home := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(checkout, "data"), 0o755); err != nil { // make run: mkdir -p data
		t.Fatal(err)
	}
	cred := unprivileged(t)
	if cred != nil {
		if err := os.Chown(home, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	opts.Dir, opts.Credential = checkout, cred
	opts.Env = append(opts.Env, "HOME="+home, "XDG_DATA_HOME="+filepath.Join(home, ".local/share"),
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
	inst := harness.Start(t, exampleTemplate(t, extraGlobal), opts)
	waitHTTPS(t, inst)
	return inst, home
}

// readmeTour returns the README's runnable shell blocks (```sh runnable,
// what `make docs-check` runs), in order, as one script.
func readmeTour(t *testing.T) string {
	t.Helper()
	root, _ := harness.RepoRoot()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	for _, m := range regexp.MustCompile("(?ms)^```sh runnable[ \t]*\n(.*?)^```").FindAllStringSubmatch(string(readme), -1) {
		script.WriteString(m[1])
	}
	if !strings.Contains(script.String(), "localhost:2019/gatehouse/roles/reader") {
		t.Fatal("README.md's runnable blocks no longer create the role reader; update this test with them")
	}
	return script.String()
}

// runQuickStart runs the README's tour (its runnable blocks, with their
// own checks: curl -f, jq -e, test) with the real curl, jq and oathtool
// against inst: its ports in place of 2019 and 8443, in a directory of its
// own, stopping at the first command that fails.
func runQuickStart(t *testing.T, inst *harness.Instance) {
	t.Helper()
	for _, tool := range []string{"curl", "jq", "oathtool"} {
		harness.RequireTool(t, tool)
	}
	ports := strings.NewReplacer("localhost:2019", "localhost:"+strconv.Itoa(inst.Ports.AdminPort),
		"localhost:8443", "localhost:"+strconv.Itoa(inst.Ports.HTTPSPort))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", "set -euxo pipefail\n"+ports.Replace(readmeTour(t)))
	cmd.Dir = t.TempDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the README's tour failed: %v\n%s", err, out)
	}
}

// assertHomeUntouched checks that Caddy wrote nothing into the home
// directory: the demo changes nothing outside its checkout.
func assertHomeUntouched(t *testing.T, home string) {
	t.Helper()
	_ = filepath.WalkDir(home, func(path string, _ fs.DirEntry, err error) error { // each entry is reported
		if path != home {
			t.Errorf("Caddy wrote %s outside the checkout", path)
		}
		return err
	})
}

// TestExampleFirstRunUnprivileged runs Caddyfile.example as an ordinary
// user (dropping root's privileges), as `make run` does on a laptop: it
// must start (no port below 1024, no system trust store), keep Caddy's own
// state in the checkout, and answer the README's quick-start commands.
func TestExampleFirstRunUnprivileged(t *testing.T) {
	parallel(t)
	inst, home := startExample(t, "", harness.Options{})
	runQuickStart(t, inst)
	// A reload (the listeners and their handshake wrapper are handed over)
	// keeps the site answering.
	inst.Reload(strings.Replace(exampleTemplate(t, ""), "lockout_threshold 5", "lockout_threshold 6", 1))
	if res := harness.Curl(t, inst.HTTPSURL()+"/.well-known/gatehouse/jwks.json"); res.Status != 200 {
		t.Fatalf("the site after a reload: %d %s", res.Status, res.Body)
	}
	if _, err := os.Stat(filepath.Join(inst.DataDir(), "caddy", "pki", "authorities", "local", "root.crt")); err != nil {
		t.Errorf("the demo CA is not under ./data/caddy: %v", err)
	}
	assertHomeUntouched(t, home)
}

// TestExampleFirstRunOnEmptyRedis switches the example to an empty Redis
// (storage in the global option) with a fresh data_dir: the first start
// creates the keystore and the connector CA, and a connector then gets a
// token with its certificate through the example's trust pool.
func TestExampleFirstRunOnEmptyRedis(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t)
	inst, home := startExample(t, "\t\tstorage redis {{.RedisURL}}", harness.Options{RedisURL: srv.URL()})
	for _, name := range []string{"keystore.key", "connector-ca"} {
		if _, err := os.Stat(filepath.Join(inst.DataDir(), name)); err != nil {
			t.Fatalf("the first start against an empty Redis did not create %s: %v", name, err)
		}
	}
	runQuickStart(t, inst)
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "robot", "roles": []string{"reader"}})
	mustToken(t, inst, newConnector(t, inst, "plant-7", "robot"))
	assertHomeUntouched(t, home)
}

// TestExampleAuditsRefusedHandshakes: a client certificate that the TLS
// handshake refuses (a foreign CA's, carrying a connector's name) leaves
// an audit event (kind "tls") naming the connector it claims and the site
// asked for (host: the SNI and port; none until 2026-12-07), each one
// (within the audit log's allowance per client network: until 2026-12-05
// a flood was thinned to one event a second over every address, which let
// one flooding address fold the others' refusals into its own).
func TestExampleAuditsRefusedHandshakes(t *testing.T) {
	parallel(t)
	harness.RequireTool(t, "openssl")
	inst, _ := startExample(t, "", harness.Options{})
	work := t.TempDir()
	key, cert := filepath.Join(work, "foreign.key"), filepath.Join(work, "foreign.crt")
	if out, err := harness.Command(t, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", key, "-out", cert, "-subj", "/CN=plant-7", "-days", "1",
		"-addext", "subjectAltName=URI:urn:gatehouse:connector:plant-7", "-addext", "extendedKeyUsage=clientAuth"); err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	// One curl opening the connections in parallel: the refusals come
	// within a fraction of a second, however busy the machine. HTTP/1.1,
	// each transfer on a connection of its own: in TLS 1.3 the client's
	// handshake ends before the server has checked its certificate, and
	// over HTTP/2 curl could send the other transfers on a connection it
	// took for open (one refusal for many transfers). Each transfer
	// writes out the connections it opened.
	const attempts = 20
	args := []string{"-sk", "--http1.1", "--parallel", "--parallel-immediate", "--parallel-max", "20",
		"-X", "POST", "--cert", cert, "--key", key, "-d", "grant_type=certificate", "-w", "connects=%{num_connects}\n"}
	for range attempts {
		args = append(args, inst.HTTPSURL()+"/gatehouse/v1/token")
	}
	out, err := harness.Command(t, "curl", args...)
	if err == nil || strings.Contains(out, "access_token") {
		t.Fatalf("a foreign CA's certificate got through: %v %s", err, out)
	}
	handshakes := 0
	for _, m := range regexp.MustCompile(`connects=(\d+)`).FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		handshakes += n
	}
	if handshakes < attempts {
		t.Fatalf("curl opened %d connections for %d transfers; want one each:\n%s", handshakes, attempts, out)
	}
	type event struct{ Kind, Credential, RemoteIP, Host, Outcome, Reason string }
	var events []event
	deadline := time.Now().Add(30 * time.Second)
	for {
		var all []struct {
			Kind       string `json:"kind"`
			Credential string `json:"credential"`
			RemoteIP   string `json:"remote_ip"`
			Host       string `json:"host"`
			Outcome    string `json:"outcome"`
			Reason     string `json:"reason"`
		}
		inst.AdminJSON(t, "GET", "/gatehouse/audit?kind=tls", nil, &all)
		events = events[:0]
		for _, e := range all {
			events = append(events, event{e.Kind, e.Credential, e.RemoteIP, e.Host, e.Outcome, e.Reason})
		}
		if len(events) >= handshakes || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(events) == 0 {
		t.Fatal("no audit event for the refused handshakes")
	}
	e := events[len(events)-1] // the oldest: the first refusal
	if e.Credential != "connector:plant-7" || e.RemoteIP != "127.0.0.1" || e.Host != strings.TrimPrefix(inst.HTTPSURL(), "https://") || e.Outcome != "failure" ||
		!strings.Contains(e.Reason, "claiming connector plant-7") || !strings.Contains(e.Reason, "unknown authority") {
		t.Fatalf("the refused handshake's event: %+v", e)
	}
	if len(events) < handshakes {
		t.Fatalf("%d events for %d refused handshakes; want one each", len(events), handshakes)
	}
}
