package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"text/template"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/testport"
)

// env is the running Caddy under test (its admin API and process are the
// embedded caddyProc) plus whatever rows start beside it.
type env struct {
	*caddyProc
	caddyBin   string
	dir        string
	ports      map[string]int
	targets    map[string]target // the baselines
	clientCert tls.Certificate   // for plain_tls
	scale      int
	seeded     []string // what scale mode wrote offline, for the summary
	// excludeProxyLog takes reverse_proxy's logger out of every Caddy's
	// logs (-exclude-proxy-log).
	excludeProxyLog bool
	// cacheSize, when set, is every Caddy's gatehouse cache_size
	// (-cache-size).
	cacheSize string
	cleanups  []func() // run last-in first-out by stop
	// gatehouseOptions are more lines of the main Caddy's gatehouse
	// global block, set by a row's prepare step (basic_directory's
	// directory option).
	gatehouseOptions string
	// benchKey and sessionCookie are the bench user's app key and login
	// session in the main Caddy, made once for the rows that share them.
	benchKey, sessionCookie string
	// servers are the processes serving the rows (Caddy, Redis): their
	// CPU time, not the load generator's, is what serverCPU sums.
	servers []*os.Process
	// pins is pinned mode's CPU split; nil when unpinned.
	pins *pinPlan
}

// caddyProc is one running Caddy process and its admin API.
type caddyProc struct {
	cmd     *exec.Cmd
	admin   string
	startup time.Duration // process start to admin API answering
	stop    func()        // ends the process and waits for it; idempotent
	config  []byte        // the Caddyfile it runs
	// gc sums the CPU time of its garbage collections from its log.
	gc gcTrace
}

// adminAPI is what the seeding helpers need: env (the main Caddy) and any
// other caddyProc satisfy it.
type adminAPI interface {
	call(method, path string, body any) (int, []byte, error)
	mustCall(want int, method, path string, body any) ([]byte, error)
}

// backendSites are the upstream every row proxies to and forward_auth_peer's
// auth endpoint (answering 200 at once with the user's header): in the
// Caddy under test, or in a Caddy of their own in pinned mode.
const backendSites = `
http://:{{.upstream}} {
	bind 127.0.0.1
	respond "ok" 200
}
http://:{{.auth_endpoint}} {
	bind 127.0.0.1
	header X-Gatehouse-User bench
	respond 200
}
`

// site is a Caddyfile snippet of one row; it is a template over the port
// map ({{.plain}}, {{.upstream}}, …) and env.dir ({{.dir}}).
var sites = []string{plainSite("plain"), `
https://localhost:{{.plain_tls}} {
	bind 127.0.0.1
	tls internal {
		client_auth {
			mode require_and_verify
			trust_pool file {{.dir}}/client-ca.pem
		}
	}
	reverse_proxy 127.0.0.1:{{.upstream}}
}
`}

// plainSite is plain reverse_proxy to the upstream on the port named port.
func plainSite(port string) string {
	return `
http://:{{.` + port + `}} {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:{{.upstream}}
}
`
}

func freePort() int {
	port, err := testport.Pick()
	if err != nil {
		panic(err)
	}
	return port
}

// envOptions are the flags startEnv takes.
type envOptions struct {
	caddyBin        string
	scale           int
	excludeProxyLog bool
	cacheSize       string
	pins            *pinPlan
}

func startEnv(o envOptions) (_ *env, err error) {
	dir, err := os.MkdirTemp("", "gatehouse-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{caddyBin: o.caddyBin, dir: dir, ports: map[string]int{}, targets: map[string]target{}, scale: o.scale,
		excludeProxyLog: o.excludeProxyLog, cacheSize: o.cacheSize, pins: o.pins}
	pins := o.pins
	defer func() {
		if err != nil { // whatever a prepare step or a half-started Caddy left running
			e.stop()
		}
	}()
	for _, name := range []string{"admin", "upstream", "auth_endpoint", "plain", "plain_tls"} {
		e.ports[name] = freePort()
	}
	for _, k := range kinds {
		e.ports[k.name] = freePort()
	}
	if e.clientCert, err = makeClientCA(dir); err != nil {
		return nil, err
	}
	if pins != nil { // the backends in a Caddy of their own, on their own CPUs
		dir := filepath.Join(dir, "backends")
		e.ports["backends_admin"] = freePort()
		config, err := e.caddyfile(e.ports["backends_admin"], filepath.Join(dir, "data"), "", []string{backendSites})
		if err != nil {
			return nil, err
		}
		backends, err := e.startCaddy(dir, e.ports["backends_admin"], config, pins.backend)
		if err != nil {
			return nil, err
		}
		e.servers = slices.DeleteFunc(e.servers, func(p *os.Process) bool { return p == backends.cmd.Process })
	}
	var prepared []kind
	for _, k := range kinds {
		if k.prepare != nil {
			if err := k.prepare(e); err != nil {
				log.Printf("bench: %s row skipped: %v", k.name, err)
				continue
			}
		}
		prepared = append(prepared, k)
	}
	kinds = prepared
	snippets := append([]string{}, sites...)
	if pins == nil {
		snippets = append(snippets, backendSites)
	}
	for _, k := range kinds {
		snippets = append(snippets, k.site)
	}
	config, err := e.caddyfile(e.ports["admin"], filepath.Join(dir, "data"), e.gatehouseOptions, snippets)
	if err != nil {
		return nil, err
	}
	if e.caddyProc, err = e.startCaddy(dir, e.ports["admin"], config, e.caddyCPUs()); err != nil {
		return nil, err
	}
	e.targets["plain"] = e.get("http://127.0.0.1:%d/", "plain", nil, nil)
	e.targets["plain_tls"] = e.get("https://localhost:%d/", "plain_tls", nil, &e.clientCert)
	return e, nil
}

// caddyfile is a whole Caddyfile: the global options (admin port, the
// log, the gatehouse data_dir and, unless empty, more gatehouse options,
// one a line) and then the site snippets, each a template over the port
// map and env.dir.
func (e *env) caddyfile(adminPort int, dataDir, options string, snippets []string) ([]byte, error) {
	vars := map[string]any{"dir": e.dir}
	for k, v := range e.ports {
		vars[k] = v
	}
	if e.cacheSize != "" {
		options += "\t\tcache_size " + e.cacheSize + "\n"
	}
	logExclude := ""
	if e.excludeProxyLog {
		logExclude = "\t\texclude http.handlers.reverse_proxy\n"
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\n\tadmin 127.0.0.1:%d\n\tskip_install_trust\n\tauto_https disable_redirects\n\tlog {\n\t\tlevel ERROR\n%s\t}\n\tgatehouse {\n\t\tdata_dir %s\n%s\t}\n}\n",
		adminPort, logExclude, dataDir, options)
	for _, s := range snippets {
		t, err := template.New("site").Parse(s)
		if err != nil {
			return nil, err
		}
		if err := t.Execute(&b, vars); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// caddyCPUs are the CPUs of the Caddy under test in pinned mode (nil:
// unpinned).
func (e *env) caddyCPUs() []int {
	if e.pins == nil {
		return nil
	}
	return e.pins.caddy
}

// command is argv to run, on cpus when not nil (pinned mode).
func (e *env) command(cpus []int, argv ...string) (*exec.Cmd, error) {
	if cpus != nil {
		var err error
		if argv, err = pinnedCommand(cpus, argv); err != nil {
			return nil, err
		}
	}
	return exec.Command(argv[0], argv[1:]...), nil
}

// startCaddy writes config to dir/Caddyfile, runs e.caddyBin on it (its
// HOME, log and Caddy storage in dir; on cpus when not nil) and waits for
// the admin API on adminPort to answer. The process is stopped by e.stop,
// also when it did not come up.
func (e *env) startCaddy(dir string, adminPort int, config []byte, cpus []int) (*caddyProc, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), config, 0o600); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "caddy.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600) // a restart appends
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	logStart, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	c := &caddyProc{admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort), config: config,
		gc: gcTrace{path: logf.Name(), offset: logStart}}
	if c.cmd, err = e.command(cpus, e.caddyBin, "run", "--config", filepath.Join(dir, "Caddyfile"), "--adapter", "caddyfile"); err != nil {
		return nil, err
	}
	c.cmd.Env = append(os.Environ(), gcEnv(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "xdg"), "XDG_CONFIG_HOME="+filepath.Join(dir, "xdg"))
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	t0 := time.Now()
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	exited, stop := e.own(c.cmd)
	c.stop = stop
wait:
	for time.Since(t0) < 60*time.Second {
		if status, _, _ := c.call("GET", "/gatehouse/roles", nil); status == 200 {
			c.startup = time.Since(t0)
			return c, nil
		}
		select {
		case <-exited:
			break wait
		case <-time.After(20 * time.Millisecond):
		}
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "caddy.log"))
	return nil, fmt.Errorf("caddy (%s) did not start:\n%s", filepath.Join(dir, "Caddyfile"), raw)
}

// own makes e.stop end the started cmd, and counts it among e.servers
// until then; the channel is closed when the process has exited, and stop
// ends it sooner (SIGTERM, then SIGKILL after 10 s) and waits for that. A
// second stop finds the process gone and returns at once.
func (e *env) own(cmd *exec.Cmd) (exited <-chan struct{}, stop func()) {
	done := make(chan struct{})
	e.servers = append(e.servers, cmd.Process)
	go func() { cmd.Wait(); close(done) }()
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		e.servers = slices.DeleteFunc(e.servers, func(p *os.Process) bool { return p == cmd.Process })
	}
	e.cleanups = append(e.cleanups, stop)
	return done, stop
}

// restartCaddy stops the main Caddy, runs offline (e.g. seeding its
// store, which Badger locks while Caddy runs) and starts Caddy again on
// the same configuration; env.startup is then the new process's start-up
// time.
func (e *env) restartCaddy(offline func() error) error {
	e.caddyProc.stop()
	if err := offline(); err != nil {
		return err
	}
	c, err := e.startCaddy(e.dir, e.ports["admin"], e.caddyProc.config, e.caddyCPUs())
	if err != nil {
		return err
	}
	e.caddyProc = c
	return nil
}

// stop ends every process the bench started, newest first, and removes
// the temporary directory.
func (e *env) stop() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
	e.cleanups = nil
	os.RemoveAll(e.dir)
}

// clockTicks is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on
// every Linux platform Go supports).
const clockTicks = 100

// serverCPU is the CPU time (user and system) the server processes have
// used so far; the difference over a round, divided by its requests, is
// what each request cost the servers, whatever share of the machine the
// load generator took meanwhile.
func (e *env) serverCPU() time.Duration {
	var total time.Duration
	for _, p := range e.servers {
		if cpu, ok := processCPU(p.Pid); ok { // else exited
			total += cpu
		}
	}
	return total
}

// statCPU is the user plus system CPU time in a /proc/<pid>/stat line
// (fields 14 and 15, in clock ticks).
func statCPU(stat string) (time.Duration, bool) {
	// The command name (field 2) may hold spaces and parentheses; count
	// from the last ")", which ends it.
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, false
	}
	fields := strings.Fields(stat[end+1:]) // fields[0] is field 3
	if len(fields) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, true
}

// quiet waits, up to limit, until the servers use less than 5% of a core
// over a second: after seeding, Badger compacts what was written, and a
// round measured meanwhile would be charged for it. It returns how long it
// waited and whether the servers went quiet.
func (e *env) quiet(limit time.Duration) (time.Duration, bool) {
	t0 := time.Now()
	for time.Since(t0) < limit {
		before := e.serverCPU()
		time.Sleep(time.Second)
		if e.serverCPU()-before < 50*time.Millisecond {
			return time.Since(t0), true
		}
	}
	return time.Since(t0), false
}

// memory is the Caddy process's resident memory, in MiB, as the kernel
// counts it: all of it (VmRSS), its anonymous part (the Go heap, stacks
// and the runtime's own), and its file-backed part (mostly Badger's
// memory-mapped tables: page cache the kernel can drop and read again).
type memory struct{ resident, anonymous, file float64 }

// memory reads the Caddy process's memory from /proc (zeros where it
// cannot).
func (c *caddyProc) memory() memory {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return memory{}
	}
	var m memory
	for _, line := range strings.Split(string(raw), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var kb float64
		_, _ = fmt.Sscanf(strings.TrimSpace(value), "%f", &kb) // unreadable: 0
		switch name {
		case "VmRSS":
			m.resident = kb / 1024
		case "RssAnon":
			m.anonymous = kb / 1024
		case "RssFile":
			m.file = kb / 1024
		}
	}
	return m
}

// call makes an admin API call with a JSON body.
func (c *caddyProc) call(method, path string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		r = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, c.admin+path, r)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out, nil
}

// mustCall is call that requires the status want.
func (c *caddyProc) mustCall(want int, method, path string, body any) ([]byte, error) {
	status, out, err := c.call(method, path, body)
	if err != nil {
		return nil, err
	}
	if status != want {
		return nil, fmt.Errorf("%s %s: %d %s", method, path, status, out)
	}
	return out, nil
}

// drawn is a target sending GET to the row's port with header set to a
// value drawn at random from values in each request (scale mode).
func (e *env) drawn(urlFormat, port, header string, values packed, cert *tls.Certificate) target {
	url := fmt.Sprintf(urlFormat, e.ports[port])
	request := func(value string) *http.Request {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header[header] = []string{value}
		return req
	}
	var sent atomic.Int64
	return target{cert: cert, next: func(int) *http.Request { return request(values.random()) },
		warm: func(int) *http.Request { return request(values.at(int((sent.Add(1) - 1) % int64(values.len())))) }}
}

// get is a target sending GET to the row's port with fixed headers.
func (e *env) get(urlFormat, port string, header http.Header, cert *tls.Certificate) target {
	url := fmt.Sprintf(urlFormat, e.ports[port])
	return target{cert: cert, next: func(int) *http.Request {
		req, _ := http.NewRequest("GET", url, nil)
		for k, v := range header {
			req.Header[k] = v
		}
		return req
	}}
}

// makeClientCA writes client-ca.pem (the plain_tls trust pool) and returns
// a client certificate it signed.
func makeClientCA(dir string) (tls.Certificate, error) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "bench client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	pemCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if err := os.WriteFile(filepath.Join(dir, "client-ca.pem"), pemCA, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
