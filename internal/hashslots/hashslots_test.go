package hashslots

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAtMostCapRunAtOnce: however many callers, no more than Cap() hashes
// run at the same time, and every caller willing to wait gets its turn.
func TestAtMostCapRunAtOnce(t *testing.T) {
	p := New(3)
	var running, peak, done atomic.Int64
	var wg sync.WaitGroup
	for range 60 {
		wg.Go(func() {
			err := p.Do(context.Background(), 0, func() {
				n := running.Add(1)
				for {
					old := peak.Load()
					if n <= old || peak.CompareAndSwap(old, n) {
						break
					}
				}
				time.Sleep(time.Millisecond)
				running.Add(-1)
				done.Add(1)
			})
			if err != nil {
				t.Errorf("waiting without a time limit: %v", err)
			}
		})
	}
	wg.Wait()
	if peak.Load() > 3 || done.Load() != 60 {
		t.Fatalf("peak %d running at once (limit 3), %d of 60 done", peak.Load(), done.Load())
	}
}

// TestOverflowIsBusy: with every slot taken, a caller gets ErrBusy after
// its wait or when its context ends, and its hash does not run.
func TestOverflowIsBusy(t *testing.T) {
	p := New(2)
	release := make(chan struct{})
	started := make(chan struct{})
	var holders sync.WaitGroup
	for range p.Cap() {
		holders.Go(func() {
			p.Do(context.Background(), 0, func() { started <- struct{}{}; <-release })
		})
	}
	for range p.Cap() {
		<-started
	}
	ran := false
	begin := time.Now()
	if err := p.Do(context.Background(), 50*time.Millisecond, func() { ran = true }); !errors.Is(err, ErrBusy) || ran {
		t.Fatalf("full pool: err %v, ran %v; want ErrBusy without running", err, ran)
	}
	if waited := time.Since(begin); waited < 50*time.Millisecond || waited > 2*time.Second {
		t.Fatalf("gave up after %v; want about the 50ms wait", waited)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Do(ctx, 0, func() { ran = true }); !errors.Is(err, ErrBusy) || ran {
		t.Fatalf("ended context: err %v, ran %v; want ErrBusy without running", err, ran)
	}
	close(release)
	holders.Wait()
	if err := p.Do(ctx, 0, func() { ran = true }); err != nil || !ran {
		t.Fatalf("free pool: err %v, ran %v; want the hash run", err, ran)
	}
}
