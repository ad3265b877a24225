// Package hashslotstest lets tests fill the process-wide pool of password
// hash slots, to see what callers do when the server is busy.
package hashslotstest

import (
	"context"
	"sync"
	"testing"

	"github.com/gatehouse-auth/gatehouse/internal/hashslots"
)

// HoldAll takes every slot of hashslots.Process until the returned
// function is called or the test ends.
func HoldAll(t testing.TB) (release func()) {
	t.Helper()
	return hold(t, context.Background(), hashslots.Process.Cap())
}

// HoldAllBut takes every slot of hashslots.Process but free ones, until
// the returned function is called or the test ends.
func HoldAllBut(t testing.TB, free int) (release func()) {
	t.Helper()
	return hold(t, context.Background(), hashslots.Process.Cap()-free)
}

// HoldClient takes the whole share of the client at ip (see
// hashslots.WithClient), as a flood of its password checks would, until
// the returned function is called or the test ends; other clients keep
// the rest of the slots.
func HoldClient(t testing.TB, ip string) (release func()) {
	t.Helper()
	return hold(t, hashslots.WithClient(context.Background(), ip), hashslots.Process.Share())
}

// hold runs n hashes made with ctx that last until release.
func hold(t testing.TB, ctx context.Context, n int) (release func()) {
	freed := make(chan struct{})
	started := make(chan struct{})
	var holders sync.WaitGroup
	for range n {
		holders.Go(func() {
			_ = hashslots.Process.Do(ctx, 0, func() { started <- struct{}{}; <-freed }) // the wait below tells whether it ran
		})
	}
	for range n {
		<-started
	}
	release = sync.OnceFunc(func() { close(freed); holders.Wait() })
	t.Cleanup(release)
	return release
}
