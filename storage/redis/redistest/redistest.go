// Package redistest runs a real, private redis-server for tests: on a free
// loopback port, with its data in the test's temporary directory and
// persistence on (appendonly yes, appendfsync always), so that a test can
// kill and restart it and find every acknowledged write again.
//
// When redis-server is not installed the test is skipped, or fails when
// GATEHOUSE_REQUIRE_REDIS=1 (make test sets it and installs Redis).
package redistest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/testca"
	"github.com/gatehouse-auth/gatehouse/internal/testport"
)

// Server is one redis-server process owned by a test.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	// args is the whole command line after the binary.
	args []string
	// tls is set for a server that speaks only TLS (StartTLS).
	tls    *tls.Config
	caFile string
	// ca is the CA that signed a StartTLS server's certificate.
	ca *testca.CA

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start launches a private redis-server, with extra command-line
// arguments (for example "--requirepass", "secret"); it is stopped when the
// test ends.
func Start(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	s := newServer(t)
	s.args = append(s.dataArgs("--port"), extraArgs...)
	t.Cleanup(s.Stop)
	s.Restart()
	return s
}

// StartTLS launches a private redis-server that speaks only TLS, with a
// certificate for 127.0.0.1 from a CA made for the test (CAFile).
func StartTLS(t testing.TB) *Server { t.Helper(); return startTLS(t, false, "127.0.0.1") }

// StartTLSFor is StartTLS with a certificate that names only names (IP
// addresses or DNS names), which need not include the address the server
// listens on (127.0.0.1).
func StartTLSFor(t testing.TB, names ...string) *Server {
	t.Helper()
	return startTLS(t, false, names...)
}

// StartMutualTLS is StartTLS with a server that also demands a client
// certificate from the test CA (ClientCertFile, ClientKeyFile).
func StartMutualTLS(t testing.TB) *Server { t.Helper(); return startTLS(t, true, "127.0.0.1") }

func startTLS(t testing.TB, clientAuth bool, names ...string) *Server {
	t.Helper()
	s := newServer(t)
	var client tls.Certificate
	s.ca, client = makeCertificates(t, s.dir, names...)
	s.caFile = filepath.Join(s.dir, "ca.pem")
	s.tls = &tls.Config{RootCAs: s.ca.Pool, ServerName: names[0], Certificates: []tls.Certificate{client}}
	auth := "no"
	if clientAuth {
		auth = "yes"
	}
	s.args = append(s.dataArgs("--tls-port"), "--port", "0",
		"--tls-cert-file", filepath.Join(s.dir, "server.pem"), "--tls-key-file", filepath.Join(s.dir, "server-key.pem"),
		"--tls-ca-cert-file", s.caFile, "--tls-auth-clients", auth)
	t.Cleanup(s.Stop)
	s.Restart()
	return s
}

func newServer(t testing.TB) *Server {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("GATEHOUSE_REQUIRE_REDIS") == "1" {
			t.Fatal("redis-server is required (make test installs it)")
		}
		t.Skip("redis-server not installed")
	}
	return &Server{t: t, bin: bin, dir: t.TempDir(), port: testport.Free(t)}
}

// dataArgs are the arguments of a persistent server listening on its port
// given with portFlag (--port or --tls-port).
func (s *Server) dataArgs(portFlag string) []string {
	return []string{portFlag, strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--protected-mode", "yes", "--logfile", filepath.Join(s.dir, "redis.log"),
		// A replica's full sync starts at once, not after the 5 s Redis
		// waits by default for more replicas to share it.
		"--repl-diskless-sync-delay", "0"}
}

// makeCertificates writes into dir a CA (ca.pem), a server certificate
// for names (server.pem, server-key.pem) and a client certificate
// (client.pem, client-key.pem), both signed by the CA. It returns the CA
// and the client certificate.
func makeCertificates(t testing.TB, dir string, names ...string) (*testca.CA, tls.Certificate) {
	t.Helper()
	ca := testca.New(t, dir)
	ca.Issue("server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, names...)
	ca.Issue("client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	client, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return ca, client
}

// ClientCertFile and ClientKeyFile are a client certificate of the test
// CA that a StartMutualTLS server accepts.
func (s *Server) ClientCertFile() string { return filepath.Join(s.dir, "client.pem") }

// ClientKeyFile is the PEM file of the private key of ClientCertFile's certificate.
func (s *Server) ClientKeyFile() string { return filepath.Join(s.dir, "client-key.pem") }

// CAFile is the PEM file of the CA that signed a StartTLS server's
// certificate.
func (s *Server) CAFile() string { return s.caFile }

// StartSentinel launches a Redis Sentinel monitoring master under
// masterName (quorum 1); it is stopped when the test ends. Its URL() with
// ?master_name=<masterName> reaches the master through it.
func StartSentinel(t testing.TB, master *Server, masterName string) *Server {
	t.Helper()
	s := newServer(t)
	conf := filepath.Join(s.dir, "sentinel.conf") // Sentinel rewrites it
	text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\nsentinel monitor %s 127.0.0.1 %d 1\n",
		s.port, s.dir, filepath.Join(s.dir, "redis.log"), masterName, master.port)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	s.args = []string{conf, "--sentinel"}
	t.Cleanup(s.Stop)
	s.Restart()
	return s
}

// StartTLSSentinel is StartSentinel for a master started with StartTLS
// or StartTLSFor: a Sentinel that speaks only TLS, with a certificate for
// names from the master's CA (CAFile), and reaches the master over TLS.
// Its URL, with ?master_name=<masterName>&ca_file=<CAFile>, reaches the
// master through it; the Sentinel reports the master as 127.0.0.1.
func StartTLSSentinel(t testing.TB, master *Server, masterName string, names ...string) *Server {
	t.Helper()
	if master.ca == nil {
		t.Fatal("redistest: StartTLSSentinel needs a master started with StartTLS or StartTLSFor")
	}
	s := newServer(t)
	cert := "sentinel-" + strconv.Itoa(s.port)
	master.ca.Issue(cert, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, names...)
	s.caFile, s.ca = master.caFile, master.ca
	s.tls = &tls.Config{RootCAs: master.ca.Pool, ServerName: names[0]}
	conf := filepath.Join(s.dir, "sentinel.conf") // Sentinel rewrites it
	text := fmt.Sprintf("port 0\ntls-port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
		"tls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\ntls-auth-clients no\ntls-replication yes\n"+
		"sentinel monitor %s 127.0.0.1 %d 1\n",
		s.port, s.dir, filepath.Join(s.dir, "redis.log"), master.ca.File(cert+".pem"), master.ca.File(cert+"-key.pem"),
		s.caFile, masterName, master.port)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	s.args = []string{conf, "--sentinel"}
	t.Cleanup(s.Stop)
	s.Restart()
	return s
}

// Port is the port the server listens on.
func (s *Server) Port() int { return s.port }

// URL is the redis:// (rediss:// for StartTLS) URL of the server,
// database 0.
func (s *Server) URL() string {
	scheme := "redis"
	if s.tls != nil {
		scheme = "rediss"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d/0", scheme, s.port)
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Restart starts the server again (after Kill or Stop) on the same port
// with the same data; it waits until the server accepts connections.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		s.t.Fatal("redistest: Restart of a running server")
	}
	cmd := exec.Command(s.bin, s.args...)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := s.dial(); err == nil {
			ok := ping(c)
			c.Close()
			if ok {
				return
			}
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server exited during start-up:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatal("redis-server did not accept connections within 10 s")
		}
	}
}

// dial connects to the server, over TLS for StartTLS servers.
func (s *Server) dial() (net.Conn, error) {
	d := &net.Dialer{Timeout: time.Second}
	if s.tls != nil {
		return tls.DialWithDialer(d, "tcp", s.Addr(), s.tls)
	}
	return d.Dial("tcp", s.Addr())
}

// ping sends PING in RESP and reports whether the server is ready: it
// answers PONG, or NOAUTH when it requires a password (a server still
// loading its append-only file answers -LOADING).
func ping(c net.Conn) bool {
	_ = c.SetDeadline(time.Now().Add(time.Second)) // without it the read below fails, answering false
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	answer := string(buf[:n])
	return answer == "+PONG\r\n" || strings.HasPrefix(answer, "-NOAUTH")
}

// Kill ends the server with SIGKILL, as a crash would.
func (s *Server) Kill() { s.end(syscall.SIGKILL) }

// Pause freezes the server (SIGSTOP): connections stay open but nothing
// answers, as in a network partition. Resume undoes it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume lets a paused server run again (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.cmd.Process.Signal(sig)
	}
}

// Stop ends the server with SIGTERM and waits for it to exit.
func (s *Server) Stop() { s.end(syscall.SIGTERM) }

func (s *Server) end(sig syscall.Signal) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	cmd.Process.Signal(syscall.SIGCONT) // a paused server handles sig only once running
	// A server refuses a SIGTERM while it writes its initial append-only
	// file ("Writing initial AOF, can't exit"), as a replica does just
	// after its full sync: it is sent again until it exits.
	again := time.NewTicker(100 * time.Millisecond)
	defer again.Stop()
	for deadline := time.After(10 * time.Second); ; {
		select {
		case <-done:
			return
		case <-again.C:
			cmd.Process.Signal(sig)
		case <-deadline:
			cmd.Process.Kill()
			<-done
			return
		}
	}
}
