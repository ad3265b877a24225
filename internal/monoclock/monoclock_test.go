package monoclock

import (
	"testing"
	"time"
)

// TestNowReadsTheClockNanosReads: Now lies between two readings of
// Nanos(time.Now()) taken around it, and moves on as they do.
func TestNowReadsTheClockNanosReads(t *testing.T) {
	for range 1000 {
		before := Nanos(time.Now())
		now := Now()
		after := Nanos(time.Now())
		if now < before || now > after {
			t.Fatalf("Now() = %d, outside [%d, %d]", now, before, after)
		}
	}
	start := Now()
	time.Sleep(20 * time.Millisecond)
	if d := time.Duration(Now() - start); d < 20*time.Millisecond {
		t.Fatalf("Now moved %v over a 20 ms sleep", d)
	}
}
