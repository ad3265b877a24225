package account

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/internal/hashslots"
)

// argon2id parameters: OWASP's recommended minimum (19 MiB, 2 passes).
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32
	argonSaltLen   = 16
	// MaxPasswordLength bounds the work an attacker can ask argon2 to do.
	MaxPasswordLength = 1024
)

// ErrBusy is returned by VerifyPassword and CheckPassword when every slot
// for an argon2 hash stayed taken for the whole wait (or the request
// ended first): the password was not checked, so it is neither right nor
// wrong. The data plane answers 429, the login portal asks to try again.
var ErrBusy = hashslots.ErrBusy

// BusyWait is how long a password check waits for a free hash slot
// before giving up with ErrBusy, and so how long a busy answer asks the
// client to wait before it tries again.
const BusyWait = time.Second

// argonKey computes an argon2id key in a slot of the process-wide pool,
// which bounds the memory the hashes hold (see hashslots).
func argonKey(ctx context.Context, wait time.Duration, password string, salt []byte, t, m uint32, p uint8, n uint32) ([]byte, error) {
	var key []byte
	err := hashslots.Process.Do(ctx, wait, func() { key = argon2.IDKey([]byte(password), salt, t, m, p, n) })
	return key, err
}

// HashPassword returns the PHC-format argon2id hash of password. It waits
// for a hash slot as long as it takes: it runs for administrators only.
func HashPassword(password string) (string, error) {
	if len(password) < 8 {
		return "", failure.Invalid("password must be at least 8 characters")
	}
	if len(password) > MaxPasswordLength {
		return "", failure.Invalid("password must be at most %d bytes", MaxPasswordLength)
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := argonKey(context.Background(), 0, password, salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	if err != nil {
		return "", err
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemoryKiB, argonTime, argonThreads, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// VerifyPassword checks password against a PHC argon2id hash in constant
// time. An empty or malformed hash never verifies. It returns ErrBusy,
// without checking, when no hash slot freed up within a second or before
// ctx ended.
func VerifyPassword(ctx context.Context, hash, password string) (bool, error) {
	if hash == "" || len(password) > MaxPasswordLength {
		return false, nil
	}
	salt, key, m, t, p, err := parsePHC(hash)
	if err != nil {
		return false, nil
	}
	got, err := argonKey(ctx, BusyWait, password, salt, t, m, p, uint32(len(key))) //nolint:gosec // G115: a hash's key is a few dozen bytes
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

func parsePHC(hash string) (salt, key []byte, m, t uint32, p uint8, err error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return nil, nil, 0, 0, 0, errors.New("not an argon2id hash")
	}
	var v int
	if _, err = fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return nil, nil, 0, 0, 0, errors.New("unsupported argon2 version")
	}
	if _, err = fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return nil, nil, 0, 0, 0, errors.New("bad argon2 parameters")
	}
	enc := base64.RawStdEncoding
	if salt, err = enc.DecodeString(parts[4]); err != nil {
		return nil, nil, 0, 0, 0, err
	}
	if key, err = enc.DecodeString(parts[5]); err != nil {
		return nil, nil, 0, 0, 0, err
	}
	if m > 1<<20 || t > 16 || p == 0 || len(key) < 16 {
		return nil, nil, 0, 0, 0, errors.New("argon2 parameters out of range")
	}
	return salt, key, m, t, p, nil
}
