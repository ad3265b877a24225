package logthin

import (
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/monoclock/monoclocktest"
)

func TestOneLineASecondCountingEveryOccurrence(t *testing.T) {
	var o Thinner
	t0 := time.Unix(1000, 0)
	if due, n := o.Due(t0); !due || n != 1 {
		t.Fatalf("first refusal: due %v, count %d", due, n)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	lines := 0
	for i := range 500 {
		wg.Go(func() {
			if due, _ := o.Due(t0.Add(time.Duration(i) * time.Millisecond)); due {
				mu.Lock()
				lines++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if lines != 0 {
		t.Fatalf("%d lines within the first second", lines)
	}
	if due, n := o.Due(t0.Add(time.Second)); !due || n != 501 {
		t.Fatalf("a second later: due %v, count %d; want one line for the 501 refusals since the last", due, n)
	}
}

// TestALineIsNotSilencedByAClockStepBack: after the wall clock steps an
// hour back, a line is due again once its interval has passed. The
// interval was timed on the wall clock, so a store outage or internal
// errors went unlogged for the hour.
func TestALineIsNotSilencedByAClockStepBack(t *testing.T) {
	o := Thinner{Interval: 10 * time.Millisecond}
	if due, _ := o.Due(time.Now()); !due {
		t.Fatal("the first occurrence is not due")
	}
	time.Sleep(20 * time.Millisecond)
	if due, n := o.Due(monoclocktest.WallStepped(time.Now(), -time.Hour)); !due || n != 1 {
		t.Fatalf("an occurrence past the interval, after the clock stepped an hour back: due %v, count %d", due, n)
	}
}
