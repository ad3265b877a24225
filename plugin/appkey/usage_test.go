package appkey

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"hash/maphash"
	"strings"
	"testing"
	"time"
)

func TestUsageLogYieldsEveryUseInOrder(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 123456789, time.UTC)
	long := strings.Repeat("k", 300) // a length that takes two uvarint bytes
	var l usageLog
	l = l.add("a", t0)
	l = l.add(long, t0.Add(time.Second))
	l = l.add("a", t0.Add(2*time.Second)) // noted again
	type use struct {
		name string
		at   time.Time
	}
	var got []use
	for name, at := range l.uses() {
		got = append(got, use{string(name), at})
	}
	want := []use{{"a", t0}, {long, t0.Add(time.Second)}, {"a", t0.Add(2 * time.Second)}}
	if len(got) != len(want) {
		t.Fatalf("uses: %d, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].name != want[i].name || !got[i].at.Equal(want[i].at) {
			t.Errorf("use %d = %.10q… at %v, want %.10q… at %v", i, got[i].name, got[i].at, want[i].name, want[i].at)
		}
	}
	for range usageLog(nil).uses() {
		t.Fatal("an empty log yielded a use")
	}
}

// TestNoteUseAtMostOnceAnHourNeverLess: a key's uses are noted once a
// window (an hour); two keys that share a slot of the table of noted keys are
// noted more often than that, never less (each use after the other's is
// noted).
func TestNoteUseAtMostOnceAnHourNeverLess(t *testing.T) {
	s := &Service{}
	t0 := windowStart("alone", time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	s.noteUse("alone", t0)
	s.noteUse("alone", t0.Add(59*time.Minute))
	if got := takeNotes(s)["alone"]; got != 1 {
		t.Fatalf("two uses within the hour noted %d times; want 1", got)
	}
	s.noteUse("alone", t0.Add(61*time.Minute))
	if got := takeNotes(s)["alone"]; got != 1 {
		t.Fatalf("a use in the next hour noted %d times; want 1", got)
	}
	// Two names sharing a slot (found by trying names: the seed is the
	// process's own).
	slotOf := func(name string) uint64 {
		return notedMark(maphash.String(notedSeed, name), usageWindow(name, t0)) >> (64 - notedBits)
	}
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
	if got := takeNotes(s); got[a] != 2 || got[b] != 1 {
		t.Fatalf("keys %s and %s sharing a slot noted %v times; want 2 and 1", a, b, got)
	}
}

// TestNoteUseNeverSkipsAnotherKey: a key whose name's hash agrees with a
// hot key's in the bits the table compares is still noted every hour it
// is used (these two hashes agree in the 48 bits the table used to keep,
// slot and 32-bit tag: the rare key was then never noted while the hot key
// was used at least once a minute), and a clock stepped back does not
// hide a use.
func TestNoteUseNeverSkipsAnotherKey(t *testing.T) {
	s := &Service{}
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	hot, rare := uint64(0x12345678_0000_9abc), uint64(0x12345678_ffff_9abc)
	for hour := range 10 {
		at := t0.Add(time.Duration(hour) * time.Hour)
		s.noteHashed(hot, "hot", at)
		s.noteHashed(rare, "rare", at.Add(10*time.Minute))
		s.noteHashed(hot, "hot", at.Add(20*time.Minute))
		if got := takeNotes(s); got["hot"] < 1 || got["rare"] != 1 {
			t.Fatalf("hour %d: uses noted %v; want hot's and rare's", hour, got)
		}
	}
	later := windowStart("hot", t0.Add(24*time.Hour))
	s.noteHashed(hot, "hot", later)
	s.noteHashed(hot, "hot", later.Add(-time.Minute)) // the clock stepped back a minute, into the window before
	if got := takeNotes(s)["hot"]; got != 2 {
		t.Fatalf("a use after the clock stepped back: %d uses noted; want 2", got)
	}
}

// notedUses returns how many uses of each key s's usage log holds.
func notedUses(s *Service) map[string]int {
	s.usageMu.Lock()
	defer s.usageMu.Unlock()
	n := map[string]int{}
	for name := range s.usage.uses() {
		n[string(name)]++
	}
	return n
}

// takeNotes empties s's usage log and returns how many uses of each key
// it held.
func takeNotes(s *Service) map[string]int {
	n := notedUses(s)
	s.usage = nil
	return n
}

// windowStart is the start of the key named name's window (usageWindow)
// that holds t.
func windowStart(name string, t time.Time) time.Time {
	for w := usageWindow(name, t); usageWindow(name, t.Add(-time.Second)) == w; {
		t = t.Add(-time.Second)
	}
	return t.Truncate(time.Second)
}

// TestFNV1aIsTheStandardOne: every instance of a cluster must pick a key's
// window alike, so the hash is checked against the standard library's.
func TestFNV1aIsTheStandardOne(t *testing.T) {
	for _, s := range []string{"", "a", "vault", "ålice 🦊", strings.Repeat("k", 64)} {
		h := fnv.New64a()
		h.Write([]byte(s))
		if got, want := fnv1a(s), h.Sum64(); got != want {
			t.Errorf("fnv1a(%q) = %x; want %x", s, got, want)
		}
	}
}

func TestUsageWindowsAreAnHourLongAndStartApart(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	starts := map[time.Duration]bool{}
	for i := range 100 {
		name := fmt.Sprintf("key-%d", i)
		start := windowStart(name, t0)
		if next := windowStart(name, start.Add(usagePrecision)); next.Sub(start) != usagePrecision {
			t.Fatalf("%s: windows start at %s and %s", name, start, next)
		}
		if w := usageWindow(name, start); usageWindow(name, start.Add(usagePrecision-time.Second)) != w || usageWindow(name, start.Add(usagePrecision)) != w+1 {
			t.Fatalf("%s: the window starting at %s does not end an hour later", name, start)
		}
		starts[t0.Sub(start)] = true
	}
	if len(starts) < 90 {
		t.Fatalf("100 keys' windows start at %d offsets into the hour; want them spread", len(starts))
	}
}

// setUseTimes sets the time of every use in l to t, in place.
func setUseTimes(l usageLog, t time.Time) {
	for len(l) > 0 {
		n, size := binary.Uvarint(l)
		l = l[size+int(n):]
		binary.BigEndian.PutUint64(l, uint64(t.UnixNano()))
		l = l[8:]
	}
}
