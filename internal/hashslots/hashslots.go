// Package hashslots bounds how many memory-hard password hashes (argon2id,
// about 19 MiB each) run at once in the process. Without a bound, parallel
// unauthenticated password checks (any username will do) make the memory
// grow with the number of requests in flight.
//
// A check that names its client (WithClient) also waits for one of that
// client's turns: one client network may hold at most a quarter of the
// slots (half the CPUs' worth of hashing), so a single address flooding
// the server with password checks can neither keep everybody else's
// logins waiting nor take every core from the requests already signed in.
package hashslots

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/clientnet"
)

// ErrBusy is returned when no slot freed up within the wait: every slot
// was taken by other hashes, or the client's share was.
var ErrBusy = errors.New("too many password checks are running at once; try again in a moment")

// Pool is a counting semaphore of hash slots. Waiters get freed slots in
// the order they started waiting.
type Pool struct {
	slots chan struct{}
	share int // turns per client network

	mu      sync.Mutex
	clients map[string]*client // networks with a check waiting or running
}

// client is one client network's turns and how many checks use them.
type client struct {
	turns chan struct{}
	users int
}

// New returns a pool of n slots, of which one client network may hold
// at most a quarter (at least one).
func New(n int) *Pool {
	return &Pool{slots: make(chan struct{}, n), share: max(1, n/4), clients: map[string]*client{}}
}

// Process is the process-wide pool every password hash runs in: two slots
// per CPU Go may use, enough to keep every core busy.
var Process = New(2 * runtime.GOMAXPROCS(0))

// Cap returns the number of slots.
func (p *Pool) Cap() int { return cap(p.slots) }

// Share returns how many slots one client network may hold at once.
func (p *Pool) Share() int { return p.share }

type clientKey struct{}

// WithClient returns ctx naming the client a password check is made for,
// by its IP address; a check made with it counts against that client's
// share (Pool.Share). IPv6 addresses count by their /64 network, which
// one client usually holds whole; anything that is not an IP address
// counts as itself.
func WithClient(ctx context.Context, ip string) context.Context {
	return context.WithValue(ctx, clientKey{}, clientnet.Of(ip))
}

// Do runs f in a slot. It waits for a free slot (and, when ctx names a
// client, for one of the client's turns first) at most wait in all (with
// no time limit when wait is 0) and no longer than ctx lives, and returns
// ErrBusy without running f when none freed up.
func (p *Pool) Do(ctx context.Context, wait time.Duration, f func()) error {
	var expired <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		expired = t.C
	}
	if network, ok := ctx.Value(clientKey{}).(string); ok {
		c := p.join(network)
		defer p.leave(network, c)
		if !acquire(ctx, c.turns, expired) {
			return ErrBusy
		}
		defer func() { <-c.turns }()
	}
	if !acquire(ctx, p.slots, expired) {
		return ErrBusy
	}
	defer func() { <-p.slots }()
	f()
	return nil
}

// acquire takes a place in sem, unless expired fires or ctx ends first.
func acquire(ctx context.Context, sem chan struct{}, expired <-chan time.Time) bool {
	select {
	case sem <- struct{}{}:
		return true
	default:
	}
	select {
	case sem <- struct{}{}:
		return true
	case <-expired:
		return false
	case <-ctx.Done():
		return false
	}
}

// join returns network's turns, counting one more check using them.
func (p *Pool) join(network string) *client {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.clients[network]
	if c == nil {
		c = &client{turns: make(chan struct{}, p.share)}
		p.clients[network] = c
	}
	c.users++
	return c
}

// leave counts one check fewer using network's turns, and forgets them
// with the last one.
func (p *Pool) leave(network string, c *client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.users--; c.users == 0 {
		delete(p.clients, network)
	}
}
