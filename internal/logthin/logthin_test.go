package logthin

import (
	"sync"
	"testing"
	"time"
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
