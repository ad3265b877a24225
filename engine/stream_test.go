package engine_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/plugin"
	"github.com/gatehouse-auth/gatehouse/plugin/basic"
)

func TestIsStream(t *testing.T) {
	cases := []struct {
		method string
		header http.Header
		want   bool
	}{
		{"GET", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, true},
		{"CONNECT", nil, true}, // an extended CONNECT: a WebSocket over HTTP/2 or HTTP/3
		{"GET", http.Header{"Accept": {"text/event-stream"}}, false}, // watched as it is written (responseWatch)
		{"GET", http.Header{"Accept": {"text/html,application/xhtml+xml"}}, false},
		{"POST", http.Header{"Connection": {"keep-alive"}}, false},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, "/api/x", nil)
		r.Header = c.header
		if got := engine.IsStream(r); got != c.want {
			t.Errorf("%s %v: %v, want %v", c.method, c.header, got, c.want)
		}
	}
}

// openStream serves r on rt as a stream whose upstream stays until its
// context ends; the returned channel is closed when it has.
func openStream(t *testing.T, rt *engine.Route, r *http.Request) <-chan struct{} {
	t.Helper()
	opened, ended := make(chan int, 1), make(chan struct{})
	go func() {
		w := httptest.NewRecorder()
		_ = rt.Serve(w, r, func(w http.ResponseWriter, r *http.Request, _ *identity.Identity) error {
			opened <- http.StatusOK
			<-r.Context().Done()
			close(ended)
			return nil
		})
		opened <- w.Code // refused: next never ran
	}()
	if code := <-opened; code != http.StatusOK {
		t.Fatalf("the stream was refused: %d", code)
	}
	return ended
}

// streamRequest is a WebSocket's opening request as alice, whose context
// the test ends at its end.
func streamRequest(t *testing.T, websocket bool) *http.Request {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := httptest.NewRequestWithContext(ctx, "GET", "/api/feed", nil)
	r.Header = basicAuth("alice", "correct horse")
	if websocket {
		r.Header.Set("Connection", "Upgrade")
		r.Header.Set("Upgrade", "websocket")
	}
	return r
}

// TestOpenStreamEndsWhenItsUserIsBlocked: a stream's user blocked while
// it is open ends it at one of the next checks; a request that is no
// stream is not watched; a route with the checks off leaves the stream.
func TestOpenStreamEndsWhenItsUserIsBlocked(t *testing.T) {
	s := newSetup(t)
	every := func(d time.Duration) *engine.Route {
		rt, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Audience: "demo", StreamRecheck: d})
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	checked, off := every(20*time.Millisecond), every(-1)
	stream := openStream(t, checked, streamRequest(t, true))
	unchecked := openStream(t, off, streamRequest(t, true))
	plain := openStream(t, checked, streamRequest(t, false))
	time.Sleep(200 * time.Millisecond) // about ten checks that pass
	select {
	case <-stream:
		t.Fatal("the stream ended while its user was allowed")
	default:
	}

	if _, err := s.e.Accounts.UpdateUser(context.Background(), "alice", blocked()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stream:
	case <-time.After(30 * time.Second):
		t.Fatal("the stream stayed open 30 s after its user was blocked")
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case <-unchecked:
		t.Fatal("a stream on a route with the checks off was ended")
	case <-plain:
		t.Fatal("a request that is no stream was ended")
	default:
	}
}

// TestOpenStreamEndsWhenTheStoreStaysDown: a stream whose checks the
// store cannot answer, twice in a row, is ended (fail closed).
func TestOpenStreamEndsWhenTheStoreStaysDown(t *testing.T) {
	s := newSetup(t)
	rt, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Audience: "demo", StreamRecheck: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stream := openStream(t, rt, streamRequest(t, true))
	s.flaky.Down.Store(true)
	s.e.Store.Purge()
	select {
	case <-stream:
	case <-time.After(30 * time.Second):
		t.Fatal("the stream stayed open 30 s with the store down")
	}
}

// blocked is the patch that blocks a user.
func blocked() account.UserPatch {
	status := account.StatusBlocked
	return account.UserPatch{Status: &status}
}

// cancelledOnce is Basic whose first check of an open stream fails as a
// check sharing another request's cancelled sign-in would.
type cancelledOnce struct {
	plugin.Credential
	checks atomic.Int32
}

func (c *cancelledOnce) Recheck(r *http.Request) (identity.Identity, error) {
	if c.checks.Add(1) == 1 {
		return identity.Identity{}, fmt.Errorf("redis: incr: %w", context.Canceled)
	}
	return c.Authenticate(r)
}

// TestStreamChecksGoOnAfterAnotherRequestsCancellation: a check that
// fails with a cancellation that is not the stream's own (another
// request's, whose shared sign-in it joined) counts as unanswered; the
// checks go on, and a block still ends the stream.
func TestStreamChecksGoOnAfterAnotherRequestsCancellation(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	cred := &cancelledOnce{Credential: basic.New(e)}
	e.Register(cred)
	ctx := context.Background()
	if _, err := e.Accounts.PutRole(ctx, account.Role{Name: "reader", Rules: []account.Rule{{Methods: []string{"GET"}, Paths: []string{"/api/*"}}}}); err != nil {
		t.Fatal(err)
	}
	pw := "correct horse"
	if _, err := e.Accounts.CreateUser(ctx, account.NewUser{Username: "alice", Roles: []string{"reader"}, Password: &pw}); err != nil {
		t.Fatal(err)
	}
	rt, err := e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Audience: "demo", StreamRecheck: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stream := openStream(t, rt, streamRequest(t, true))
	for deadline := time.Now().Add(30 * time.Second); cred.checks.Load() < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the checks stopped after %d (the first failed with a cancellation not the stream's)", cred.checks.Load())
		}
	}
	if _, err := e.Accounts.UpdateUser(ctx, "alice", blocked()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stream:
	case <-time.After(30 * time.Second):
		t.Fatalf("the stream stayed open 30 s after its user was blocked (%d checks made)", cred.checks.Load())
	}
}
