package appkey

import (
	"fmt"
	"hash/maphash"
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

// TestNoteUseAtMostOnceAMinuteNeverLess: a key's uses are noted once a
// minute; two keys that share a slot of the table of noted keys are noted
// more often than that, never less (each use after the other's is noted).
func TestNoteUseAtMostOnceAMinuteNeverLess(t *testing.T) {
	s := &Service{}
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	uses := func() map[string]int {
		n := map[string]int{}
		for l := s.usage; len(l) > 0; {
			size := int(l[0]) // names here are shorter than 128 bytes: one uvarint byte
			n[string(l[1:1+size])]++
			l = l[1+size+8:]
		}
		s.usage = nil
		return n
	}
	s.noteUse("alone", t0)
	s.noteUse("alone", t0.Add(59*time.Second))
	if got := uses()["alone"]; got != 1 {
		t.Fatalf("two uses within the minute noted %d times; want 1", got)
	}
	s.noteUse("alone", t0.Add(61*time.Second))
	if got := uses()["alone"]; got != 1 {
		t.Fatalf("a use a minute later noted %d times; want 1", got)
	}
	// Two names sharing a slot (found by trying names: the seed is the
	// process's own).
	slotOf := func(name string) uint64 { return maphash.String(notedSeed, name) & (notedSlots - 1) }
	seen := map[uint64]string{}
	var a, b string
	for i := 0; b == ""; i++ {
		name := fmt.Sprintf("key-%d", i)
		if other, ok := seen[slotOf(name)]; ok {
			a, b = other, name
		}
		seen[slotOf(name)] = name
	}
	s.noteUse(a, t0)
	s.noteUse(b, t0.Add(time.Second))
	s.noteUse(a, t0.Add(2*time.Second))
	if got := uses(); got[a] != 2 || got[b] != 1 {
		t.Fatalf("keys %s and %s sharing a slot noted %v times; want 2 and 1", a, b, got)
	}
}
