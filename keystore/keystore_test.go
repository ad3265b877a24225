package keystore

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestOpenCreatesPrivateFileAndReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "keystore.key")
	ks, err := Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if !ks.Created() {
		t.Fatal("first Open did not report creation")
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("keystore mode %v, want 0600", st.Mode().Perm())
	}
	sealed := ks.Seal([]byte("secret"), "ctx")
	again, err := Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if again.Created() {
		t.Fatal("reopen reported creation")
	}
	plain, err := again.Open(sealed, "ctx")
	if err != nil || string(plain) != "secret" {
		t.Fatalf("reopened keystore cannot open sealed value: %q %v", plain, err)
	}
	if ks.Index("p", []byte("x")) != again.Index("p", []byte("x")) {
		t.Fatal("index not stable across reopen")
	}
}

func TestExposedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keystore.key")
	if _, err := Open(path, true); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode    os.FileMode
		exposed bool
	}{{0o600, false}, {0o400, false}, {0o640, true}, {0o604, true}, {0o620, true}} {
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		ks, err := Open(path, false)
		if err != nil {
			t.Fatal(err)
		}
		if exposed, mode := ks.Exposed(); exposed != tc.exposed || mode != tc.mode {
			t.Errorf("mode %v: Exposed() = %v, %v; want %v", tc.mode, exposed, mode, tc.exposed)
		}
	}
}

func TestSealBindsContextAndKey(t *testing.T) {
	a, _ := Open(filepath.Join(t.TempDir(), "a"), true)
	b, _ := Open(filepath.Join(t.TempDir(), "b"), true)
	sealed := a.Seal([]byte("secret"), "appkey/one")
	if _, err := a.Open(sealed, "appkey/two"); err == nil {
		t.Fatal("sealed value opened under another context")
	}
	if _, err := b.Open(sealed, "appkey/one"); err == nil {
		t.Fatal("sealed value opened with another keystore")
	}
	if _, err := a.Open(sealed[:5], "appkey/one"); err == nil {
		t.Fatal("truncated value opened")
	}
	if a.Index("p", []byte("x")) == b.Index("p", []byte("x")) {
		t.Fatal("two keystores produce the same index")
	}
	if a.Index("p", []byte("x")) == a.Index("q", []byte("x")) {
		t.Fatal("index ignores purpose")
	}
}

func TestMissingAndCorrupt(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "none"), false); !errors.Is(err, ErrMissing) {
		t.Fatalf("missing keystore: got %v, want ErrMissing", err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("zz"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(bad, true); err == nil {
		t.Fatal("corrupt keystore accepted")
	}
}

// TestRecordTagBindsKeyValueAndKeystore: a tag changes with the key, the
// value and the keystore, and the key is length-prefixed, so a byte cannot
// move between key and value ("a"+"bc" is not "ab"+"c"); the same inputs
// always give the same tag.
func TestRecordTagBindsKeyValueAndKeystore(t *testing.T) {
	dir := t.TempDir()
	ks, _ := Open(filepath.Join(dir, "a"), true)
	other, _ := Open(filepath.Join(dir, "b"), true)
	base := ks.RecordTag("a", []byte("bc"))
	if ks.RecordTag("a", []byte("bc")) != base {
		t.Fatal("the same record got two different tags")
	}
	for what, tag := range map[string][RecordTagSize]byte{
		"a byte moved from value to key": ks.RecordTag("ab", []byte("c")),
		"another value":                  ks.RecordTag("a", []byte("bd")),
		"another key":                    ks.RecordTag("b", []byte("bc")),
		"another keystore":               other.RecordTag("a", []byte("bc")),
	} {
		if tag == base {
			t.Errorf("%s: same tag", what)
		}
	}
}

// TestIndexForms: IndexHex and IndexSum are Index, hex and raw.
func TestIndexForms(t *testing.T) {
	k, err := Open(filepath.Join(t.TempDir(), "k"), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"", "s3cret", string(make([]byte, 5000))} {
		want := k.Index("purpose", []byte(secret))
		var dst [64]byte
		k.IndexHex(&dst, "purpose", []byte(secret))
		sum := k.IndexSum("purpose", secret)
		if string(dst[:]) != want || hex.EncodeToString(sum[:]) != want {
			t.Errorf("%d-byte secret: IndexHex %s, IndexSum %x; Index %s", len(secret), dst, sum, want)
		}
		if k.Index("other", []byte(secret)) == want {
			t.Error("the purpose does not change the index")
		}
	}
}

// TestTaggedNoteFollowsNoLink: the note beside a keystore is created as a
// new file, never through a link another user planted there (in a shared
// directory, tag-records run by root would create the file the link
// names, /etc/nologin say): a link, dangling or not, counts as the note.
func TestTaggedNoteFollowsNoLink(t *testing.T) {
	dir := t.TempDir()
	ks, err := Open(filepath.Join(dir, "ks.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(t.TempDir(), "nologin")
	if err := os.Symlink(victim, filepath.Join(dir, "ks.key.tagged")); err != nil {
		t.Fatal(err)
	}
	if !ks.UsedWithTaggedStore() {
		t.Error("a dangling link as the note: not counted as used with a tagged store")
	}
	if err := ks.NoteTaggedStore(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(victim); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the note was written through the link: %v", err)
	}
	// Without a link the note is written, for its owner alone.
	other, err := Open(filepath.Join(dir, "other.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.NoteTaggedStore(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "other.key.tagged")); err != nil || fi.Mode().Perm() != 0o600 || !other.UsedWithTaggedStore() {
		t.Fatalf("the note: %v %v", fi, err)
	}
}
