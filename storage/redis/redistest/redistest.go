// Package redistest runs a real, private redis-server for tests: on a free
// loopback port, with its data in the test's temporary directory and
// persistence on (appendonly yes, appendfsync always), so that a test can
// kill and restart it and find every acknowledged write again.
//
// When redis-server is not installed the test is skipped, or fails when
// GATEHOUSE_REQUIRE_REDIS=1 (make test sets it and installs Redis).
package redistest

import (
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

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start launches a private redis-server, with extra command-line
// arguments (for example "--requirepass", "secret"); it is stopped when the
// test ends.
func Start(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("GATEHOUSE_REQUIRE_REDIS") == "1" {
			t.Fatal("redis-server is required (make test installs it)")
		}
		t.Skip("redis-server not installed")
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), port: testport.Free(t)}
	s.args = append([]string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--protected-mode", "yes", "--logfile", filepath.Join(s.dir, "redis.log")}, extraArgs...)
	t.Cleanup(s.Stop)
	s.Restart()
	return s
}

// StartSentinel launches a Redis Sentinel monitoring master under
// masterName (quorum 1); it is stopped when the test ends. Its URL() with
// ?master_name=<masterName> reaches the master through it.
func StartSentinel(t testing.TB, master *Server, masterName string) *Server {
	t.Helper()
	s := &Server{t: t, bin: master.bin, dir: t.TempDir(), port: testport.Free(t)}
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

// URL is the redis:// URL of the server, database 0.
func (s *Server) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port) }

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
		if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
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

// ping sends PING in RESP and reports whether the server is ready: it
// answers PONG, or NOAUTH when it requires a password (a server still
// loading its append-only file answers -LOADING).
func ping(c net.Conn) bool {
	c.SetDeadline(time.Now().Add(time.Second))
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
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}
