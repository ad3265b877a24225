package audit

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRetagSpillMovesLinesToTheNewTagger: after a keystore rekey's
// RetagSpill, the events a stopped instance left in its spill file verify
// under the new keystore's tags (and not the old one's); a line neither
// tagged stays as it was, refused as before.
func TestRetagSpillMovesLinesToTheNewTagger(t *testing.T) {
	parallel(t)
	tagger := func(secret string) SpillTagger {
		return func(key string, event []byte) []byte {
			sum := sha256.Sum256(append([]byte(secret+"\x00"+key+"\x00"), event...))
			return sum[:16]
		}
	}
	old, next := tagger("old"), tagger("new")
	path := filepath.Join(t.TempDir(), "audit-spill-x.jsonl")
	s, _, _, _, err := openSpill(path, 1<<20, 0, old)
	if err != nil {
		t.Fatal(err)
	}
	var events []pending
	for i := range 3 {
		events = append(events, pending{key: eventKey(time.Now(), false), raw: []byte(`{"time":"2026-12-06T10:00:0` + string(rune('0'+i)) + `Z","kind":"admin"}`)})
	}
	if _, err := s.add(events); err != nil {
		t.Fatal(err)
	}
	s.f.Close()
	forged := `{"key":"` + eventKey(time.Now(), false) + `","event":{"time":"2026-12-06T10:00:00Z","kind":"admin"},"tag":"00112233445566778899aabbccddeeff"}` + "\n"
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(forged); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if n, err := RetagSpill(path, old, next); err != nil || n != 3 {
		t.Fatalf("RetagSpill: %d, %v; want 3", n, err)
	}
	if n, err := RetagSpill(path, old, next); err != nil || n != 0 {
		t.Fatalf("RetagSpill again: %d, %v; want 0", n, err)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the spill file: %v %v", info, err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, _, _, forgedCount, err := readSpill(strings.NewReader(string(raw)), next)
	if err != nil || len(got) != 3 || forgedCount != 1 {
		t.Fatalf("under the new tagger: %d events, %d refused, %v; want 3 and 1", len(got), forgedCount, err)
	}
	if _, _, _, forgedCount, _ := readSpill(strings.NewReader(string(raw)), old); forgedCount != 4 {
		t.Fatalf("under the old tagger: %d refused, want 4", forgedCount)
	}
	if n, err := RetagSpill(filepath.Join(t.TempDir(), "none.jsonl"), old, next); err != nil || n != 0 {
		t.Fatalf("a missing file: %d, %v", n, err)
	}
}
