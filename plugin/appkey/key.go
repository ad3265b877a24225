package appkey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"

	"github.com/gatehouse-auth/gatehouse/keystore"
)

// KeyPrefix starts every application key value, so secret scanners and
// people recognise one.
const KeyPrefix = "ghak_"

// A key value is KeyPrefix followed by the unpadded base64url encoding of
// 32 random bytes and a 4-byte tag. The tag is the tail of the key's HMAC
// index, so only the holder of the keystore can mint a value that passes
// parseKey's check: a forged or mistyped key is refused without any store
// or cache access, and cannot evict real keys from the cache.
const (
	randomSize = 32
	tagSize    = 4
	bodySize   = randomSize + tagSize
	// KeyLength is the length of every key value, in bytes.
	KeyLength = len(KeyPrefix) + (bodySize*8+5)/6
)

// indexPurpose separates key indexes from every other HMAC index.
const indexPurpose = "appkey"

// newKey returns a fresh key value and its index.
func newKey(ks *keystore.Keystore) (value, index string) {
	var body [bodySize]byte
	if _, err := rand.Read(body[:randomSize]); err != nil {
		panic("appkey: crypto/rand failed: " + err.Error())
	}
	index = ks.Index(indexPurpose, body[:randomSize])
	if _, err := hex.Decode(body[randomSize:], []byte(index[len(index)-2*tagSize:])); err != nil {
		panic("appkey: the keystore index is not hex: " + err.Error())
	}
	return KeyPrefix + base64.RawURLEncoding.EncodeToString(body[:]), index
}

// parseKey splits a presented value into its random part and tag. It
// refuses anything but the exact canonical form.
func parseKey(s string) (random [randomSize]byte, tag [tagSize]byte, ok bool) {
	if len(s) != KeyLength || !strings.HasPrefix(s, KeyPrefix) {
		return random, tag, false
	}
	var encoded [KeyLength - len(KeyPrefix)]byte // on the stack: no allocation
	copy(encoded[:], s[len(KeyPrefix):])
	var body [bodySize]byte
	n, err := base64.RawURLEncoding.Decode(body[:], encoded[:])
	if err != nil || n != bodySize {
		return random, tag, false
	}
	copy(random[:], body[:randomSize])
	copy(tag[:], body[randomSize:])
	return random, tag, true
}

// indexOf returns the lookup index of a presented key value; ok is false
// for a malformed value or one whose tag does not match (not issued by this
// keystore). A value issued before a rekey carries a tag of the retired
// index key, which is accepted while the keystore keeps that key; its
// index is the current key's (the rekey made the indexes again).
func indexOf(ks *keystore.Keystore, value string) (index string, ok bool) {
	var dst [2 * sha256.Size]byte
	if !indexInto(ks, value, &dst) {
		return "", false
	}
	return string(dst[:]), true
}

// indexInto is indexOf writing the index to dst, without allocating.
func indexInto(ks *keystore.Keystore, value string, dst *[2 * sha256.Size]byte) bool {
	random, tag, ok := parseKey(value)
	if !ok {
		return false
	}
	ks.IndexHex(dst, indexPurpose, random[:])
	var want [2 * tagSize]byte
	hex.Encode(want[:], tag[:])
	if subtle.ConstantTimeCompare(want[:], dst[len(dst)-2*tagSize:]) == 1 {
		return true
	}
	return tagRetired(ks, random[:], tag)
}
