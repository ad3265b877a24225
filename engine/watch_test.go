package engine_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/identity"
)

// longResponse serves a GET as alice on rt whose upstream writes a line
// every 5 ms for up to 30 s; it returns how many writes succeeded and the
// error that ended them (nil after 30 s), once the response ends.
func longResponse(t *testing.T, rt *engine.Route) <-chan struct {
	writes int
	err    error
} {
	t.Helper()
	done := make(chan struct {
		writes int
		err    error
	}, 1)
	r := httptest.NewRequest("GET", "/api/feed", nil)
	r.Header = basicAuth("alice", "correct horse")
	rec := httptest.NewRecorder()
	go func() {
		_ = rt.Serve(rec, r, func(w http.ResponseWriter, _ *http.Request, _ *identity.Identity) error {
			writes := 0
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				if _, err := w.Write([]byte("data: tick\n\n")); err != nil {
					done <- struct {
						writes int
						err    error
					}{writes, err}
					return nil
				}
				if err := http.NewResponseController(w).Flush(); err != nil {
					t.Errorf("flush: %v", err)
				}
				writes++
				time.Sleep(5 * time.Millisecond)
			}
			done <- struct {
				writes int
				err    error
			}{writes, nil}
			return nil
		})
	}()
	return done
}

// TestLongResponseIsCutOffWhenItsUserIsBlocked: a response still being
// written after the route's recheck interval is checked again at its
// writes, and cut off once its user is blocked (whatever the request
// asked for: no Accept header here); on a route with the checks off it
// goes on.
func TestLongResponseIsCutOffWhenItsUserIsBlocked(t *testing.T) {
	s := newSetup(t)
	route := func(d time.Duration) *engine.Route {
		rt, err := s.e.NewRoute(engine.RouteOptions{Accept: []identity.Method{identity.MethodBasic}, Audience: "demo", StreamRecheck: d})
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	checked, unchecked := longResponse(t, route(20*time.Millisecond)), longResponse(t, route(-1))
	time.Sleep(200 * time.Millisecond) // checks that pass
	if _, err := s.e.Accounts.UpdateUser(context.Background(), "alice", blocked()); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-checked:
		if res.err == nil || res.writes < 2 {
			t.Fatalf("the watched response: %d writes, then %v; want writes, then cut off", res.writes, res.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the response went on 30 s after its user was blocked")
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case res := <-unchecked:
		t.Fatalf("a response on a route with the checks off ended: %d writes, %v", res.writes, res.err)
	default:
	}
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
