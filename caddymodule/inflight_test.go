package caddymodule

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
)

// TestDrainWaitsForRequestsInFlight: drain returns once the last request
// counted in left, and no request is counted in after it.
func TestDrainWaitsForRequestsInFlight(t *testing.T) {
	var g requestGauge
	for range 2 {
		if !g.enter() {
			t.Fatal("a request refused before the drain")
		}
	}
	drained := make(chan int64)
	go func() { drained <- g.drain(time.Hour, drainQuiet, nil) }()
	g.leave()
	select {
	case left := <-drained:
		t.Fatalf("drain returned (%d left) with a request still in flight", left)
	case <-time.After(drainQuiet + 5*drainPoll):
	}
	g.leave()
	if left := <-drained; left != 0 {
		t.Fatalf("drain reports %d requests left; want 0", left)
	}
	if g.enter() {
		t.Fatal("a request counted in after the drain")
	}
}

// TestDrainGivesUp: past its limit, drain reports the requests still in
// flight and refuses later ones; those in flight can still leave.
func TestDrainGivesUp(t *testing.T) {
	var g requestGauge
	g.enter()
	g.enter()
	if left := g.drain(3*drainPoll, drainQuiet, nil); left != 2 {
		t.Fatalf("drain gave up with %d requests left; want 2", left)
	}
	if g.enter() {
		t.Fatal("a request counted in after the drain gave up")
	}
	g.leave()
	g.leave()
	if g.enter() {
		t.Fatal("a request counted in after the drain gave up and the others left")
	}
}

// TestCleanupWaitsForRequestsInFlight: on a reload (Caddy not exiting),
// a replaced app's Cleanup keeps the store open for a request still in
// flight, which can still read and write it, and closes it once that
// request ended; later requests are refused.
func TestCleanupWaitsForRequestsInFlight(t *testing.T) {
	a, e, key := replacedWithARequestInFlight(t)
	// The request in flight goes on using the store.
	if err := e.Store.Put(context.Background(), "test/inflight", []byte("x"), 0); err != nil {
		t.Fatalf("writing the store during a request in flight after Cleanup: %v", err)
	}
	if _, err := e.Store.Get(context.Background(), "test/inflight"); err != nil {
		t.Fatalf("reading the store during a request in flight after Cleanup: %v", err)
	}
	if _, open := storePool.References(key); !open {
		t.Fatal("the store was let go with a request in flight")
	}
	a.requests.leave()
	waitReleased(t, key)
	if a.requests.enter() {
		t.Fatal("a request counted in on an app that let go of its store")
	}
}

// waitReleased waits until the pooled store key is closed (at most a
// minute: the app lets go of it in the background, after drainQuiet).
func waitReleased(t *testing.T, key string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if _, open := storePool.References(key); !open {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the store is still open a minute after the last request ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The store leaves the pool before it is closed, under storeTurnover:
	// closed once that is free (else the test's directory would be
	// removed under a closing Badger).
	storeTurnover.Lock()
	defer storeTurnover.Unlock()
}

// TestExitFinishesPendingReleases: a replaced app whose release waits for
// a request is let go when the process exits (Caddy runs its exit
// callbacks after the current config stopped, and then ends the
// process): the wait is cut short and the exit returns only once the
// store was closed, its audit writer's events written.
func TestExitFinishesPendingReleases(t *testing.T) {
	saved := retiring
	retiring = &retirements{cut: make(chan struct{})}
	t.Cleanup(func() { retiring = saved })
	a, e, key := replacedWithARequestInFlight(t) // a request that never ends (a WebSocket)
	e.Audit.Record(audit.Event{Kind: audit.KindAdmin, Username: "eve", Outcome: audit.OutcomeSuccess, Reason: "before the exit"})
	done := make(chan struct{})
	go func() { retiring.finish(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainLimit / 2):
		t.Fatal("the exit waited for the request in flight instead of cutting the release's wait short")
	}
	if _, open := storePool.References(key); open {
		t.Fatal("the exit returned with the replaced app's store still open")
	}
	waitReleased(t, key) // and closed, once the turnover is free
	if !storedAfterExit(t, a, "before the exit") {
		t.Fatal("the audit event recorded before the exit is not in the store")
	}
}

// storedAfterExit reports whether a record of a's store, opened again
// after its exit, holds text.
func storedAfterExit(t *testing.T, a *App, text string) bool {
	t.Helper()
	db, err := badger.Open(filepath.Join(a.DataDir, "badger"), badger.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("the store after the exit: %v", err)
	}
	defer db.Close()
	found := false
	if err := db.Scan(context.Background(), "", func(e storage.Entry) error {
		found = found || strings.Contains(string(e.Value), text)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return found
}

// TestExitWaitsForAdminCallsInFlight: when Caddy exits, the HTTP servers
// waited for their requests, but its admin endpoint stops only after the
// apps: Cleanup waits for an admin call in flight, whose change and audit
// event both reach the store, and refuses later ones. Before, a SIGTERM
// during admin calls acknowledged changes whose audit events were only in
// Caddy's log ("audit events recorded after the audit writer closed").
func TestExitWaitsForAdminCallsInFlight(t *testing.T) {
	a := startedApp(t)
	key := a.poolKey
	if !a.requests.enter() || !a.adminCalls.enter() {
		t.Fatal("an admin call refused by a running app")
	}
	e, err := a.Engine(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	cleaned := make(chan error)
	go func() { cleaned <- a.cleanup(true) }()
	time.Sleep(5 * drainPoll)
	if err := e.Store.Put(context.Background(), "test/admin-call", []byte("x"), 0); err != nil {
		t.Fatalf("the admin call in flight could not write after the exit began: %v", err)
	}
	e.Audit.Record(audit.Event{Kind: audit.KindAdmin, Username: "eve", Outcome: audit.OutcomeSuccess, Reason: "during the exit"})
	select {
	case err := <-cleaned:
		t.Fatalf("Cleanup returned (%v) with an admin call in flight", err)
	default:
	}
	a.adminCalls.leave()
	a.requests.leave()
	if err := <-cleaned; err != nil {
		t.Fatal(err)
	}
	if a.adminCalls.enter() {
		t.Fatal("an admin call counted in after the exit's Cleanup")
	}
	waitReleased(t, key)
	if !storedAfterExit(t, a, "during the exit") {
		t.Fatal("the audit event of the admin call in flight at the exit is not in the store")
	}
}

// startedApp provisions and starts an app on a data directory of its own.
func startedApp(t testing.TB) *App {
	t.Helper()
	dir := t.TempDir() // removed after the context's cancel (cleanups run last in, first out)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	a := &App{DataDir: dir}
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	return a
}

// replacedWithARequestInFlight is a startedApp replaced by a reload (Stop
// and Cleanup, Caddy not exiting) while a request it counted in is still
// in flight: it returns the app, the engine that request uses and the
// pool key of its store.
func replacedWithARequestInFlight(t *testing.T) (*App, *engine.Engine, string) {
	t.Helper()
	a := startedApp(t)
	key := a.poolKey
	if !a.requests.enter() {
		t.Fatal("a request refused by a running app")
	}
	e, err := a.Engine(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	return a, e, key
}
