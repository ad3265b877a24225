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
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// env is the running Caddy under test.
type env struct {
	dir        string
	cmd        *exec.Cmd
	admin      string
	ports      map[string]int
	targets    map[string]target // the baselines
	clientCert tls.Certificate   // for plain_tls
	scale      int
	startup    time.Duration // process start to admin API answering
}

// site is a Caddyfile snippet of one row; it is a template over the port
// map ({{.plain}}, {{.upstream}}, …) and env.dir ({{.dir}}).
var sites = []string{`
http://:{{.upstream}} {
	bind 127.0.0.1
	respond "ok" 200
}
http://:{{.plain}} {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:{{.upstream}}
}
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

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startEnv(caddyBin string, scale int) (*env, error) {
	dir, err := os.MkdirTemp("", "gatehouse-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, ports: map[string]int{}, targets: map[string]target{}, scale: scale}
	for _, name := range []string{"admin", "upstream", "plain", "plain_tls"} {
		e.ports[name] = freePort()
	}
	for _, k := range kinds {
		e.ports[k.name] = freePort()
	}
	if e.clientCert, err = makeClientCA(dir); err != nil {
		return nil, err
	}
	for _, k := range kinds {
		if k.prepare != nil {
			if err := k.prepare(e); err != nil {
				return nil, fmt.Errorf("preparing %s: %v", k.name, err)
			}
		}
	}
	if err := e.writeConfig(); err != nil {
		return nil, err
	}
	if err := e.start(caddyBin); err != nil {
		return nil, err
	}
	e.targets["plain"] = e.get("http://127.0.0.1:%d/", "plain", nil, nil)
	e.targets["plain_tls"] = e.get("https://localhost:%d/", "plain_tls", nil, &e.clientCert)
	return e, nil
}

func (e *env) writeConfig() error {
	vars := map[string]any{"dir": e.dir}
	for k, v := range e.ports {
		vars[k] = v
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\n\tadmin 127.0.0.1:%d\n\tskip_install_trust\n\tauto_https disable_redirects\n\tlog {\n\t\tlevel ERROR\n\t}\n\tgatehouse {\n\t\tdata_dir %s\n\t}\n}\n",
		e.ports["admin"], filepath.Join(e.dir, "data"))
	snippets := append([]string{}, sites...)
	for _, k := range kinds {
		snippets = append(snippets, k.site)
	}
	for _, s := range snippets {
		t, err := template.New("site").Parse(s)
		if err != nil {
			return err
		}
		if err := t.Execute(&b, vars); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(e.dir, "Caddyfile"), b.Bytes(), 0o600)
}

func (e *env) start(caddyBin string) error {
	logf, err := os.Create(filepath.Join(e.dir, "caddy.log"))
	if err != nil {
		return err
	}
	e.cmd = exec.Command(caddyBin, "run", "--config", filepath.Join(e.dir, "Caddyfile"), "--adapter", "caddyfile")
	e.cmd.Env = append(os.Environ(), "HOME="+e.dir, "XDG_DATA_HOME="+filepath.Join(e.dir, "xdg"), "XDG_CONFIG_HOME="+filepath.Join(e.dir, "xdg"))
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	t0 := time.Now()
	if err := e.cmd.Start(); err != nil {
		return err
	}
	e.admin = fmt.Sprintf("http://127.0.0.1:%d", e.ports["admin"])
	for time.Since(t0) < 60*time.Second {
		if status, _, _ := e.call("GET", "/gatehouse/roles", nil); status == 200 {
			e.startup = time.Since(t0)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	raw, _ := os.ReadFile(filepath.Join(e.dir, "caddy.log"))
	return fmt.Errorf("caddy did not start:\n%s", raw)
}

func (e *env) stop() {
	if e.cmd != nil && e.cmd.Process != nil {
		e.cmd.Process.Signal(syscall.SIGTERM)
		e.cmd.Wait()
	}
	os.RemoveAll(e.dir)
}

// rssMiB is Caddy's resident memory.
func (e *env) rssMiB() float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}

// call makes an admin API call with a JSON body.
func (e *env) call(method, path string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		r = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, e.admin+path, r)
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
func (e *env) mustCall(want int, method, path string, body any) ([]byte, error) {
	status, out, err := e.call(method, path, body)
	if err != nil {
		return nil, err
	}
	if status != want {
		return nil, fmt.Errorf("%s %s: %d %s", method, path, status, out)
	}
	return out, nil
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
