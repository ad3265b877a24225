package engine

import (
	"testing"
	"time"
)

// SetClock makes the requests that start until the test ends read their
// start from c.
func SetClock(t testing.TB, c func() time.Time) {
	clock = c
	t.Cleanup(func() { clock = time.Now })
}
