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
			_ = p.Do(context.Background(), 0, func() { started <- struct{}{}; <-release }) // the wait below tells whether it ran
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

// TestClientShare: one client network flooding the pool holds at most
// its share of the slots, so another client's check runs at once; the
// flood's checks all get their turn in the end, and the pool forgets the
// client afterwards.
func TestClientShare(t *testing.T) {
	p := New(8)
	if p.Share() != 2 {
		t.Fatalf("share of 8 slots: %d, want 2", p.Share())
	}
	flooder := WithClient(context.Background(), "2001:db8:1:2::1")
	release := make(chan struct{})
	var running, peak, done atomic.Int64
	var flood sync.WaitGroup
	for range 20 {
		flood.Go(func() {
			err := p.Do(flooder, 0, func() {
				n := running.Add(1)
				for old := peak.Load(); n > old && !peak.CompareAndSwap(old, n); old = peak.Load() {
				}
				<-release
				running.Add(-1)
				done.Add(1)
			})
			if err != nil {
				t.Errorf("flooder waiting without a time limit: %v", err)
			}
		})
	}
	for running.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	// Another address of the same /64 counts against the same share.
	neighbour := WithClient(context.Background(), "2001:db8:1:2:ffff::9")
	if err := p.Do(neighbour, 50*time.Millisecond, func() {}); !errors.Is(err, ErrBusy) {
		t.Fatalf("same /64 as the flooder: %v, want ErrBusy", err)
	}
	for _, other := range []string{"192.0.2.7", "2001:db8:1:3::1", "::ffff:192.0.2.8"} {
		ran := false
		if err := p.Do(WithClient(context.Background(), other), 50*time.Millisecond, func() { ran = true }); err != nil || !ran {
			t.Fatalf("client %s during another client's flood: err %v, ran %v; want its check run", other, err, ran)
		}
	}
	close(release)
	flood.Wait()
	if peak.Load() != 2 || done.Load() != 20 {
		t.Fatalf("flooder: peak %d at once (share 2), %d of 20 done", peak.Load(), done.Load())
	}
	p.mu.Lock()
	left := len(p.clients)
	p.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d clients still tracked after every check ended", left)
	}
}
