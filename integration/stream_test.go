package integration

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/directory/slapdtest"
	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// streamSite checks open streams again every second.
const streamSite = `{
	admin 127.0.0.1:{{.AdminPort}}
	auto_https off
	gatehouse {
		data_dir {{.DataDir}}
	}
}
http://:{{.HTTPPort}} {
	bind 127.0.0.1
	gatehouse {
		accept basic app_key
		audience streams
		stream_recheck 1s
	}
	reverse_proxy 127.0.0.1:{{.Extra.upstreamPort}}
}
`

// streamUpstream serves, on a port of its own, what a stream's upstream
// does: a protocol switch to a WebSocket that echoes what it reads, at
// /api/events Server-Sent Events, one every 100 ms, and at /api/upload
// an upload read line by line; "ok" elsewhere.
func streamUpstream(t *testing.T) *upstreamOfStreams {
	t.Helper()
	up := &upstreamOfStreams{ends: make(chan uploadEnd, 16)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var hijacked []net.Conn
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "websocket" {
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			mu.Lock()
			hijacked = append(hijacked, conn)
			mu.Unlock()
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			_ = brw.Flush()
			_, _ = io.Copy(conn, brw)
			_ = conn.Close()
			return
		}
		if r.URL.Path == "/api/upload" {
			up.uploading.Add(1)
			defer up.uploading.Add(-1)
			body := bufio.NewReader(r.Body)
			end := uploadEnd{}
			for {
				if _, end.err = body.ReadString('\n'); end.err != nil {
					break
				}
				end.lines++
			}
			up.ends <- end
			return
		}
		if r.URL.Path != "/api/events" {
			_, _ = io.WriteString(w, "ok\n")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
				return
			}
			_ = http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range hijacked {
			_ = c.Close()
		}
	})
	up.port = ln.Addr().(*net.TCPAddr).Port
	return up
}

// upstreamOfStreams is streamUpstream's server.
type upstreamOfStreams struct {
	port int
	// ends gets how each upload ended.
	ends chan uploadEnd
	// uploading counts the uploads it is reading.
	uploading atomic.Int32
}

// uploadEnd is how an upload reached streamUpstream ended.
type uploadEnd struct {
	lines int
	err   error // io.EOF: the client's end
}

// sendUpload starts a chunked upload to Caddy's /api/upload with the
// header auth, a line every 100 ms until the test ends or Caddy closes
// the connection.
func sendUpload(t *testing.T, port int, auth string) {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); _ = conn.Close() })
	if _, err := io.WriteString(conn, "POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"+auth+"\r\nTransfer-Encoding: chunked\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if _, err := io.WriteString(conn, "8\r\nreading\n\r\n"); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

// openStream is a stream through Caddy: its lines arrive on lines, and
// lines is closed when the stream ends.
type openStream struct {
	name  string
	conn  net.Conn
	lines chan string
}

// openWebSocket switches a connection to Caddy to a WebSocket with the
// header auth.
func openWebSocket(t *testing.T, port int, name, auth string) *openStream {
	t.Helper()
	conn, br, res := send(t, port, "GET /api/ws HTTP/1.1\r\nHost: 127.0.0.1\r\n"+auth+"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("%s: the WebSocket did not open: %s", name, res.Status)
	}
	return readLines(name, conn, br)
}

// openEvents asks Caddy for Server-Sent Events with the header auth,
// accepting the media type accept.
func openEvents(t *testing.T, port int, name, auth, accept string) *openStream {
	t.Helper()
	conn, _, res := send(t, port, "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"+auth+"\r\nAccept: "+accept+"\r\n\r\n")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s: the event stream did not open: %s", name, res.Status)
	}
	return readLines(name, conn, bufio.NewReader(res.Body))
}

// send writes request on a new connection to Caddy and reads the
// response's head.
func send(t *testing.T, port int, request string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, res
}

// readLines makes the stream of conn whose lines r reads.
func readLines(name string, conn net.Conn, r *bufio.Reader) *openStream {
	s := &openStream{name: name, conn: conn, lines: make(chan string, 1024)}
	go func() {
		defer close(s.lines)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			s.lines <- strings.TrimSpace(line)
		}
	}()
	return s
}

// alive reports whether a new line arrives within the deadline (a
// WebSocket is sent one to echo first): the lines that arrived before
// are passed over, and a stream that ended since is not alive.
func (s *openStream) alive(t *testing.T, websocket bool) bool {
	t.Helper()
	for drained := false; !drained; {
		select {
		case _, ok := <-s.lines:
			if !ok {
				return false
			}
		default:
			drained = true
		}
	}
	if websocket {
		if _, err := fmt.Fprintf(s.conn, "hello %s\n", s.name); err != nil {
			return false
		}
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				return false
			}
			if line != "" {
				return true
			}
		case <-deadline:
			t.Fatalf("%s: no line and no end in 20 s", s.name)
		}
	}
}

// ended waits, with a generous deadline, for the stream to end.
func (s *openStream) ended(t *testing.T) {
	t.Helper()
	deadline := time.After(45 * time.Second)
	for {
		select {
		case _, ok := <-s.lines:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("%s: the stream is still open 45 s later", s.name)
		}
	}
}

func basicAuth(user string) string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":correct horse"))
}

// TestOpenStreamsAreCheckedAgain: through bin/caddy, a WebSocket, an
// upload and event streams (one the request asked for, one it did not) stay open
// while their credential and account pass, and are closed (within a few
// of the route's one-second checks) once the application key is deleted
// or the user blocked; the others stay open, and each closing is in the
// audit log.
func TestOpenStreamsAreCheckedAgain(t *testing.T) {
	parallel(t)
	up := streamUpstream(t)
	inst := harness.Start(t, streamSite, harness.Options{Extra: map[string]any{"upstreamPort": up.port}})
	for _, u := range []string{"alice", "bob", "carol"} {
		seedReader(t, inst, u)
	}
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/api/*","/"]},{"methods":["POST"],"paths":["/api/upload"]}]}`)
	aliceKey := createKey(t, inst, `{"name":"alice-key","username":"alice"}`)
	carolKey := createKey(t, inst, `{"name":"carol-key","username":"carol"}`)
	port := inst.Ports.HTTPPort

	aliceWS := openWebSocket(t, port, "alice's WebSocket", basicAuth("alice"))
	aliceEvents := openEvents(t, port, "alice's events", "appKey: "+aliceKey.Key, "text/event-stream")
	bobWS := openWebSocket(t, port, "bob's WebSocket", basicAuth("bob"))
	carolEvents := openEvents(t, port, "carol's events", "appKey: "+carolKey.Key, "*/*") // an event stream the request did not ask for
	sendUpload(t, port, "appKey: "+carolKey.Key)
	time.Sleep(3 * time.Second) // three checks that pass
	for _, s := range []*openStream{aliceWS, bobWS} {
		if !s.alive(t, true) {
			t.Fatalf("%s ended while its user was allowed", s.name)
		}
	}
	for _, s := range []*openStream{aliceEvents, carolEvents} {
		if !s.alive(t, false) {
			t.Fatalf("%s ended while its key was valid", s.name)
		}
	}

	select {
	case end := <-up.ends:
		t.Fatalf("carol's upload ended while her key was valid: %d lines, %v", end.lines, end.err)
	default:
	}

	inst.MustAdmin(t, 204, "DELETE", "/gatehouse/appkeys/carol-key", nil)
	carolEvents.ended(t)
	select { // the client goes on sending; the upstream gets no more of it
	case end := <-up.ends:
		if end.lines < 2 || end.err == io.EOF {
			t.Fatalf("carol's upload: %d lines, then %v; want lines, then cut off", end.lines, end.err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("carol's upload still reached the upstream 45 s after her key was deleted")
	}
	if !aliceEvents.alive(t, false) || !aliceWS.alive(t, true) || !bobWS.alive(t, true) {
		t.Fatal("deleting carol's key ended another stream")
	}

	inst.MustAdmin(t, 200, "PATCH", "/gatehouse/users/alice", `{"status":"blocked"}`)
	aliceWS.ended(t)
	aliceEvents.ended(t)
	time.Sleep(2 * time.Second) // two more checks
	if !bobWS.alive(t, true) {
		t.Fatal("blocking alice ended bob's WebSocket")
	}

	var events []struct{ Username, Credential, Path, Outcome, Reason string }
	if err := json.Unmarshal(inst.MustAdmin(t, 200, "GET", "/gatehouse/audit?kind=request&limit=1000", nil), &events); err != nil {
		t.Fatal(err)
	}
	closed := map[string]int{}
	for _, ev := range events {
		if (strings.HasSuffix(ev.Reason, "the open stream was closed") || strings.HasSuffix(ev.Reason, " was cut off")) && ev.Outcome == "denied" {
			closed[ev.Username+" "+ev.Path]++
		}
	}
	if closed["alice /api/ws"] != 1 || closed["alice /api/events"] != 1 || closed["carol /api/events"] != 1 || closed["carol /api/upload"] != 1 || len(closed) != 4 {
		t.Fatalf("the closings audited: %v", closed)
	}
}

// errorRouteSite is streamSite sending a request that failed to the
// upstream again from its error route.
var errorRouteSite = strings.Replace(streamSite, "\treverse_proxy 127.0.0.1:{{.Extra.upstreamPort}}\n}",
	"\treverse_proxy 127.0.0.1:{{.Extra.upstreamPort}}\n\thandle_errors {\n\t\treverse_proxy 127.0.0.1:{{.Extra.upstreamPort}}\n\t}\n}", 1)

// TestCutOffUploadReachesNoErrorRoute: once an upload is cut off (its
// user blocked), Caddy's error route, which proxies the failed request
// again with the body as it came, gets no more of it either, however the
// request was made (an X-Gatehouse-* header makes Gatehouse hold a copy
// of Caddy's request): every upload the upstream was reading ends, while
// the client goes on sending.
func TestCutOffUploadReachesNoErrorRoute(t *testing.T) {
	parallel(t)
	up := streamUpstream(t)
	if !strings.Contains(errorRouteSite, "handle_errors") {
		t.Fatal("errorRouteSite has no error route")
	}
	inst := harness.Start(t, errorRouteSite, harness.Options{Extra: map[string]any{"upstreamPort": up.port}})
	seedReader(t, inst, "dave")
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["POST"],"paths":["/api/upload"]}]}`)
	sendUpload(t, inst.Ports.HTTPPort, basicAuth("dave")+"\r\nX-Gatehouse-Spoofed: 1")
	deadline := time.Now().Add(45 * time.Second)
	for up.uploading.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the upload did not reach the upstream in 45 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	inst.MustAdmin(t, 200, "PATCH", "/gatehouse/users/dave", `{"status":"blocked"}`)
	select {
	case end := <-up.ends:
		if end.err == io.EOF {
			t.Fatalf("the upload ended as if the client had finished: %d lines", end.lines)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("dave's upload still reached the upstream 45 s after he was blocked")
	}
	for deadline := time.Now().Add(45 * time.Second); up.uploading.Load() > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d uploads (the error route's) still read dave's body 45 s after he was blocked", up.uploading.Load())
		}
	}
}

// directoryStreamSite is a plain-HTTP site of directory accounts whose
// open streams are checked every second (status_ttl is directoryTTL).
const directoryStreamSite = directoryGlobal + `
http://:{{.HTTPPort}} {
	bind 127.0.0.1
	gatehouse {
		accept basic
		audience streams
		stream_recheck 1s
	}
	reverse_proxy 127.0.0.1:{{.Extra.upstreamPort}}
}
`

// TestDirectoryStreamsAreCheckedWithoutCounting: through bin/caddy and a
// real slapd, open streams of a directory account, whose password is
// verified again against the directory once status_ttl has passed, stay
// open while someone else's wrong guesses spend the name's failed_binds,
// and end once the password is changed in the directory, without those
// checks counting as wrong guesses: the owner's new password then signs
// in (five streams used to spend failed_binds and throttle it for 15
// minutes), after at most one failed bind for all of them.
func TestDirectoryStreamsAreCheckedWithoutCounting(t *testing.T) {
	parallel(t)
	harness.RequireTool(t, "openssl")
	s := slapdtest.Start(t)
	s.AddUser("alice", "alice password", "", slapdtest.OperatorsDN)
	daveDN := s.AddUser("dave", "dave password 1", "", slapdtest.OperatorsDN)
	opts := directoryOptions(s, "reader")
	opts.Extra["upstreamPort"] = streamUpstream(t).port
	inst := harness.Start(t, directoryStreamSite, opts)
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/api/*"]}]}`)
	port := inst.Ports.HTTPPort
	alice := openEvents(t, port, "alice's events", "Authorization: Basic "+base64.StdEncoding.EncodeToString([]byte("alice:alice password")), "text/event-stream")
	var dave []*openStream
	for i := range 5 {
		dave = append(dave, openEvents(t, port, fmt.Sprintf("dave's events %d", i), "Authorization: Basic "+base64.StdEncoding.EncodeToString([]byte("dave:dave password 1")), "text/event-stream"))
	}
	for i := range 6 { // spends alice's failed_binds (4): her own sign-ins are throttled now
		harness.Curl(t, "-u", fmt.Sprintf("alice:guess %d", i), fmt.Sprintf("http://127.0.0.1:%d/api/x", port))
	}
	time.Sleep(2*directoryTTL + 2*time.Second) // past status_ttl: every stream verified against the directory again
	if !alice.alive(t, false) {
		t.Fatal("someone else's guesses at alice ended her stream")
	}
	for _, d := range dave {
		if !d.alive(t, false) {
			t.Fatalf("%s ended while its password was right", d.name)
		}
	}

	s.Modify("dn: " + daveDN + "\nchangetype: modify\nreplace: userPassword\nuserPassword: dave password 2\n")
	for _, d := range dave {
		d.ended(t)
	}
	res := harness.Curl(t, "-u", "dave:dave password 2", fmt.Sprintf("http://127.0.0.1:%d/api/x", port))
	if res.Status != 200 {
		t.Fatalf("dave's new password after his streams ended: %d %s; want 200 (their checks counted as guesses?)", res.Status, res.Body)
	}
	var events []struct{ Username, Reason string }
	if err := json.Unmarshal(inst.MustAdmin(t, 200, "GET", "/gatehouse/audit?username=dave&limit=1000", nil), &events); err != nil {
		t.Fatal(err)
	}
	failedBinds := 0
	for _, ev := range events {
		if strings.Contains(ev.Reason, "bind failed") {
			failedBinds++
		}
	}
	if failedBinds > 1 {
		t.Fatalf("%d failed binds for dave's five streams; want at most one", failedBinds)
	}
}
