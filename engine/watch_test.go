package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/monoclock/monoclocktest"
)

// responseEnd is how a long response ended: the writes that succeeded,
// and the error that ended them (nil after 30 s).
type responseEnd struct {
	writes int
	err    error
}

// cutOff waits up to within for the watched response (or upload) c to
// end, and fails the test unless it was cut off (an error other than
// io.EOF) after at least minWrites writes; what names it in a failure.
func cutOff(t *testing.T, c <-chan responseEnd, within time.Duration, minWrites int, what string) {
	t.Helper()
	select {
	case res := <-c:
		if res.err == nil || errors.Is(res.err, io.EOF) || res.writes < minWrites {
			t.Fatalf("%s: %d writes, then %v; want at least %d, then cut off", what, res.writes, res.err, minWrites)
		}
	case <-time.After(within):
		t.Fatalf("%s went on %v after it should have been cut off", what, within)
	}
}

// stillGoing fails the test when the watched response c has ended.
func stillGoing(t *testing.T, c <-chan responseEnd, what string) {
	t.Helper()
	select {
	case res := <-c:
		t.Fatalf("%s ended: %d writes, %v", what, res.writes, res.err)
	default:
	}
}

// longResponse serves a GET as alice on rt, with extra header lines
// beside her password, whose upstream writes a line every 5 ms for up to
// 30 s, once its first write went through (on a busy machine the sign-in
// may take seconds); the channel gets how it ended.
func longResponse(t *testing.T, rt *engine.Route, extra http.Header) <-chan responseEnd {
	t.Helper()
	done, started := make(chan responseEnd, 1), make(chan struct{})
	r := httptest.NewRequest("GET", "/api/feed", nil)
	r.Header = basicAuth("alice", "correct horse")
	for name, values := range extra {
		r.Header[name] = values
	}
	rec := httptest.NewRecorder()
	go func() {
		_ = rt.Serve(rec, r, func(w http.ResponseWriter, _ *http.Request, _ *identity.Identity) error {
			writes := 0
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				if _, err := w.Write([]byte("data: tick\n\n")); err != nil {
					done <- responseEnd{writes, err}
					return nil
				}
				if writes == 0 {
					close(started)
				}
				writes++
				if err := http.NewResponseController(w).Flush(); err != nil {
					// A check falls at a flush as at a write: the
					// account blocked between the two (a busy machine).
					done <- responseEnd{writes, err}
					return nil
				}
				time.Sleep(5 * time.Millisecond)
			}
			done <- responseEnd{writes, nil}
			return nil
		})
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the long response did not start in 30 s")
	}
	return done
}

// TestLongResponseIsCutOffWhenItsUserIsBlocked: a response still being
// written after the route's recheck interval is checked again at its
// writes, and cut off once its user is blocked (whatever the request
// asked for: no Accept header here; however many Cookie lines it sent);
// on a route with the checks off it goes on.
func TestLongResponseIsCutOffWhenItsUserIsBlocked(t *testing.T) {
	s := newSetup(t)
	route := func(d time.Duration) *engine.Route {
		rt, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Audience: "demo", StreamRecheck: d})
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	watched := route(20 * time.Millisecond)
	cookies := http.Header{}
	for i := range 3 {
		cookies.Add("Cookie", fmt.Sprintf("c%d=%d", i, i))
	}
	checked := []<-chan responseEnd{longResponse(t, watched, nil), longResponse(t, watched, cookies)}
	unchecked := longResponse(t, route(-1), nil)
	time.Sleep(200 * time.Millisecond) // checks that pass
	if _, err := s.e.Accounts.UpdateUser(context.Background(), "alice", blocked()); err != nil {
		t.Fatal(err)
	}
	for i, c := range checked {
		cutOff(t, c, 30*time.Second, 2, fmt.Sprintf("watched response %d of a blocked user", i))
	}
	time.Sleep(100 * time.Millisecond)
	stillGoing(t, unchecked, "a response on a route with the checks off")
}

// TestLongResponseIsCheckedForItsMethodOverride: a long response whose
// request carried a method override (X-HTTP-Method-Override: DELETE on a
// GET) is checked again for the method it named too, and cut off once
// the user loses the role that allowed it; the same response without
// the override goes on.
func TestLongResponseIsCheckedForItsMethodOverride(t *testing.T) {
	s := newSetup(t)
	ctx := context.Background()
	if _, err := s.e.Accounts.PutRole(ctx, account.Role{Name: "remover", Rules: []account.Rule{{Methods: []string{"DELETE"}, Paths: []string{"/api/*"}}}}); err != nil {
		t.Fatal(err)
	}
	roles := func(names ...string) account.UserPatch { return account.UserPatch{Roles: &names} }
	if _, err := s.e.Accounts.UpdateUser(ctx, "alice", roles("reader", "remover")); err != nil {
		t.Fatal(err)
	}
	rt, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Audience: "demo", StreamRecheck: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	overriding := longResponse(t, rt, http.Header{"X-Http-Method-Override": {"DELETE"}})
	plain := longResponse(t, rt, nil)
	time.Sleep(200 * time.Millisecond) // checks that pass
	if _, err := s.e.Accounts.UpdateUser(ctx, "alice", roles("reader")); err != nil {
		t.Fatal(err)
	}
	cutOff(t, overriding, 30*time.Second, 2, "a response whose override lost its role")
	time.Sleep(100 * time.Millisecond)
	stillGoing(t, plain, "a GET the role still allows")
}

// TestShortResponsesAreNotChecked: a response written within the
// interval is written as is, through a watch that only reads the clock;
// with the checks off, handlers get Caddy's own ResponseWriter.
func TestShortResponsesAreNotChecked(t *testing.T) {
	s := newSetup(t)
	for _, d := range []time.Duration{time.Hour, -1} {
		rt, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Audience: "demo", StreamRecheck: d})
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("GET", "/api/x", nil)
		r.Header = basicAuth("alice", "correct horse")
		rec := httptest.NewRecorder()
		err = rt.Serve(rec, r, func(w http.ResponseWriter, _ *http.Request, _ *identity.Identity) error {
			if (w == http.ResponseWriter(rec)) != (d < 0) {
				t.Errorf("recheck %v: handlers got %T", d, w)
			}
			_, err := w.Write([]byte("ok"))
			return errors.Join(err, http.NewResponseController(w).Flush())
		})
		if err != nil || rec.Body.String() != "ok" || !rec.Flushed {
			t.Fatalf("recheck %v: %v, body %q, flushed %v", d, err, rec.Body, rec.Flushed)
		}
	}
}

// newUpload gives alice a role allowing POST on /api/*, a route checking
// open requests every 20 ms, and her POST to /api/upload whose client
// sends a line every interval for up to 30 s.
func newUpload(t *testing.T, every time.Duration) (*setup, *engine.Route, *http.Request) {
	t.Helper()
	s := newSetup(t)
	ctx := context.Background()
	if _, err := s.e.Accounts.PutRole(ctx, account.Role{Name: "writer", Rules: []account.Rule{{Methods: []string{"POST"}, Paths: []string{"/api/*"}}}}); err != nil {
		t.Fatal(err)
	}
	writer := []string{"writer"}
	if _, err := s.e.Accounts.UpdateUser(ctx, "alice", account.UserPatch{Roles: &writer}); err != nil {
		t.Fatal(err)
	}
	rt, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Audience: "demo", StreamRecheck: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	upload, client := io.Pipe()
	t.Cleanup(func() { client.Close() })
	go func() {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(every) {
			if _, err := client.Write([]byte("reading 42\n")); err != nil {
				return
			}
		}
		client.Close()
	}()
	r := httptest.NewRequest("POST", "/api/upload", upload)
	r.Header = basicAuth("alice", "correct horse")
	return s, rt, r
}

// TestLongUploadIsCutOffWhenItsUserIsBlocked: a request body still being
// read (an upload the reverse proxy streams upstream) after the route's
// recheck interval is checked again at its reads, and no more of it is
// read once its user is blocked; the response, written meanwhile from
// another goroutine as the reverse proxy's copy of a full-duplex exchange
// is, is cut off too (and the two sides' checks share no unguarded state:
// run with -race).
func TestLongUploadIsCutOffWhenItsUserIsBlocked(t *testing.T) {
	s, rt, r := newUpload(t, 5*time.Millisecond)
	ctx := context.Background()
	done, started := make(chan responseEnd, 1), make(chan struct{})
	go func() {
		_ = rt.Serve(httptest.NewRecorder(), r, func(w http.ResponseWriter, r *http.Request, _ *identity.Identity) error {
			written := make(chan error, 1)
			go func() {
				for {
					if _, err := w.Write([]byte("ack\n")); err != nil {
						written <- err
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}()
			defer func() {
				if err := <-written; err == nil {
					t.Error("the response went on")
				}
			}()
			buf := make([]byte, 64)
			for reads := 0; ; reads++ {
				if _, err := r.Body.Read(buf); err != nil {
					done <- responseEnd{reads, err}
					return nil
				}
				if reads == 0 {
					close(started)
				}
			}
		})
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the upload did not start in 30 s")
	}
	time.Sleep(200 * time.Millisecond) // checks that pass
	if _, err := s.e.Accounts.UpdateUser(ctx, "alice", blocked()); err != nil {
		t.Fatal(err)
	}
	cutOff(t, done, 30*time.Second, 2, "the upload of a blocked user (writes: its reads)")
}

// TestCutOffBodyIsTheCallersToo: a request Gatehouse copies (here for the
// X-Gatehouse-* header it strips) has its body watched on the caller's
// request too, which Caddy's error routes read again: once the upload is
// cut off, reading the caller's body fails as well, while the client goes
// on sending.
func TestCutOffBodyIsTheCallersToo(t *testing.T) {
	s, rt, caller := newUpload(t, time.Millisecond)
	ctx := context.Background()
	caller.Header.Set("X-Gatehouse-User", "mallory")
	var handed *http.Request
	var cut error
	err := rt.Serve(httptest.NewRecorder(), caller, func(_ http.ResponseWriter, r *http.Request, _ *identity.Identity) error {
		handed = r
		buf := make([]byte, 64)
		if _, err := r.Body.Read(buf); err != nil {
			t.Fatalf("the first read: %v", err)
		}
		if _, err := s.e.Accounts.UpdateUser(ctx, "alice", blocked()); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for cut == nil && time.Now().Before(deadline) {
			_, cut = r.Body.Read(buf)
		}
		return nil
	})
	if err != nil || cut == nil {
		t.Fatalf("serve: %v; the upload's reads: %v; want cut off", err, cut)
	}
	if handed == caller {
		t.Fatal("the route handed on the caller's request itself: this test needs a copy")
	}
	if n, err := caller.Body.Read(make([]byte, 64)); err == nil {
		t.Fatalf("the caller's body gave %d more bytes after the cut-off", n)
	}
}

// TestLongResponseIsCheckedAfterTheClockStepsBack: a response opened while
// the wall clock ran an hour ahead, and still written after NTP stepped it
// back, is checked again after the recheck interval and cut off once its
// user is blocked. The interval was counted on the wall clock, so no check
// came for an hour, and a revoked credential kept its stream that long.
func TestLongResponseIsCheckedAfterTheClockStepsBack(t *testing.T) {
	s := newSetup(t)
	rt, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Audience: "demo", StreamRecheck: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	engine.SetClock(t, func() time.Time { return monoclocktest.WallStepped(time.Now(), time.Hour) })
	res := longResponse(t, rt, nil)
	engine.SetClock(t, time.Now) // stepped back
	if _, err := s.e.Accounts.UpdateUser(context.Background(), "alice", blocked()); err != nil {
		t.Fatal(err)
	}
	cutOff(t, res, 10*time.Second, 0, "the response of a blocked user, opened before the clock stepped back an hour")
}

// TestCutOffIsAuditedWithItsSite: the audit event of a long response cut
// off once its account lost the role the route requires (require_role)
// names the site (host) the request was sent to, as the event of a
// stream closed does. Until 2026-12-07 it had no host.
func TestCutOffIsAuditedWithItsSite(t *testing.T) {
	s := newSetup(t)
	rt, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Audience: "demo",
		RequireRole: []string{"reader"}, StreamRecheck: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.e.Accounts.PutRole(ctx, account.Role{Name: "feed", Rules: []account.Rule{{Methods: []string{"GET"}, Paths: []string{"/api/*"}}}}); err != nil {
		t.Fatal(err)
	}
	ended := longResponse(t, rt, nil)
	other := []string{"feed"} // its rules still allow the request
	if _, err := s.e.Accounts.UpdateUser(ctx, "alice", account.UserPatch{Roles: &other}); err != nil {
		t.Fatal(err)
	}
	cutOff(t, ended, 30*time.Second, 0, "the response after alice lost the role")
	s.e.Audit.Flush()
	events, err := s.e.Audit.Query(ctx, audit.Filter{Username: "alice", Kind: audit.KindRequest, Outcome: audit.OutcomeDenied})
	if err != nil || len(events) != 1 || !strings.Contains(events[0].Reason, "require_role") || events[0].Host != "example.com" {
		t.Fatalf("the cut-off's audit events: %+v, %v; want one naming require_role, with host example.com", events, err)
	}
}

// TestALateHeadIsCheckedToo: a response whose handler answers only
// after StreamRecheck, once the user was blocked (a long poll, a slow
// operation), sends none of its head, neither a header-only answer (204,
// a redirect) nor the status and headers before a body, nor a flushed
// head: the client gets the refusal, without the upstream's headers.
// Before, only the response's writes were checked, so a late 204 or 302
// reached a blocked user whole.
func TestALateHeadIsCheckedToo(t *testing.T) {
	for _, answer := range []string{"204", "302", "200 with a body", "flush first"} {
		t.Run(answer, func(t *testing.T) {
			s := newSetup(t)
			rt, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Audience: "demo", StreamRecheck: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/api/poll", nil)
			r.Header = basicAuth("alice", "correct horse")
			rec := httptest.NewRecorder()
			var writeErr error
			err = rt.Serve(rec, r, func(w http.ResponseWriter, _ *http.Request, _ *identity.Identity) error {
				if _, err := s.e.Accounts.UpdateUser(context.Background(), "alice", blocked()); err != nil {
					t.Fatal(err)
				}
				time.Sleep(50 * time.Millisecond) // past StreamRecheck
				w.Header().Set("X-Late", "the upstream's answer")
				switch answer {
				case "204":
					w.WriteHeader(http.StatusNoContent)
				case "302":
					w.Header().Set("Location", "/somewhere")
					w.WriteHeader(http.StatusFound)
				case "200 with a body":
					w.WriteHeader(http.StatusOK)
					_, writeErr = w.Write([]byte("late body"))
				case "flush first":
					writeErr = http.NewResponseController(w).Flush()
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if rec.Code != http.StatusForbidden || rec.Header().Get("X-Late") != "" || rec.Header().Get("Location") != "" ||
				!strings.Contains(rec.Body.String(), `"forbidden"`) {
				t.Fatalf("the blocked user's late answer: %d %v %q; want the refusal alone", rec.Code, rec.Header(), rec.Body)
			}
			if answer == "200 with a body" || answer == "flush first" {
				if writeErr == nil {
					t.Fatal("the handler's write or flush after the refused head succeeded")
				}
			}
		})
	}
}

// TestAnUpgradeHeaderLeavesNoResponseUnwatched: a request that only
// claims a protocol switch (an Upgrade header, with or without
// Connection: Upgrade) whose handler answers it as any other (a file
// server's download, which does not stop when its context ends) is cut
// off at its writes once its user is blocked. Before, such a request was
// watched only by cancelling its context (serveStream), which a handler
// that does not read it never noticed: a blocked user's download went on
// to its end.
func TestAnUpgradeHeaderLeavesNoResponseUnwatched(t *testing.T) {
	s := newSetup(t)
	rt, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Audience: "demo", StreamRecheck: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	claims := []http.Header{
		{"Upgrade": {"foo"}},
		{"Connection": {"Upgrade"}, "Upgrade": {"foo"}},
	}
	var downloads []<-chan responseEnd
	for _, h := range claims {
		downloads = append(downloads, longResponse(t, rt, h))
	}
	time.Sleep(100 * time.Millisecond) // checks that pass
	if _, err := s.e.Accounts.UpdateUser(context.Background(), "alice", blocked()); err != nil {
		t.Fatal(err)
	}
	for i, c := range downloads {
		cutOff(t, c, 30*time.Second, 2, fmt.Sprintf("the download of a blocked user that claimed %v", claims[i]))
	}
}

// TestNothingOfALateAnswerFollowsACutOff: what a handler leaves in the
// response's header map for the server to send once it returns reaches
// a blocked user no more than its writes do. A response cut off at a
// flush (the reverse proxy flushes before it copies the upstream's
// trailers, then ignores the flush's error) loses the trailers set after
// it; a response whose handler set headers past StreamRecheck but wrote
// no head (Caddy's copy_response_headers in a handle_response route)
// gets the refusal, not a 200 with those headers. Before, both went to
// the client as the handler left them.
func TestNothingOfALateAnswerFollowsACutOff(t *testing.T) {
	for _, answer := range []string{"trailers", "headers alone"} {
		t.Run(answer, func(t *testing.T) {
			s := newSetup(t)
			rt, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Audience: "demo", StreamRecheck: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/api/poll", nil)
			r.Header = basicAuth("alice", "correct horse")
			rec := httptest.NewRecorder()
			var flushErr error
			err = rt.Serve(rec, r, func(w http.ResponseWriter, _ *http.Request, _ *identity.Identity) error {
				if answer == "trailers" {
					w.Header().Set("Trailer", "X-Secret")
					w.WriteHeader(http.StatusOK)
					_, _ = w.Write([]byte("early body\n"))
				}
				if _, err := s.e.Accounts.UpdateUser(context.Background(), "alice", blocked()); err != nil {
					t.Fatal(err)
				}
				time.Sleep(50 * time.Millisecond) // past StreamRecheck
				if answer == "trailers" {
					flushErr = http.NewResponseController(w).Flush()
					w.Header().Set("X-Secret", "the upstream's trailer")
					w.Header().Set(http.TrailerPrefix+"X-Other", "another")
					return nil
				}
				w.Header().Set("X-Late", "the upstream's answer")
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			switch answer {
			case "trailers":
				if flushErr == nil {
					t.Fatal("the flush after the block passed")
				}
				if len(rec.Result().Trailer) != 0 || rec.Header().Get("X-Secret") != "" || rec.Header().Get(http.TrailerPrefix+"X-Other") != "" {
					t.Fatalf("the blocked user's response kept the late trailers: %v %v", rec.Result().Trailer, rec.Header())
				}
			default:
				if rec.Code != http.StatusForbidden || rec.Header().Get("X-Late") != "" || !strings.Contains(rec.Body.String(), `"forbidden"`) {
					t.Fatalf("the blocked user's late headers: %d %v %q; want the refusal alone", rec.Code, rec.Header(), rec.Body)
				}
			}
		})
	}
}

// TestALateErrorGetsTheRefusal: a handler that returns an error past
// StreamRecheck without writing a head (Caddy's reverse proxy turning
// the upstream's late answer into an error: a handle_response route's
// error, a retry match, a proxy error), once the user was blocked, gets
// the refusal, and Serve returns no error: Caddy's error routes
// (handle_errors), which write past the watch and may echo the
// upstream's late headers or proxy the request again, do not run. Nor
// after an upload was cut off. Before, a handler's error was returned
// unchecked, and the error route answered the blocked user.
func TestALateErrorGetsTheRefusal(t *testing.T) {
	s := newSetup(t)
	rt, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Audience: "demo", StreamRecheck: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/api/poll", nil)
	r.Header = basicAuth("alice", "correct horse")
	rec := httptest.NewRecorder()
	upstreamErr := errors.New("the upstream's late answer, made an error")
	err = rt.Serve(rec, r, func(w http.ResponseWriter, _ *http.Request, _ *identity.Identity) error {
		if _, err := s.e.Accounts.UpdateUser(context.Background(), "alice", blocked()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // past StreamRecheck
		w.Header().Set("X-Late", "the upstream's answer")
		return upstreamErr
	})
	if err != nil {
		t.Fatalf("Serve returned %v: Caddy's error routes would answer the blocked user", err)
	}
	if rec.Code != http.StatusForbidden || rec.Header().Get("X-Late") != "" || !strings.Contains(rec.Body.String(), `"forbidden"`) {
		t.Fatalf("the blocked user's late error: %d %v %q; want the refusal alone", rec.Code, rec.Header(), rec.Body)
	}

	// An error within StreamRecheck is the handler's, for Caddy to handle.
	s2 := newSetup(t)
	rt2, err := s2.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Audience: "demo", StreamRecheck: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r = httptest.NewRequest("GET", "/api/poll", nil)
	r.Header = basicAuth("alice", "correct horse")
	err = rt2.Serve(httptest.NewRecorder(), r, func(http.ResponseWriter, *http.Request, *identity.Identity) error { return upstreamErr })
	if !errors.Is(err, upstreamErr) {
		t.Fatalf("an error before any check was due: %v; want the handler's", err)
	}
}
