package engine

import (
	"sync/atomic"
	"time"
)

// outageLog thins the log line of requests refused for one cause (the
// store unavailable, an internal error such as a record that fails
// authentication) to one a second, with the count of refusals since the
// last line: otherwise every request would log an error.
type outageLog struct {
	next    atomic.Int64 // UnixNano before which lines are counted, not logged
	counted atomic.Int64
}

// outageLogInterval is the least time between two outage log lines.
const outageLogInterval = time.Second

// due counts one refusal and reports whether to log it now, with the
// number of refusals the line stands for.
func (o *outageLog) due(now time.Time) (bool, int64) {
	o.counted.Add(1)
	next := o.next.Load()
	if now.UnixNano() < next || !o.next.CompareAndSwap(next, now.Add(outageLogInterval).UnixNano()) {
		return false, 0
	}
	return true, o.counted.Swap(0)
}
