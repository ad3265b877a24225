package monoclocktest

import (
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/monoclock"
)

// TestWallStepped: the stepped reading's wall time is an hour off, and the
// monotonic clock, Sub and monoclock.Nanos, sees no difference.
func TestWallStepped(t *testing.T) {
	now := time.Now()
	for _, d := range []time.Duration{time.Hour, -time.Hour} {
		stepped := WallStepped(now, d)
		if got := stepped.UnixNano() - now.UnixNano(); got != int64(d) {
			t.Errorf("step %v: wall moved %v", d, time.Duration(got))
		}
		if stepped.Sub(now) != 0 || monoclock.Nanos(stepped) != monoclock.Nanos(now) {
			t.Errorf("step %v: the monotonic reading moved (Sub %v)", d, stepped.Sub(now))
		}
	}
}
