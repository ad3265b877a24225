// Package keystore holds Gatehouse's master key: a 256-bit secret generated
// on first start into a 0600 file in the data directory. Everything secret
// that Gatehouse must be able to read back (application key values, OTP
// secrets, CA and assertion signing keys) is sealed with AES-256-GCM under a
// key derived from it, and secret lookups use HMAC indexes derived from it,
// so the store never holds a usable secret in clear. Every stored record
// carries a tag (RecordTag) under another derived key, so that whoever can
// write to the store but lacks the keystore cannot forge a record.
package keystore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

const masterKeySize = 32

// Keystore seals and indexes secrets with keys derived from the master key.
type Keystore struct {
	path    string
	created bool
	mode    fs.FileMode // the file's permission bits when opened
	aead    cipher.AEAD
	macKey  []byte
	macPool sync.Pool
	// recordPool holds HMACs under the record key (RecordTag).
	recordPool sync.Pool
	// version is the file's format: 1 (a bare master key) or 2 (written
	// by a rekey, with the index keys it retired).
	version int
	// file is what the key file holds.
	file keyFile
	// indexKeys are the index keys: the current one first, then the
	// retired ones a rekey kept (see Retired).
	indexKeys []*indexKey
}

// ErrMissing reports that the keystore file does not exist and may not be
// created because sealed data already exists.
var ErrMissing = errors.New("keystore file is missing")

// ErrRekeyPending reports that a `caddy gatehouse rekey` run left its new
// keystore (<keystore>.new) beside the file: the store is half re-keyed,
// and neither keystore serves it until the run is finished with --resume.
var ErrRekeyPending = errors.New("a keystore rekey is in progress")

// NewSuffix names the file a rekey writes the new keystore to (beside
// the current one) before it replaces it.
const NewSuffix = ".new"

// Open loads the master key from path, creating it (0600, parent 0700) when
// it does not exist and create is true. Created reports whether it did.
// It refuses while a rekey of the keystore is unfinished (ErrRekeyPending).
func Open(path string, create bool) (*Keystore, error) {
	if _, err := os.Lstat(path + NewSuffix); !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s exists: with every instance stopped, finish it with "+
			"`caddy gatehouse rekey --resume --store <location> --keystore %s`", ErrRekeyPending, path+NewSuffix, path)
	}
	return OpenFile(path, create)
}

// OpenFile is Open without the check for an unfinished rekey: for the
// rekey command, which opens both keystores.
func OpenFile(path string, create bool) (*Keystore, error) {
	raw, err := os.ReadFile(path)
	created := false
	switch {
	case errors.Is(err, fs.ErrNotExist) && create:
		raw, err = generate(path)
		if err != nil {
			return nil, err
		}
		created = true
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s", ErrMissing, path)
	case err != nil:
		return nil, fmt.Errorf("reading keystore %s: %v", path, err)
	}
	file, err := parseFile(path, raw)
	if err != nil {
		return nil, err
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading keystore %s: %v", path, err)
	}
	ks, err := fromFile(path, file, created)
	if ks != nil {
		ks.mode = info.Mode().Perm()
	}
	return ks, err
}

func generate(path string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating keystore directory: %v", err)
	}
	master := make([]byte, masterKeySize)
	if _, err := rand.Read(master); err != nil {
		return nil, fmt.Errorf("generating keystore: %v", err)
	}
	encoded := []byte(hex.EncodeToString(master) + "\n")
	return encoded, writeNew(path, encoded)
}

// writeNew writes data to a new 0600 file at path (never through a link,
// never over an existing file) and syncs it and its directory.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("creating keystore %s: %v", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing keystore %s: %v", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing keystore %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing keystore %s: %v", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes a file's creation or renaming in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("syncing %s: %v", dir, err)
	}
	return nil
}

func fromFile(path string, file keyFile, created bool) (*Keystore, error) {
	ks, err := fromMaster(path, file.master, created)
	if err != nil {
		return nil, err
	}
	ks.version = file.version
	ks.file = file
	ks.indexKeys[0].legacy = file.version == 1
	for _, r := range file.retired {
		ks.indexKeys = append(ks.indexKeys, newIndexKey(r.key, r.legacy))
	}
	return ks, nil
}

func fromMaster(path string, master []byte, created bool) (*Keystore, error) {
	encKey, err := hkdf.Key(sha256.New, master, nil, "gatehouse seal v1", 32)
	if err != nil {
		return nil, err
	}
	macKey, err := hkdf.Key(sha256.New, master, nil, "gatehouse index v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	recordKey, err := hkdf.Key(sha256.New, master, nil, "gatehouse record v1", 32)
	if err != nil {
		return nil, err
	}
	ks := &Keystore{path: path, created: created, aead: aead, macKey: macKey, version: 1,
		file: keyFile{version: 1, master: master}}
	// The current index key; it is the legacy one (of "keyed=1" hashes
	// and digests without a key ID) until a rekey retires it.
	ks.indexKeys = []*indexKey{newIndexKey(macKey, true)}
	ks.macPool.New = func() any {
		return &indexState{mac: hmac.New(sha256.New, ks.macKey), buf: make([]byte, 0, 128), sum: make([]byte, 0, sha256.Size)}
	}
	ks.recordPool.New = func() any {
		return &indexState{mac: hmac.New(sha256.New, recordKey), buf: make([]byte, 0, 128), sum: make([]byte, 0, sha256.Size)}
	}
	return ks, nil
}

// Path is the keystore file's location.
func (k *Keystore) Path() string { return k.path }

// taggedSuffix names the file beside the key that remembers it was used
// with a tagged store (see NoteTaggedStore).
const taggedSuffix = ".tagged"

// NoteTaggedStore remembers, in a file beside the key (<path>.tagged),
// that the keystore has been used with a store whose records are tagged
// (storage/tagged). The store cannot keep that fact itself: whoever can
// write to it could remove it. With it noted, a store of this keystore
// with untagged records counts as tampered with, and is not tagged.
func (k *Keystore) NoteTaggedStore() error {
	if k.UsedWithTaggedStore() {
		return nil
	}
	note := "This keystore has been used with a Gatehouse store whose records are tagged.\n" +
		"Remove this file only to tag a store of it written by a version before record tags.\n"
	// A new file, never through a link (O_EXCL fails on any existing name,
	// a link too): in a directory others can write to, a link planted
	// there would have this run create a file where the link points.
	f, err := os.OpenFile(k.path+taggedSuffix, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		_, err = f.WriteString(note)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		return fmt.Errorf("noting that keystore %s was used with a tagged store: %v", k.path, err)
	}
	return nil
}

// UsedWithTaggedStore reports whether NoteTaggedStore was called for
// this keystore file (or whether that cannot be told: it then errs on the
// side of refusing to tag).
func (k *Keystore) UsedWithTaggedStore() bool {
	_, err := os.Lstat(k.path + taggedSuffix) // a link there counts, dangling or not
	return !errors.Is(err, fs.ErrNotExist)
}

// Created reports whether Open generated a new master key.
func (k *Keystore) Created() bool { return k.created }

// Exposed reports whether the key file's permissions let users other than
// its owner read or change it (any group or other bit), and the mode.
func (k *Keystore) Exposed() (bool, fs.FileMode) { return k.mode&0o077 != 0, k.mode }

// Seal encrypts plaintext with AES-256-GCM; context binds the ciphertext to
// its purpose and record (e.g. "appkey/name") so it cannot be swapped into
// another record.
func (k *Keystore) Seal(plaintext []byte, context string) []byte {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic("keystore: crypto/rand failed: " + err.Error())
	}
	return k.aead.Seal(nonce, nonce, plaintext, []byte(context))
}

// Open decrypts what Seal produced with the same context.
func (k *Keystore) Open(sealed []byte, context string) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n+k.aead.Overhead() {
		return nil, errors.New("keystore: sealed value too short")
	}
	plain, err := k.aead.Open(nil, sealed[:n], sealed[n:], []byte(context))
	if err != nil {
		return nil, errors.New("keystore: sealed value does not decrypt with this keystore")
	}
	return plain, nil
}

// Index returns the hex HMAC-SHA256 of secret under the index key, prefixed
// by purpose. It is the lookup key for a secret presented by a client.
func (k *Keystore) Index(purpose string, secret []byte) string {
	sum := indexSum(k, purpose, secret)
	var hexSum [2 * sha256.Size]byte
	hex.Encode(hexSum[:], sum[:])
	return string(hexSum[:])
}

// IndexHex writes Index(purpose, secret) to dst without allocating, for
// a lookup key that need not outlive the request.
func (k *Keystore) IndexHex(dst *[2 * sha256.Size]byte, purpose string, secret []byte) {
	sum := indexSum(k, purpose, secret)
	hex.Encode(dst[:], sum[:])
}

// IndexSum is the HMAC Index encodes in hex, without allocating.
func (k *Keystore) IndexSum(purpose, secret string) [sha256.Size]byte {
	return indexSum(k, purpose, secret)
}

func indexSum[S ~string | ~[]byte](k *Keystore, purpose string, secret S) (sum [sha256.Size]byte) {
	st := k.macPool.Get().(*indexState)
	st.mac.Reset()
	st.buf = append(append(append(st.buf[:0], purpose...), 0), secret...)
	st.mac.Write(st.buf)
	st.sum = st.mac.Sum(st.sum[:0])
	copy(sum[:], st.sum)
	if cap(st.buf) <= 4096 {
		k.macPool.Put(st)
	}
	return sum
}

// RecordTagSize is the length of a RecordTag.
const RecordTagSize = 16

// TagOnOrOff is a stored record read both ways, for a check made before
// the store's tags are known to verify (a store of an older version, or
// another keystore's): whole, and without a record tag's bytes at its end.
func TagOnOrOff(raw []byte) [2][]byte {
	return [2][]byte{raw, raw[:max(0, len(raw)-RecordTagSize)]}
}

// RecordTag authenticates a stored record: the HMAC-SHA256, truncated to
// 128 bits, of the record's key and value under a key of its own derived
// from the master key. Binding the key means a record's value cannot be
// moved to another key; whoever lacks the keystore cannot make a tag.
func (k *Keystore) RecordTag(key string, value []byte) [RecordTagSize]byte {
	st := k.recordPool.Get().(*indexState)
	st.mac.Reset()
	st.buf = append(binary.BigEndian.AppendUint32(st.buf[:0], uint32(len(key))), key...) //nolint:gosec // G115: store keys are far below 4 GiB
	st.mac.Write(st.buf)
	st.mac.Write(value)
	st.sum = st.mac.Sum(st.sum[:0])
	var tag [RecordTagSize]byte
	copy(tag[:], st.sum)
	if cap(st.buf) <= 4096 {
		k.recordPool.Put(st)
	}
	return tag
}

// indexState is a pooled HMAC with its scratch buffers, so Index
// allocates only its result.
type indexState struct {
	mac hash.Hash
	buf []byte
	sum []byte
}
