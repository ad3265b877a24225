package session

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// TestDigest: the store key and the audit ID of a token are its hex
// SHA-256 (behind keyPrefix) and the first 16 characters of it, for
// tokens of any length (the stack buffer holds 64 bytes).
func TestDigest(t *testing.T) {
	for _, token := range []string{"", "abc", strings.Repeat("x", 43), strings.Repeat("y", 64), strings.Repeat("z", 200)} {
		sum := sha256.Sum256([]byte(token))
		want := hex.EncodeToString(sum[:])
		if got := ID(token); got != want {
			t.Errorf("ID(%d bytes) = %q; want %q", len(token), got, want)
		}
		if got := DigestID(token); got != want[:16] {
			t.Errorf("DigestID(%d bytes) = %q; want %q", len(token), got, want[:16])
		}
	}
}
