package caddymodule

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse-auth/gatehouse/storage"
)

// requestGauge counts the requests that use one app, so that what they
// use (the pooled store, the directory's connections, the application-key
// service) is let go only once they ended: on a config reload Caddy
// cleans up the replaced config's apps without waiting for its requests
// (it waits only when the process exits). A request costs two atomic adds
// on a cache line of their own, no lock and no allocation.
type requestGauge struct {
	_ [64]byte // written by every request: no other field shares the line
	// entered counts the requests counted in, left those counted out;
	// entered turns negative (gaugeReleased) once drain let go.
	entered, left atomic.Int64
	_             [48]byte
}

// gaugeReleased is added to entered when the gauge is released: the count
// stays negative whatever requests are still counted in, so that enter
// refuses every later one.
const gaugeReleased = math.MinInt64 / 2

// errReleased answers a request that reached a replaced config after what
// its requests use was let go.
var errReleased = fmt.Errorf("%w: this gatehouse config was replaced", storage.ErrUnavailable)

// enter counts a request in and reports true, or reports false once the
// app let go of what requests use (drain): the request must then not
// touch the app's engine. Every true is followed by leave.
func (g *requestGauge) enter() bool { return g.entered.Add(1) > 0 }

// leave counts out a request enter counted in.
func (g *requestGauge) leave() { g.left.Add(1) }

// drainPoll is how often drain looks at the counts: nothing on the
// request path pays for waking it.
const drainPoll = 10 * time.Millisecond

// drainQuiet is how long no request may have come before a replaced
// config's drain lets go.
// None in flight is not enough: after Caddy stopped a replaced config's
// servers, a connection still delivers the requests it had read (HTTP/1.1
// the one it was reading, HTTP/2 the streams before its GOAWAY), which
// reach the gatehouse handler a moment later, on a busy machine some
// hundreds of milliseconds.
const drainQuiet = 2 * time.Second

// drain waits until no request is in flight and none came for quiet, at
// most limit or until cut is closed, and then marks the gauge released,
// so that enter refuses every later request. It returns how many requests
// were still in flight when it gave up (0 when they all ended): those go
// on without what the caller then lets go. Marking is one
// compare-and-swap of the count it looked at, so no request can be
// counted in between the look and the mark.
func (g *requestGauge) drain(limit, quiet time.Duration, cut <-chan struct{}) int64 {
	began := time.Now()
	seen, quietSince := g.entered.Load(), began
	for {
		now := time.Now()
		switch entered := g.entered.Load(); {
		case entered != seen:
			seen, quietSince = entered, now
		case g.left.Load() == entered && now.Sub(quietSince) >= quiet &&
			g.entered.CompareAndSwap(entered, entered+gaugeReleased):
			return 0
		}
		if now.Sub(began) >= limit || closed(cut) {
			return g.entered.Add(gaugeReleased) - gaugeReleased - g.left.Load()
		}
		select {
		case <-cut:
		case <-time.After(drainPoll):
		}
	}
}

// closed reports whether c is closed.
func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// retirements are the releases of replaced configs waiting for their
// requests (App.Cleanup). Caddy exits once the current config's apps
// stopped, without waiting for them: the exit cuts their waits short and
// waits for their releases, so that their audit writers write what they
// hold (a flood's summaries, the last batch) and their stores close
// cleanly. The HTTP servers have stopped by then, their requests ended.
type retirements struct {
	wg  sync.WaitGroup
	cut chan struct{} // closed by finish
	end sync.Once
}

// retiring are the process's retirements.
var retiring = &retirements{cut: make(chan struct{})}

// start runs release in the background once drain let go (or gave up, or
// finish cut it short).
func (rs *retirements) start(drain func(cut <-chan struct{}), release func()) {
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		drain(rs.cut)
		release()
	}()
}

// finish cuts the pending releases' waits short and waits for them.
func (rs *retirements) finish() {
	rs.end.Do(func() { close(rs.cut) })
	rs.wg.Wait()
}

// Caddy runs its exit callbacks when the process exits (a signal, `caddy
// stop`, the admin API's /stop), after the current config's apps stopped.
func init() { caddy.OnExit(func(context.Context) { retiring.finish() }) }
