package integration

import (
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// lateUpstream answers /api/late/<status> once the test releases it:
// the status with the header X-Late and, for 200, a body; it tells the
// test when a request arrived.
type lateUpstream struct {
	port    int
	arrived chan struct{}
	release chan struct{}
}

func startLateUpstream(t *testing.T) *lateUpstream {
	t.Helper()
	up := &lateUpstream{arrived: make(chan struct{}, 16), release: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up.arrived <- struct{}{}
		select {
		case <-up.release:
		case <-r.Context().Done():
			return
		}
		var status int
		_, _ = fmt.Sscanf(r.URL.Path, "/api/late/%d", &status)
		w.Header().Set("X-Late", "what the upstream answered after the revocation")
		if status == 302 {
			w.Header().Set("Location", "/api/secret-place")
		}
		w.WriteHeader(status)
		if status == 200 {
			_, _ = io.WriteString(w, "the late body\n")
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	up.port = ln.Addr().(*net.TCPAddr).Port
	return up
}

// TestALateAnswerAfterARevocationIsNotSent: a request allowed when it
// came, whose upstream answers only after stream_recheck has passed and
// the user was blocked meanwhile (a long poll, a slow operation), gets
// nothing of that answer: neither its status and headers (a 204, a
// redirect) nor its body. Before, the response's writes were checked but
// not its head, so the upstream's status line and headers reached the
// blocked client, and a header-only answer reached it whole.
func TestALateAnswerAfterARevocationIsNotSent(t *testing.T) {
	parallel(t)
	for _, status := range []int{204, 302, 200} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			parallel(t)
			up := startLateUpstream(t)
			inst := harness.Start(t, streamSite, harness.Options{Extra: map[string]any{"upstreamPort": up.port}})
			seedReader(t, inst, "alice")
			client := harness.Client(t, nil)
			type answer struct {
				res  *http.Response
				body string
				err  error
			}
			answers := make(chan answer, 1)
			go func() {
				req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/api/late/%d", inst.Ports.HTTPPort, status), nil)
				req.SetBasicAuth("alice", "correct horse")
				res, err := client.Do(req)
				var body []byte
				if err == nil {
					body, _ = io.ReadAll(res.Body)
					res.Body.Close()
				}
				answers <- answer{res, string(body), err}
			}()
			select {
			case <-up.arrived:
			case <-time.After(30 * time.Second):
				t.Fatal("the request did not reach the upstream")
			}
			arrived := time.Now() // after Caddy took the request
			inst.MustAdmin(t, 200, "PATCH", "/gatehouse/users/alice", `{"status":"blocked"}`)
			// Past stream_recheck (1 s) since Caddy took the request.
			time.Sleep(time.Until(arrived.Add(1500 * time.Millisecond)))
			close(up.release)
			var a answer
			select {
			case a = <-answers:
			case <-time.After(30 * time.Second):
				t.Fatal("no answer 30 s after the upstream's")
			}
			if a.err != nil && status == 200 {
				return // cut off mid-answer, the connection closed: nothing of the answer came
			}
			if a.err != nil {
				t.Fatalf("no answer: %v; want the refusal", a.err)
			}
			if a.res.StatusCode != 403 || a.res.Header.Get("X-Late") != "" || a.res.Header.Get("Location") != "" || a.body == "the late body\n" {
				t.Fatalf("the blocked user got the late answer: %d %v %q", a.res.StatusCode, a.res.Header, a.body)
			}
			t.Logf("the blocked user got %d %q", a.res.StatusCode, a.body)
		})
	}
}

// TestStreamsEndAcrossTheCluster measures how long an event stream and a
// WebSocket opened on B (stream_recheck 1s) go on once A blocks their
// user: with B's link to Redis up, and with it stalled (a partition:
// B's checks cannot be made, and two in a row close the stream). Each
// must end within a few intervals; the times are logged for
// docs/security.md.
func TestStreamsEndAcrossTheCluster(t *testing.T) {
	parallel(t)
	site := strings.Replace(streamSite, "data_dir {{.DataDir}}", "data_dir {{.DataDir}}\n\t\tstorage redis {{.RedisURL}}", 1)
	up := streamUpstream(t)
	srv := redistest.Start(t)
	proxy := startStallProxy(t, srv.Addr())
	a := harness.Start(t, site, harness.Options{RedisURL: srv.URL(), Extra: map[string]any{"upstreamPort": up.port}})
	bDir := t.TempDir()
	copyTree(t, a.DataDir(), bDir+"/data")
	b := harness.Start(t, site, harness.Options{RedisURL: strings.Replace(srv.URL(), srv.Addr(), proxy.addr, 1), Dir: bDir,
		Extra: map[string]any{"upstreamPort": up.port}})
	for _, partitioned := range []bool{false, true} {
		user := fmt.Sprintf("alice%v", partitioned)
		seedReader(t, a, user)
		auth := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":correct horse"))
		ws := openWebSocket(t, b.Ports.HTTPPort, user+"'s WebSocket", auth)
		events := openEvents(t, b.Ports.HTTPPort, user+"'s events", auth, "text/event-stream")
		time.Sleep(2500 * time.Millisecond) // checks that pass
		if !ws.alive(t, true) || !events.alive(t, false) {
			t.Fatalf("%s's streams ended while allowed", user)
		}
		if partitioned {
			proxy.stalled.Store(true)
		}
		a.MustAdmin(t, 200, "PATCH", "/gatehouse/users/"+user, `{"status":"blocked"}`)
		ack := time.Now()
		var wg sync.WaitGroup
		for _, s := range []*openStream{ws, events} {
			wg.Go(func() {
				s.ended(t)
				t.Logf("partitioned %v: %s ended %v after the block was acknowledged", partitioned, s.name, time.Since(ack).Round(time.Millisecond))
			})
		}
		wg.Wait()
		proxy.stalled.Store(false)
	}
}

// lateErrorSite is streamSite whose reverse proxy turns an upstream's
// 5xx into an error (handle_response), which the site's error route
// answers with the upstream's X-Late header: the error route echoes a
// value of the upstream's answer.
var lateErrorSite = strings.Replace(streamSite, "\treverse_proxy 127.0.0.1:{{.Extra.upstreamPort}}\n}",
	"\treverse_proxy 127.0.0.1:{{.Extra.upstreamPort}} {\n\t\t@late status 5xx\n\t\thandle_response @late {\n\t\t\terror 502\n\t\t}\n\t}\n"+
		"\thandle_errors {\n\t\trespond \"echoed: {http.reverse_proxy.header.X-Late}\" 502\n\t}\n}", 1)

// TestALateErrorAfterARevocationReachesNoErrorRoute: a request allowed
// when it came, whose upstream answers only after stream_recheck has
// passed and the user was blocked meanwhile, with an answer the reverse
// proxy turns into an error (a handle_response route's error), gets the
// refusal, not the site's error route, which echoes a value of the
// upstream's late answer. Before, a handler that returned an error
// without writing was not checked, and Caddy's error route (which writes
// past Gatehouse) sent the blocked user the upstream's header.
func TestALateErrorAfterARevocationReachesNoErrorRoute(t *testing.T) {
	parallel(t)
	if !strings.Contains(lateErrorSite, "handle_errors") {
		t.Fatal("lateErrorSite has no error route")
	}
	up := startLateUpstream(t)
	inst := harness.Start(t, lateErrorSite, harness.Options{Extra: map[string]any{"upstreamPort": up.port}})
	seedReader(t, inst, "alice")
	client := harness.Client(t, nil)
	url := fmt.Sprintf("http://127.0.0.1:%d/api/late/503", inst.Ports.HTTPPort)
	answers := getAsAlice(client, url)
	select {
	case <-up.arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the request did not reach the upstream")
	}
	arrived := time.Now() // after Caddy took the request
	inst.MustAdmin(t, 200, "PATCH", "/gatehouse/users/alice", `{"status":"blocked"}`)
	time.Sleep(time.Until(arrived.Add(1500 * time.Millisecond))) // past stream_recheck (1 s)
	close(up.release)
	var a aliceAnswer
	select {
	case a = <-answers:
	case <-time.After(30 * time.Second):
		t.Fatal("no answer 30 s after the upstream's")
	}
	if a.err != nil {
		t.Fatalf("no answer: %v; want the refusal", a.err)
	}
	if a.status != 403 || strings.Contains(a.body, "echoed") || strings.Contains(a.body, "after the revocation") {
		t.Fatalf("the blocked user got the error route's answer: %d %q", a.status, a.body)
	}
	t.Logf("the blocked user got %d %q", a.status, a.body)
}

// deadUpstreamErrorSite is streamSite whose reverse proxy's upstream
// takes the request and dies without answering, and whose error route
// serves a friendly page naming the error's status.
var deadUpstreamErrorSite = strings.Replace(streamSite, "\treverse_proxy 127.0.0.1:{{.Extra.upstreamPort}}\n}",
	"\treverse_proxy 127.0.0.1:{{.Extra.upstreamPort}}\n"+
		"\thandle_errors {\n\t\trespond \"friendly page: {err.status_code}\" {err.status_code}\n\t}\n}", 1)

// TestALateErrorOfAHealthyUserReachesTheErrorRoute: the other side of
// TestALateErrorAfterARevocationReachesNoErrorRoute. A user whose
// credential and account still pass, whose upstream fails only after
// stream_recheck has passed, gets the site's error route as before the
// check of a late error was added: a handle_response route's error (the
// error route echoing the upstream's header), and the reverse proxy's 502
// when the upstream dies without answering (a friendly error page). The
// check a late error gets must not turn a healthy user's error into a
// refusal.
func TestALateErrorOfAHealthyUserReachesTheErrorRoute(t *testing.T) {
	parallel(t)
	longGet := func(t *testing.T, url string, release func()) (int, string) {
		t.Helper()
		answers := getAsAlice(harness.Client(t, nil), url)
		release()
		select {
		case a := <-answers:
			if a.err != nil {
				t.Fatalf("no answer: %v", a.err)
			}
			return a.status, a.body
		case <-time.After(30 * time.Second):
			t.Fatal("no answer 30 s after the upstream's")
		}
		return 0, ""
	}
	t.Run("handle_response error", func(t *testing.T) {
		up := startLateUpstream(t)
		inst := harness.Start(t, lateErrorSite, harness.Options{Extra: map[string]any{"upstreamPort": up.port}})
		seedReader(t, inst, "alice")
		status, body := longGet(t, fmt.Sprintf("http://127.0.0.1:%d/api/late/503", inst.Ports.HTTPPort), func() {
			go func() {
				select {
				case <-up.arrived:
				case <-time.After(30 * time.Second):
					return
				}
				time.Sleep(1500 * time.Millisecond) // past stream_recheck (1 s)
				close(up.release)
			}()
		})
		if status != 502 || !strings.Contains(body, "echoed: what the upstream answered") {
			t.Fatalf("a healthy user's late error got %d %q; want the error route's 502", status, body)
		}
	})
	t.Run("upstream dies", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		arrived := make(chan struct{}, 4)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					_, _ = c.Read(make([]byte, 4096)) // the request's head
					arrived <- struct{}{}
					time.Sleep(1500 * time.Millisecond) // past stream_recheck (1 s)
					_ = c.Close()
				}()
			}
		}()
		inst := harness.Start(t, deadUpstreamErrorSite, harness.Options{Extra: map[string]any{"upstreamPort": ln.Addr().(*net.TCPAddr).Port}})
		seedReader(t, inst, "alice")
		status, body := longGet(t, fmt.Sprintf("http://127.0.0.1:%d/api/slow", inst.Ports.HTTPPort), func() {})
		select {
		case <-arrived:
		default:
			t.Fatal("the request never reached the upstream")
		}
		if status != 502 || body != "friendly page: 502" {
			t.Fatalf("a healthy user's upstream dying late got %d %q; want the error route's 502", status, body)
		}
	})
}

// aliceAnswer is how a request getAsAlice sent ended: its status and
// body, or the error the client got.
type aliceAnswer struct {
	status int
	body   string
	err    error
}

// getAsAlice sends GET url with alice's password through client, in the
// background: the channel gets how it ended.
func getAsAlice(client *http.Client, url string) <-chan aliceAnswer {
	answers := make(chan aliceAnswer, 1)
	go func() {
		req, _ := http.NewRequest("GET", url, nil)
		req.SetBasicAuth("alice", "correct horse")
		res, err := client.Do(req)
		if err != nil {
			answers <- aliceAnswer{err: err}
			return
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		answers <- aliceAnswer{res.StatusCode, string(body), nil}
	}()
	return answers
}
