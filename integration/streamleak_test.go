package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// leakSite serves, behind one gatehouse checking open responses every
// second, a file (file_server), a late answer whose headers a
// handle_response route copies without writing a head, and a late
// answer with trailers (reverse_proxy).
const leakSite = `{
	admin 127.0.0.1:{{.AdminPort}}
	auto_https off
	gatehouse {
		data_dir {{.DataDir}}
	}
}
http://:{{.HTTPPort}} {
	bind 127.0.0.1
	route {
		gatehouse {
			accept basic
			audience leaks
			stream_recheck 1s
		}
		@file path /api/big.bin
		file_server @file {
			root {{.Extra.root}}
		}
		@headers path /api/headers
		reverse_proxy @headers 127.0.0.1:{{.Extra.upstreamPort}} {
			@late status 200
			handle_response @late {
				copy_response_headers
			}
		}
		@trailer path /api/trailer
		reverse_proxy @trailer 127.0.0.1:{{.Extra.upstreamPort}}
	}
}
`

// TestNothingOfALateAnswerReachesABlockedUser: once a user is blocked,
// nothing more of a response still open after stream_recheck reaches
// them, whichever way it is sent:
//   - a download from file_server whose request claims a protocol switch
//     (Upgrade: foo): such a request was watched only by cancelling its
//     context, which a file server never reads, so the download went on
//     to its end;
//   - trailers the upstream sends after the check was refused: the reverse
//     proxy ignores the refused flush and copies them, and the response
//     ended whole with them;
//   - headers a handle_response route copies (copy_response_headers)
//     without writing a head: Caddy sent them in a 200.
//
// Each cut-off is audited once.
func TestNothingOfALateAnswerReachesABlockedUser(t *testing.T) {
	parallel(t) // its sleeps are lower bounds: a slower machine only makes the check later
	root := t.TempDir()
	const size = 64 << 20
	if err := os.MkdirAll(filepath.Join(root, "api"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "api", "big.bin"), make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	arrived, release := make(chan struct{}, 4), make(chan struct{}, 4)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/headers" {
			arrived <- struct{}{}
			<-release
			w.Header().Set("X-Late", "the upstream's late header")
			return
		}
		w.Header().Set("Trailer", "X-Late")
		_, _ = io.WriteString(w, "early body\n")
		http.NewResponseController(w).Flush()
		arrived <- struct{}{}
		<-release
		w.Header().Set("X-Late", "the upstream's late trailer")
	})}
	go func() { _ = up.Serve(ln) }()
	t.Cleanup(func() { _ = up.Close() })
	inst := harness.Start(t, leakSite, harness.Options{Extra: map[string]any{"root": root, "upstreamPort": ln.Addr().(*net.TCPAddr).Port}})
	users := []string{"alice", "bob", "carol"}
	for _, u := range users {
		seedReader(t, inst, u)
	}
	block := func(user string) {
		inst.MustAdmin(t, 200, "PATCH", "/gatehouse/users/"+user, `{"status":"blocked"}`)
	}

	t.Run("a download claiming an upgrade", func(t *testing.T) {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", inst.Ports.HTTPPort))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
		fmt.Fprintf(conn, "GET /api/big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWxpY2U6Y29ycmVjdCBob3JzZQ==\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("the download: %v %v", res, err)
		}
		n, _ := io.CopyN(io.Discard, res.Body, 256<<10)
		block("alice")
		time.Sleep(2500 * time.Millisecond) // past stream_recheck; the client reads nothing meanwhile
		m, _ := io.Copy(io.Discard, res.Body)
		if n+m >= size {
			t.Fatalf("the blocked user downloaded all %d bytes", n+m)
		}
		t.Logf("the blocked user read %d of %d bytes", n+m, size)
	})

	for _, c := range []struct{ user, path string }{{"bob", "/api/trailer"}, {"carol", "/api/headers"}} {
		t.Run(strings.TrimPrefix(c.path, "/api/"), func(t *testing.T) {
			go func() {
				select {
				case <-arrived:
				case <-time.After(30 * time.Second):
				}
				block(c.user)
				time.Sleep(1500 * time.Millisecond) // past stream_recheck (1 s)
				release <- struct{}{}
			}()
			req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", inst.Ports.HTTPPort, c.path), nil)
			req.SetBasicAuth(c.user, "correct horse")
			res, err := harness.Client(t, nil).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			if res.Header.Get("X-Late") != "" || res.Trailer.Get("X-Late") != "" {
				t.Fatalf("the blocked user got the late answer: %d %v %q, trailers %v", res.StatusCode, res.Header, body, res.Trailer)
			}
			if c.path == "/api/headers" && res.StatusCode != 403 {
				t.Fatalf("the blocked user got %d %q; want the refusal", res.StatusCode, body)
			}
			if c.path == "/api/trailer" && err == nil {
				t.Fatalf("the cut-off response ended whole: %q", body)
			}
			t.Logf("the blocked user got %d %q, then %v", res.StatusCode, body, err)
		})
	}

	var events []struct{ Username, Path, Outcome, Reason string }
	if err := json.Unmarshal(inst.MustAdmin(t, 200, "GET", "/gatehouse/audit?kind=request&limit=1000", nil), &events); err != nil {
		t.Fatal(err)
	}
	audited := map[string]int{}
	for _, ev := range events {
		if ev.Outcome == "denied" && (strings.HasSuffix(ev.Reason, " was cut off") || strings.HasSuffix(ev.Reason, "the open stream was closed")) {
			audited[ev.Username]++
		}
	}
	for _, u := range users {
		if audited[u] != 1 {
			t.Errorf("the cut-offs audited: %v; want one each", audited)
		}
	}
}
