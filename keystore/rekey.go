package keystore

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// A keystore file is written in one of two formats:
//
//   - version 1, what a first start generates: the master key alone, in
//     hex, on one line;
//
//   - version 2, what `caddy gatehouse rekey` writes:
//
//     gatehouse keystore v2
//     master <64 hex digits>
//     retired <key ID> <64 hex digits> [legacy]
//
//     with one "retired" line for each index key a rekey retired (not a
//     master key: only the index key, derived from it, of the digests that
//     cannot be recomputed without a secret Gatehouse never holds, such as
//     the pepper of password hashes). "legacy" marks the index key of the
//     first, version 1, keystore: the key of "keyed=1" password hashes and
//     of digests that name no key.
//
// A version before rekeying reads the whole file as one hex string and
// refuses a version 2 file as corrupt ("want 32 hex-encoded bytes"): it
// never misreads it.
const fileHeader = "gatehouse keystore v2"

// keyFile is what a keystore file holds.
type keyFile struct {
	version int
	master  []byte
	retired []retiredKey
}

// retiredKey is a retired index key as the file holds it.
type retiredKey struct {
	key    []byte
	legacy bool
}

// parseFile reads a keystore file of either format.
func parseFile(path string, raw []byte) (keyFile, error) {
	corrupt := func(why string) (keyFile, error) {
		return keyFile{}, fmt.Errorf("keystore %s is corrupt: %s", path, why)
	}
	if !bytes.HasPrefix(raw, []byte(fileHeader+"\n")) {
		master, err := hex.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil || len(master) != masterKeySize {
			if bytes.HasPrefix(raw, []byte("gatehouse keystore v")) {
				return keyFile{}, fmt.Errorf("keystore %s is of a format this version does not know (%q): "+
					"it was written by a newer Gatehouse", path, strings.SplitN(string(raw), "\n", 2)[0])
			}
			return corrupt(fmt.Sprintf("want %d hex-encoded bytes", masterKeySize))
		}
		return keyFile{version: 1, master: master}, nil
	}
	f := keyFile{version: 2}
	sc := bufio.NewScanner(bytes.NewReader(raw[len(fileHeader)+1:]))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) == 0 || strings.HasPrefix(fields[0], "#"):
		case fields[0] == "master" && len(fields) == 2 && f.master == nil:
			m, err := hex.DecodeString(fields[1])
			if err != nil || len(m) != masterKeySize {
				return corrupt("bad master key")
			}
			f.master = m
		case fields[0] == "retired" && (len(fields) == 3 || len(fields) == 4 && fields[3] == "legacy"):
			k, err := hex.DecodeString(fields[2])
			if err != nil || len(k) != sha256.Size || keyID(k) != fields[1] {
				return corrupt("bad retired key " + fields[1])
			}
			f.retired = append(f.retired, retiredKey{key: k, legacy: len(fields) == 4})
		default:
			return corrupt(fmt.Sprintf("unknown line %q", fields[0]))
		}
	}
	if f.master == nil {
		return corrupt("no master key")
	}
	return f, nil
}

// encode is the file's text.
func (f keyFile) encode() []byte {
	if f.version == 1 {
		return []byte(hex.EncodeToString(f.master) + "\n")
	}
	var b strings.Builder
	b.WriteString(fileHeader + "\n")
	b.WriteString("# Gatehouse keystore. Keep it 0600; whoever holds it can read and forge the store.\n")
	b.WriteString("master " + hex.EncodeToString(f.master) + "\n")
	for _, r := range f.retired {
		b.WriteString("retired " + keyID(r.key) + " " + hex.EncodeToString(r.key))
		if r.legacy {
			b.WriteString(" legacy")
		}
		b.WriteString("\n")
	}
	return []byte(b.String())
}

// keyID names an index key without revealing it: 8 hex digits of an HMAC
// under it.
func keyID(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("gatehouse index key id"))
	return hex.EncodeToString(m.Sum(nil)[:4])
}

// indexKey is one index key, current or retired.
type indexKey struct {
	id     string
	key    []byte
	legacy bool
}

func newIndexKey(key []byte, legacy bool) *indexKey {
	return &indexKey{id: keyID(key), key: key, legacy: legacy}
}

// Version is the key file's format: 1 for a keystore never re-keyed, 2
// for one written by a rekey.
func (k *Keystore) Version() int { return k.version }

// IndexKeyID names the current index key (8 hex digits): what a password
// hash or a digest made with it records, once the keystore has been
// re-keyed.
func (k *Keystore) IndexKeyID() string { return k.indexKeys[0].id }

// Legacy reports whether the current index key is the legacy one: the
// keystore was never re-keyed, and hashes and digests made with it need
// not name their key.
func (k *Keystore) Legacy() bool { return k.indexKeys[0].legacy }

// RetiredKey describes an index key a rekey retired and the keystore
// keeps, so that what was keyed with it still verifies.
type RetiredKey struct {
	// ID names the key (as IndexKeyID does).
	ID string
	// Legacy marks the key of the keystore before its first rekey: the
	// key of "keyed=1" password hashes and of digests that name no key.
	Legacy bool
}

// Retired lists the retired index keys the keystore keeps.
func (k *Keystore) Retired() []RetiredKey {
	var out []RetiredKey
	for _, ik := range k.indexKeys[1:] {
		out = append(out, RetiredKey{ID: ik.id, Legacy: ik.legacy})
	}
	return out
}

// find returns the index key id names, or the legacy one for "".
func (k *Keystore) find(id string) *indexKey {
	for _, ik := range k.indexKeys {
		if id == ik.id || id == "" && ik.legacy {
			return ik
		}
	}
	return nil
}

// HasIndexKey reports whether the keystore holds the index key id names
// (current or retired; "" names the legacy key).
func (k *Keystore) HasIndexKey(id string) bool { return k.find(id) != nil }

// IndexSumWith is IndexSum under the index key id names: the current
// one, a retired one, or for "" the legacy one (see RetiredKey). ok is
// false when the keystore does not hold that key (it was never this
// keystore's, or it was dropped).
func (k *Keystore) IndexSumWith(id, purpose, secret string) (sum [sha256.Size]byte, ok bool) {
	ik := k.find(id)
	if ik == nil {
		return sum, false
	}
	if ik == k.indexKeys[0] {
		return indexSum(k, purpose, secret), true
	}
	m := hmac.New(sha256.New, ik.key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(secret))
	copy(sum[:], m.Sum(nil))
	return sum, true
}

// IndexWith is Index under the index key id names (see IndexSumWith).
func (k *Keystore) IndexWith(id, purpose string, secret []byte) (string, bool) {
	sum, ok := k.IndexSumWith(id, purpose, string(secret))
	if !ok {
		return "", false
	}
	return hex.EncodeToString(sum[:]), true
}

// Successor generates the keystore that replaces k in a rekey: a new
// master key (so a new seal, record tag and index key), keeping k's
// current index key and the ones k kept as retired index keys. It is
// written nowhere yet (see WriteNew).
func (k *Keystore) Successor() (*Keystore, error) {
	f := keyFile{version: 2, master: make([]byte, masterKeySize)}
	for _, ik := range k.indexKeys {
		f.retired = append(f.retired, retiredKey{key: ik.key, legacy: ik.legacy})
	}
	for {
		if _, err := rand.Read(f.master); err != nil {
			return nil, fmt.Errorf("generating keystore: %v", err)
		}
		next, err := fromFile("", f, true)
		if err != nil {
			return nil, err
		}
		if k.find(next.IndexKeyID()) == nil { // a clash of 32-bit IDs would make hashes ambiguous
			return next, nil
		}
	}
}

// WriteNew writes the keystore to a new 0600 file at path, which must
// not exist (SaveAs), and makes it the keystore's path.
func (k *Keystore) WriteNew(path string) error {
	if err := k.SaveAs(path); err != nil {
		return err
	}
	k.path = path
	return nil
}

// SaveAs writes the keystore to a new 0600 file at path, which must not
// exist; the keystore's path stays as it is. The file appears whole or
// not at all: it is written and synced as <path>.tmp first, then linked
// to path (which fails, rather than replace, when path exists).
func (k *Keystore) SaveAs(path string) error {
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	data := k.file.encode()
	if err := writeNew(tmp, data); err != nil {
		return err
	}
	defer os.Remove(tmp)
	if beforeLink != nil {
		beforeLink(tmp)
	}
	if err := os.Link(tmp, path); err != nil {
		// A file system without hard links: a rename, once path is
		// known not to exist.
		if _, statErr := os.Lstat(path); !errors.Is(statErr, fs.ErrNotExist) {
			return fmt.Errorf("creating keystore %s: %v", path, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("creating keystore %s: %v", path, err)
		}
	}
	// The name <path>.tmp is shared: another run writing the same file
	// at the same time (a second rekey) may have replaced it between its
	// writing and its linking, and path would then hold that run's key
	// while this one goes on with its own, sealing the store with a key
	// no file holds. What path holds is read back.
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) { //nolint:gosec // G304: the file just written
		return fmt.Errorf("creating keystore %s: another process wrote it at the same time (a second rekey?): "+
			"it does not hold this run's key", path)
	}
	return syncDir(filepath.Dir(path))
}

// beforeLink, when not nil, is called by SaveAs between writing its
// temporary file and linking it: for the tests, a second writer there.
var beforeLink func(tmp string)

// DropRetired rewrites the keystore file without its retired index keys:
// what was keyed with them (password hashes, ESA API password digests)
// no longer verifies. The file is replaced atomically (a new file renamed
// over it).
func (k *Keystore) DropRetired() error {
	if len(k.indexKeys) == 1 {
		return nil
	}
	f := k.file
	f.retired = nil
	if f.version == 1 {
		return errors.New("keystore: a version 1 keystore has no retired keys")
	}
	tmp := k.path + ".drop"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := writeNew(tmp, f.encode()); err != nil {
		return err
	}
	if err := os.Rename(tmp, k.path); err != nil {
		return fmt.Errorf("replacing keystore %s: %v", k.path, err)
	}
	if err := syncDir(filepath.Dir(k.path)); err != nil {
		return err
	}
	k.file = f
	k.indexKeys = k.indexKeys[:1]
	return nil
}

// Equal reports whether k and other have the same master key.
func (k *Keystore) Equal(other *Keystore) bool {
	return hmac.Equal(k.file.master, other.file.master)
}
