package keystore

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSuccessorFileKeepsRetiredIndexKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keystore.key")
	old, err := Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if old.Version() != 1 || !old.Legacy() || len(old.Retired()) != 0 {
		t.Fatalf("a new keystore: version %d, legacy %v, retired %v", old.Version(), old.Legacy(), old.Retired())
	}
	next, err := old.Successor()
	if err != nil {
		t.Fatal(err)
	}
	if err := next.WriteNew(path + NewSuffix); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(path + NewSuffix); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the new keystore's file: %v %v", info, err)
	}
	// While the new file is there, an instance refuses the keystore.
	if _, err := Open(path, false); !errors.Is(err, ErrRekeyPending) || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("Open with a rekey pending: %v", err)
	}
	if err := os.Rename(path+NewSuffix, path); err != nil {
		t.Fatal(err)
	}
	again, err := Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if again.Version() != 2 || again.Legacy() || again.IndexKeyID() == old.IndexKeyID() {
		t.Fatalf("re-keyed: version %d, legacy %v, id %s (old %s)", again.Version(), again.Legacy(), again.IndexKeyID(), old.IndexKeyID())
	}
	if r := again.Retired(); len(r) != 1 || r[0].ID != old.IndexKeyID() || !r[0].Legacy {
		t.Fatalf("retired keys %+v, want the old one, legacy", r)
	}
	// Everything but the retired index key is new.
	if _, err := again.Open(old.Seal([]byte("s"), "c"), "c"); err == nil {
		t.Error("the new keystore opens what the old one sealed")
	}
	if again.RecordTag("k", []byte("v")) == old.RecordTag("k", []byte("v")) {
		t.Error("record tags unchanged")
	}
	if again.Index("p", []byte("x")) == old.Index("p", []byte("x")) {
		t.Error("the current index key is unchanged")
	}
	// The retired one still computes the old digests: by its ID, and as
	// the legacy key ("").
	for _, id := range []string{old.IndexKeyID(), ""} {
		if got, ok := again.IndexWith(id, "p", []byte("x")); !ok || got != old.Index("p", []byte("x")) {
			t.Errorf("IndexWith(%q): %s %v", id, got, ok)
		}
	}
	if got, ok := again.IndexWith(again.IndexKeyID(), "p", []byte("x")); !ok || got != again.Index("p", []byte("x")) {
		t.Errorf("IndexWith(current): %s %v", got, ok)
	}
	if _, ok := again.IndexWith("00000000", "p", []byte("x")); ok {
		t.Error("an unknown key ID computed a digest")
	}
	// A second rekey keeps both retired keys.
	third, err := again.Successor()
	if err != nil {
		t.Fatal(err)
	}
	if r := third.Retired(); len(r) != 2 || r[0].ID != again.IndexKeyID() || r[1].ID != old.IndexKeyID() || r[0].Legacy || !r[1].Legacy {
		t.Fatalf("after a second rekey: %+v", r)
	}
	// Dropping the retired keys leaves the current one alone.
	if err := again.DropRetired(); err != nil {
		t.Fatal(err)
	}
	dropped, err := Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped.Retired()) != 0 || dropped.IndexKeyID() != again.IndexKeyID() || dropped.Legacy() {
		t.Fatalf("after DropRetired: %+v, id %s", dropped.Retired(), dropped.IndexKeyID())
	}
	if _, ok := dropped.IndexWith("", "p", []byte("x")); ok {
		t.Error("the legacy key survived DropRetired")
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("after DropRetired: %v %v", info, err)
	}
}

// TestVersion2FileRefusedByOlderReader checks that what a version before
// rekeying does with a key file (decode it whole as hex, 32 bytes) fails
// on a version 2 file, rather than reading some other key from it.
func TestVersion2FileRefusedByOlderReader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keystore.key")
	old, err := Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	next, err := old.Successor()
	if err != nil {
		t.Fatal(err)
	}
	raw := next.file.encode()
	if master, err := hex.DecodeString(strings.TrimSpace(string(raw))); err == nil && len(master) == masterKeySize {
		t.Fatal("an older version would read a version 2 file as a master key")
	}
	// A newer format than this version knows is named as such.
	future := strings.Replace(string(raw), "v2", "v3", 1)
	if _, err := parseFile(path, []byte(future)); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("a version 3 file: %v", err)
	}
}

func TestVersion2FileCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keystore.key")
	old, err := Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	next, err := old.Successor()
	if err != nil {
		t.Fatal(err)
	}
	good := string(next.file.encode())
	if _, err := parseFile(path, []byte(good)); err != nil {
		t.Fatal(err)
	}
	id := old.IndexKeyID()
	for what, bad := range map[string]string{
		"no master":        strings.Join(strings.Split(good, "\n")[:2], "\n") + "\n" + good[strings.Index(good, "retired"):],
		"retired ID wrong": strings.Replace(good, "retired "+id, "retired 00000000", 1),
		"short master":     strings.Replace(good, "master ", "master 00", 1),
		"unknown line":     good + "extra stuff\n",
	} {
		if _, err := parseFile(path, []byte(bad)); err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("%s: %v", what, err)
		}
	}
}

// TestWriteNewNeverReplaces: WriteNew refuses an existing file and leaves
// no temporary file behind.
func TestWriteNewNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	old, err := Open(filepath.Join(dir, "keystore.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	next, err := old.Successor()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "keystore.key"+NewSuffix)
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := next.WriteNew(path); err == nil {
		t.Fatal("WriteNew replaced an existing file")
	}
	if raw, _ := os.ReadFile(path); string(raw) != "x" {
		t.Fatalf("the existing file changed: %q", raw)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := next.WriteNew(path); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("left %s", e.Name())
		}
	}
	if again, err := OpenFile(path, false); err != nil || !again.Equal(next) {
		t.Fatalf("reading the new file back: %v", err)
	}
}

// TestSaveAsNoticesASecondWriter: two rekeys started at once share the
// temporary name <keystore>.new.tmp; when the second one's file takes
// its place between the first's writing and linking, the first fails
// rather than go on with a key that <keystore>.new does not hold (the
// store would then be sealed with a key no file keeps).
func TestSaveAsNoticesASecondWriter(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keystore.key")
	old, err := Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	first, err := old.Successor()
	if err != nil {
		t.Fatal(err)
	}
	second, err := old.Successor()
	if err != nil {
		t.Fatal(err)
	}
	beforeLink = func(tmp string) {
		beforeLink = nil
		if err := os.Remove(tmp); err != nil {
			t.Fatal(err)
		}
		if err := writeNew(tmp, second.file.encode()); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { beforeLink = nil })
	if err := first.WriteNew(path + NewSuffix); err == nil {
		t.Fatal("WriteNew succeeded although the file holds another run's key")
	}
	if got, err := OpenFile(path+NewSuffix, false); err == nil && got.Equal(first) {
		t.Fatal("the file holds the first run's key after all")
	}
}
