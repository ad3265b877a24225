package appkey

import (
	"strings"
	"testing"
	"time"
)

func TestUsageLogKeepsEachKeysLastUse(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 123456789, time.UTC)
	long := strings.Repeat("k", 300) // a length that takes two uvarint bytes
	var l usageLog
	l = l.add("a", t0)
	l = l.add(long, t0.Add(time.Second))
	l = l.add("a", t0.Add(2*time.Second)) // refilled and used again within the minute
	got := l.latest()
	want := map[string]time.Time{"a": t0.Add(2 * time.Second), long: t0.Add(time.Second)}
	if len(got) != len(want) {
		t.Fatalf("latest: %d keys, want %d", len(got), len(want))
	}
	for name, w := range want {
		if !got[name].Equal(w) {
			t.Errorf("last use of %.10q… = %v, want %v", name, got[name], w)
		}
	}
	if n := len(usageLog(nil).latest()); n != 0 {
		t.Fatalf("an empty log has %d uses", n)
	}
}
