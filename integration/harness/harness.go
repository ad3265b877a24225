// Package harness runs the real bin/caddy for integration tests: it renders
// a Caddyfile template with free ports and temporary directories, starts
// Caddy, waits for its admin endpoint, and offers helpers for the admin
// API, HTTPS requests and the real curl.
package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/testport"
	"github.com/gatehouse-auth/gatehouse/internal/testtool"
)

// Binary returns the path of bin/caddy: $GATEHOUSE_CADDY_BIN when set (make
// test sets it), else a binary built once per test process.
func Binary(t testing.TB) string {
	t.Helper()
	path, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// binary is Binary's path, or why there is none.
func binary() (string, error) {
	if p := os.Getenv("GATEHOUSE_CADDY_BIN"); p != "" {
		return p, nil
	}
	return build()
}

// build builds bin/caddy into a temporary directory, once per test process.
var build = sync.OnceValues(func() (string, error) { return goBuild("./cmd/caddy", "caddy") })

// EarlyClient returns the path of integration/internal/earlyclient, the
// tests' HTTP/3 early-data client, built once per test process without the
// race detector (its doc says why).
func EarlyClient(t testing.TB) string {
	t.Helper()
	path, err := buildEarlyClient()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

var buildEarlyClient = sync.OnceValues(func() (string, error) {
	return goBuild("./integration/internal/earlyclient", "earlyclient")
})

// goBuild builds the module's package pkg into a temporary directory as
// the executable name, with the go command's defaults (no race detector).
func goBuild(pkg, name string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "gatehouse-"+name+"-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", path, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %v\n%s", name, err, out)
	}
	return path, nil
}

// sharedBinary returns Binary in a directory anyone may enter, for Caddy
// run as another user: the checkout holding bin/caddy may sit in a
// directory only its owner enters (mktemp -d makes them so).
func sharedBinary(t testing.TB) string {
	t.Helper()
	path, err := share()
	if err != nil {
		t.Fatalf("making bin/caddy reachable for another user: %v", err)
	}
	return path
}

// share makes sharedBinary's path once per test process: a hard link to
// the binary when the file system allows, else a copy.
var share = sync.OnceValues(func() (string, error) {
	bin, err := binary()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "gatehouse-caddy-shared-")
	if err == nil {
		err = os.Chmod(dir, 0o755) //nolint:gosec // G302: other users must reach the binary
	}
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "caddy")
	if os.Link(bin, path) == nil {
		return path, nil
	}
	return path, copyExecutable(bin, path)
})

// copyExecutable copies the executable src to dst (mode 0755).
func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755) //nolint:gosec // G302: an executable for another user
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// RepoRoot finds the module root by walking up to go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// RequireTool fails the test when name is not on PATH and
// GATEHOUSE_REQUIRE_TOOLS=1 (make test sets it), and skips it otherwise.
func RequireTool(t testing.TB, name string) string { t.Helper(); return testtool.Require(t, name) }

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int { t.Helper(); return testport.Free(t) }

// Ports are the addresses a Caddyfile template can use.
type Ports struct {
	// AdminPort, HTTPSPort, HTTPPort, UpstreamPort and ESAPort are loopback
	// ports that were free at Start, for Caddy's admin endpoint, an HTTPS
	// site, a plain HTTP site, the upstream and the ESA API site.
	AdminPort, HTTPSPort, HTTPPort, UpstreamPort, ESAPort int
	// DataDir is the Gatehouse data_dir; Dir the instance's temp root.
	DataDir, Dir string
	// RedisURL is set by the caller (Options.RedisURL) for shared-store tests.
	RedisURL string
	// Extra holds caller-defined template values.
	Extra map[string]any
}

// Options tune Start.
type Options struct {
	// RedisURL is made available to the template as {{.RedisURL}}.
	RedisURL string
	// Dir reuses a directory (and so the data) of another instance.
	Dir string
	// Extra values for the template ({{.Extra.name}}).
	Extra map[string]any
	// Env adds environment variables to Caddy's.
	Env []string
	// StoreDown says the store is expected to be unreachable at start:
	// Start then waits only for Caddy's admin endpoint, not for the
	// gatehouse app to answer.
	StoreDown bool
	// Credential, when set, runs Caddy as that user and group (the test
	// must run as root to switch): the instance directory and the rendered
	// Caddyfile are handed to that user, so Caddy can write only there.
	Credential *syscall.Credential
}

// Instance is one running bin/caddy.
type Instance struct {
	t testing.TB
	// Ports are the values the instance's Caddyfile was rendered with.
	Ports    Ports
	template string
	config   string
	env      []string
	cred     *syscall.Credential
	logPath  string
	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
}

// Start renders tmpl (a text/template over Ports) and runs Caddy with it.
// The instance is stopped at the end of the test; its log is printed when
// the test failed.
func Start(t testing.TB, tmpl string, opts Options) *Instance {
	t.Helper()
	dir := opts.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	p := Ports{AdminPort: FreePort(t), HTTPSPort: FreePort(t), HTTPPort: FreePort(t), UpstreamPort: FreePort(t),
		ESAPort: FreePort(t), DataDir: filepath.Join(dir, "data"), Dir: dir, RedisURL: opts.RedisURL, Extra: opts.Extra}
	inst := &Instance{t: t, Ports: p, template: tmpl, cred: opts.Credential,
		logPath: filepath.Join(dir, fmt.Sprintf("caddy-%d.log", p.AdminPort))}
	inst.env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "xdg-data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "xdg-config"))
	inst.env = append(inst.env, opts.Env...)
	inst.config = inst.render(tmpl)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", inst.logPath, inst.tail(60))
		}
		inst.Stop()
	})
	inst.start(!opts.StoreDown)
	return inst
}

func (i *Instance) render(tmpl string) string {
	i.t.Helper()
	tp, err := template.New("Caddyfile").Parse(tmpl)
	if err != nil {
		i.t.Fatalf("Caddyfile template: %v", err)
	}
	var b bytes.Buffer
	if err := tp.Execute(&b, i.Ports); err != nil {
		i.t.Fatalf("Caddyfile template: %v", err)
	}
	return withoutStorageCleaning(b.String())
}

// withoutStorageCleaning is config with Caddy's cleaning of its TLS
// storage off (storage_clean_interval off) when config opens with a
// global options block. The cleaning runs as a fresh instance starts,
// beside its first certificate's issue, and can take the certificate's
// folder, made and not yet written, for an empty one and delete it: the
// issue then fails and is tried again 60 s later, with no TLS until then
// ("deleting site folder because key is empty" in Caddy's log; seen
// once on a loaded machine). A test's instance has no old certificates
// to clean.
func withoutStorageCleaning(config string) string {
	rest, ok := strings.CutPrefix(strings.TrimLeft(config, " \t\n"), "{\n")
	if !ok {
		return config
	}
	return "{\n\tstorage_clean_interval off\n" + rest
}

// start runs Caddy and waits for its admin endpoint and, when
// waitForGatehouse, for the gatehouse app too.
func (i *Instance) start(waitForGatehouse bool) {
	i.t.Helper()
	cfg := filepath.Join(i.Ports.Dir, fmt.Sprintf("Caddyfile-%d", i.Ports.AdminPort))
	if err := os.WriteFile(cfg, []byte(i.config), 0o600); err != nil {
		i.t.Fatal(err)
	}
	if i.cred != nil {
		i.handOver()
	}
	bin := Binary(i.t)
	if i.cred != nil {
		bin = sharedBinary(i.t)
	}
	// The instance's ports are ones the kernel had free when they were
	// picked, from the range it also gives outgoing connections their
	// local ports from: in the moment before a start, another test's
	// connection may hold one (a restart's port freed by the stop before
	// it, most often). Such a start fails with "address already in use"
	// and is tried again, for as long as a connection might last.
	for deadline := time.Now().Add(bindRetry); ; {
		logf, err := os.OpenFile(i.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			i.t.Fatal(err)
		}
		cmd := exec.Command(bin, "run", "--config", cfg, "--adapter", "caddyfile")
		cmd.Dir = i.Ports.Dir
		cmd.Env = i.env
		cmd.Stdout, cmd.Stderr = logf, logf
		if i.cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: i.cred}
		}
		if err := cmd.Start(); err != nil {
			i.t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); logf.Close(); close(done) }()
		i.mu.Lock()
		i.cmd, i.done = cmd, done
		i.mu.Unlock()
		if i.waitReady(done, waitForGatehouse) {
			return
		}
		if !strings.Contains(i.tail(3), "address already in use") || time.Now().After(deadline) {
			i.t.Fatalf("caddy exited during start-up:\n%s", i.tail(40))
		}
		i.t.Logf("caddy on admin port %d found a port of its own in use: starting it again", i.Ports.AdminPort)
		time.Sleep(250 * time.Millisecond)
	}
}

// bindRetry is how long start tries again a Caddy that could not listen
// on a port of its instance because something else held it.
const bindRetry = 20 * time.Second

// handOver gives the instance directory (and everything in it, the
// Caddyfile among them) to the user Caddy runs as, and makes the path to it
// traversable for that user.
func (i *Instance) handOver() {
	i.t.Helper()
	uid, gid := int(i.cred.Uid), int(i.cred.Gid)
	err := filepath.WalkDir(i.Ports.Dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
	if err != nil {
		i.t.Fatalf("handing %s to uid %d: %v", i.Ports.Dir, uid, err)
	}
	for dir := filepath.Dir(i.Ports.Dir); dir != "/"; dir = filepath.Dir(dir) {
		info, err := os.Stat(dir)
		if err != nil {
			i.t.Fatal(err)
		}
		if info.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(dir, info.Mode().Perm()|0o001); err != nil {
				i.t.Fatal(err)
			}
		}
	}
}

// waitReady waits until the admin endpoint answers and, when
// waitForGatehouse, the gatehouse app too; false when Caddy exited first.
func (i *Instance) waitReady(done chan struct{}, waitForGatehouse bool) bool {
	i.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return false
		default:
		}
		resp, err := http.Get(i.AdminURL() + "/config/")
		if err == nil {
			resp.Body.Close()
			if !waitForGatehouse {
				return true
			}
			// The gatehouse app answers once started; wait for it too.
			if st, _ := i.adminRaw(http.MethodGet, "/gatehouse/roles", nil); st != http.StatusServiceUnavailable && st != 0 {
				if strings.Contains(i.config, fmt.Sprintf("https://localhost:%d", i.Ports.HTTPSPort)) {
					_ = i.waitHTTPS(15 * time.Second) // best effort: a site may demand client certificates
				}
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	i.t.Fatalf("caddy did not become ready:\n%s", i.tail(40))
	return false
}

// Stop terminates Caddy (SIGTERM, then SIGKILL after stopGrace).
func (i *Instance) Stop() {
	i.end(func(p *os.Process, done chan struct{}) {
		p.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(stopGrace):
			i.t.Logf("caddy on admin port %d did not stop within %v of SIGTERM: killed, so what it writes when it stops may be missing", i.Ports.AdminPort, stopGrace)
			p.Kill()
		}
	})
}

// stopGrace is how long Stop waits for Caddy to end after SIGTERM: well
// past the audit writer's own 10 s bound on its last writes, so that a
// stalled machine does not have the harness cut a flush short, which a
// test would read as lost audit events.
const stopGrace = 30 * time.Second

// adminClient calls the admin endpoint: a call that hangs fails the
// test within a minute, with its request named, rather than at the
// test binary's timeout.
var adminClient = &http.Client{Timeout: time.Minute}

// Kill9 kills Caddy with SIGKILL, as a crash would.
func (i *Instance) Kill9() {
	i.end(func(p *os.Process, _ chan struct{}) { p.Kill() })
}

// end stops the running process with stop and waits for it to exit.
func (i *Instance) end(stop func(p *os.Process, done chan struct{})) {
	i.mu.Lock()
	cmd, done := i.cmd, i.done
	i.cmd = nil
	i.mu.Unlock()
	if cmd == nil {
		return
	}
	stop(cmd.Process, done)
	<-done
}

// Restart starts Caddy again with the same config, ports and data.
func (i *Instance) Restart() {
	i.t.Helper()
	i.Stop()
	i.start(true)
}

// StartAgain starts a stopped or killed instance without stopping first.
func (i *Instance) StartAgain() { i.t.Helper(); i.start(true) }

// Reload renders tmpl with the same ports and loads it through the admin
// API (POST /load), as `caddy reload --force` does: the apps are restarted
// even when the config is unchanged (Caddy skips an unchanged one).
func (i *Instance) Reload(tmpl string) {
	i.t.Helper()
	if status, body := i.TryReload(tmpl); status != http.StatusOK {
		i.t.Fatalf("reload: %d: %s", status, body)
	}
}

// TryReload is Reload for a config that may fail to load: it returns the
// admin endpoint's status and answer, and the instance keeps its config
// unless the load succeeded.
func (i *Instance) TryReload(tmpl string) (int, string) {
	i.t.Helper()
	config := i.render(tmpl)
	req, _ := http.NewRequest(http.MethodPost, i.AdminURL()+"/load", strings.NewReader(config))
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate")
	resp, err := adminClient.Do(req)
	if err != nil {
		i.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		i.config = config
	}
	return resp.StatusCode, string(body)
}

// PID is Caddy's process ID.
func (i *Instance) PID() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cmd == nil {
		return 0
	}
	return i.cmd.Process.Pid
}

// AdminURL is the base URL of the admin endpoint.
func (i *Instance) AdminURL() string { return fmt.Sprintf("http://127.0.0.1:%d", i.Ports.AdminPort) }

// HTTPSURL is the base URL of the HTTPS site on HTTPSPort.
func (i *Instance) HTTPSURL() string { return fmt.Sprintf("https://localhost:%d", i.Ports.HTTPSPort) }

// HTTPURL is the base URL of a plain-HTTP site on HTTPPort.
func (i *Instance) HTTPURL() string { return fmt.Sprintf("http://localhost:%d", i.Ports.HTTPPort) }

// DataDir is the Gatehouse data directory of the instance.
func (i *Instance) DataDir() string { return i.Ports.DataDir }

// Log returns Caddy's output so far.
func (i *Instance) Log() string {
	b, _ := os.ReadFile(i.logPath)
	return string(b)
}

// LogContains reports whether Caddy's output contains s.
func (i *Instance) LogContains(s string) bool { return strings.Contains(i.Log(), s) }

func (i *Instance) tail(n int) string {
	lines := strings.Split(strings.TrimRight(i.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (i *Instance) adminRaw(method, path string, body []byte) (int, []byte) {
	status, _, out := i.adminCall(method, path, body)
	return status, out
}

// adminCall sends one admin request; status 0 means no answer.
func (i *Instance) adminCall(method, path string, body []byte) (int, http.Header, []byte) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, i.AdminURL()+path, r)
	if err != nil {
		return 0, nil, nil
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := adminClient.Do(req)
	if err != nil {
		return 0, nil, nil
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, out
}

// Admin calls the admin API; body is JSON-encoded unless it is a string or
// []byte (sent as is). It returns the status and the response body. Every
// answer under /gatehouse/ is validated against the admin API's OpenAPI
// document (caddymodule/openapi/admin.json): one it does not describe
// fails t.
func (i *Instance) Admin(t testing.TB, method, path string, body any) (int, []byte) {
	t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	status, header, out := i.adminCall(method, path, raw)
	if status == 0 {
		t.Fatalf("admin %s %s: no answer", method, path)
	}
	if strings.HasPrefix(path, "/gatehouse/") {
		if err := adminDocument.check(method, path, status, header, out); err != nil {
			t.Error(err)
		}
	}
	return status, out
}

// AdminJSON is Admin that decodes a JSON answer into out (when non-nil).
func (i *Instance) AdminJSON(t testing.TB, method, path string, body, out any) int {
	t.Helper()
	status, raw := i.Admin(t, method, path, body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("admin %s %s: %d %q is not JSON: %v", method, path, status, raw, err)
		}
	}
	return status
}

// MustAdmin is Admin that fails the test unless the status is want.
func (i *Instance) MustAdmin(t testing.TB, want int, method, path string, body any) []byte {
	t.Helper()
	status, out := i.Admin(t, method, path, body)
	if status != want {
		t.Fatalf("admin %s %s: %d %s, want %d", method, path, status, out, want)
	}
	return out
}

// WaitHTTPS waits until the HTTPS site on HTTPSPort answers: `tls
// internal` issues its certificate just after start-up. Start already does
// this for configs with a site at https://localhost:{{.HTTPSPort}}.
func (i *Instance) WaitHTTPS(t testing.TB) {
	t.Helper()
	if err := i.waitHTTPS(15 * time.Second); err != nil {
		t.Fatalf("the HTTPS site did not come up: %v", err)
	}
}

func (i *Instance) waitHTTPS(limit time.Duration) error {
	probe := client(nil)
	defer probe.CloseIdleConnections() // an idle HTTP/2 connection would hold Caddy's stop for a second
	for deadline := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
		resp, err := probe.Get(i.HTTPSURL() + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
	}
}

// Client returns an HTTP client for the instance's sites: it trusts any
// server certificate (the sites use `tls internal` with a per-test CA) and
// presents cert when non-nil. Redirects are not followed. Its idle
// connections are closed when t ends, before the instances t started
// earlier are stopped: Caddy's stop waits up to a second for each client
// still holding an idle HTTP/2 connection to close it after GOAWAY.
func Client(t testing.TB, cert *tls.Certificate) *http.Client {
	c := client(cert)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// client is Client without the cleanup, for the harness's own probes,
// which close their connections themselves.
func client(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{InsecureSkipVerify: true} // test CA made per instance; the TLS under test is the client side
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{
		Transport:     &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true},
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// CurlResult is what curl printed.
type CurlResult struct {
	// Status is the HTTP status code of the last response.
	Status int
	// Headers are the headers of the last response (after redirects or
	// 100-continue).
	Headers http.Header
	// Body is the response body curl wrote to stdout.
	Body string
}

// Curl runs the real curl with args (the URL among them) plus -sk and
// header capture, and returns status, headers and body.
func Curl(t testing.TB, args ...string) CurlResult {
	t.Helper()
	RequireTool(t, "curl")
	hdrFile := filepath.Join(t.TempDir(), "headers")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"-sk", "-D", hdrFile, "-o", "-"}, args...)
	cmd := exec.CommandContext(ctx, "curl", full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("curl %v: %v: %s", args, err, stderr.String())
	}
	raw, _ := os.ReadFile(hdrFile)
	res := CurlResult{Headers: http.Header{}, Body: stdout.String()}
	// With redirects or 100-continue there are several header blocks; keep the last.
	blocks := strings.Split(strings.TrimSpace(strings.ReplaceAll(string(raw), "\r\n", "\n")), "\n\n")
	last := blocks[len(blocks)-1]
	for n, line := range strings.Split(last, "\n") {
		if n == 0 {
			_, _ = fmt.Sscanf(line[strings.Index(line, " ")+1:], "%d", &res.Status) // unreadable: 0, which no test expects
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			res.Headers.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	return res
}

// Echo is the JSON the gatehouse_echo demo upstream answers.
type Echo struct {
	// Method is the HTTP method of the request the upstream received.
	Method string `json:"method"`
	// URI is the request URI the upstream received (path and query).
	URI string `json:"uri"`
	// Headers are the request headers the upstream received, several values
	// of one header joined with ", ".
	Headers map[string]string `json:"headers"`
}

// ParseEcho decodes a gatehouse_echo answer.
func ParseEcho(t testing.TB, body string) Echo {
	t.Helper()
	var e Echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("not an echo answer: %q", body)
	}
	return e
}

// Command runs a program (with Caddy's test environment: HOME in a temp
// dir) and returns its combined output.
func Command(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	dir := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "xdg-data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "xdg-config"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Trickle writes one byte of a request body to conn every two seconds, as
// a slow-body client does, until the returned stop is called or a write
// fails.
func Trickle(conn io.Writer) (stop func()) {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Second):
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	return func() { close(done) }
}
