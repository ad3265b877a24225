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
	freed := make(chan struct{})
	started := make(chan struct{})
	var holders sync.WaitGroup
	for range hashslots.Process.Cap() {
		holders.Go(func() {
			hashslots.Process.Do(context.Background(), 0, func() { started <- struct{}{}; <-freed })
		})
	}
	for range hashslots.Process.Cap() {
		<-started
	}
	release = sync.OnceFunc(func() { close(freed); holders.Wait() })
	t.Cleanup(release)
	return release
}
