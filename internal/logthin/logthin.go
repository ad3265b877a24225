// Package logthin thins a log line that repeats for every request of one
// cause (the store unavailable, an internal error, records left out of a
// listing) to one per interval, with the count of occurrences it stands
// for: otherwise every request would log a line.
package logthin

import (
	"sync/atomic"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/monoclock"
)

// Thinner counts occurrences and says when one is due to be logged. Its
// zero value logs at most once a second; it is safe for concurrent use.
type Thinner struct {
	// Interval is the least time between two lines; zero means a second.
	Interval time.Duration
	next     atomic.Int64 // monoclock.Nanos before which occurrences are counted, not logged; 0 before the first
	counted  atomic.Int64
}

// Due counts one occurrence and reports whether to log it now, with the
// number of occurrences the line stands for. now should come from
// time.Now: the interval is then timed on the monotonic clock, and a step
// of the wall clock does not silence the line.
func (t *Thinner) Due(now time.Time) (bool, int64) {
	t.counted.Add(1)
	interval := t.Interval
	if interval <= 0 {
		interval = time.Second
	}
	next := t.next.Load()
	if next != 0 && monoclock.Nanos(now) < next || !t.next.CompareAndSwap(next, monoclock.Nanos(now.Add(interval))) {
		return false, 0
	}
	return true, t.counted.Swap(0)
}
