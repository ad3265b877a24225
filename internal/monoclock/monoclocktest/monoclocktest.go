// Package monoclocktest makes the readings a process takes across a step of
// its wall clock, for tests of what must not heed such a step.
package monoclocktest

import (
	"time"
	"unsafe"
)

// WallStepped returns t, a reading taken with time.Now, as a reading taken
// at the same instant would be had the wall clock been stepped by d (whole
// seconds): its wall time moved by d, its monotonic reading the same. Go
// gives no way to make one, since every wall computation drops the
// monotonic reading; this relies on time.Time's layout (a wall word
// holding the seconds since 1885 from bit 30 when the monotonic bit is
// set) and panics where it finds another.
func WallStepped(t time.Time, d time.Duration) time.Time {
	type layout struct {
		wall uint64
		ext  int64
		loc  *time.Location
	}
	const hasMonotonic, secShift = 1 << 63, 30
	if unsafe.Sizeof(t) != unsafe.Sizeof(layout{}) || d%time.Second != 0 {
		panic("monoclocktest: unexpected time.Time layout or a step of a fraction of a second")
	}
	l := (*layout)(unsafe.Pointer(&t)) //nolint:gosec // G103: a test helper writing time.Time's wall word, whose layout is checked above
	if l.wall&hasMonotonic == 0 {
		panic("monoclocktest: the time has no monotonic reading")
	}
	l.wall += uint64(int64(d/time.Second)) << secShift //nolint:gosec // G115: two's complement: a negative step wraps to a subtraction
	return t
}
