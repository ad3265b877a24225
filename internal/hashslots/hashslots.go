// Package hashslots bounds how many memory-hard password hashes (argon2id,
// about 19 MiB each) run at once in the process. Without a bound, parallel
// unauthenticated password checks (any username will do) make the memory
// grow with the number of requests in flight.
package hashslots

import (
	"context"
	"errors"
	"runtime"
	"time"
)

// ErrBusy is returned when no slot freed up within the wait: every slot
// was taken by other hashes.
var ErrBusy = errors.New("too many password checks are running at once; try again in a moment")

// Pool is a counting semaphore of hash slots. Waiters get freed slots in
// the order they started waiting.
type Pool struct {
	slots chan struct{}
}

// New returns a pool of n slots.
func New(n int) *Pool {
	return &Pool{slots: make(chan struct{}, n)}
}

// Process is the process-wide pool every password hash runs in: two slots
// per CPU Go may use, enough to keep every core busy.
var Process = New(2 * runtime.GOMAXPROCS(0))

// Cap returns the number of slots.
func (p *Pool) Cap() int { return cap(p.slots) }

// Do runs f in a slot. It waits for a free slot at most wait (with no time
// limit when wait is 0) and no longer than ctx lives, and returns ErrBusy
// without running f when none freed up.
func (p *Pool) Do(ctx context.Context, wait time.Duration, f func()) error {
	select {
	case p.slots <- struct{}{}:
	default:
		var expired <-chan time.Time
		if wait > 0 {
			t := time.NewTimer(wait)
			defer t.Stop()
			expired = t.C
		}
		select {
		case p.slots <- struct{}{}:
		case <-expired:
			return ErrBusy
		case <-ctx.Done():
			return ErrBusy
		}
	}
	defer func() { <-p.slots }()
	f()
	return nil
}
