package caddymodule

import (
	"context"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
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
	go func() { drained <- g.drain(time.Hour) }()
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
	if left := g.drain(3 * drainPoll); left != 2 {
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
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	a := &App{DataDir: t.TempDir()}
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
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
