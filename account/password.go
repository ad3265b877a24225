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
	"github.com/gatehouse-auth/gatehouse/keystore"
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

// ErrBusy is returned by the password checks (SignIn, CheckPassword) when every slot
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
func argonKey(ctx context.Context, wait time.Duration, input, salt []byte, t, m uint32, p uint8, n uint32) ([]byte, error) {
	var key []byte
	err := hashslots.Process.Do(ctx, wait, func() { key = idKey(input, salt, t, m, p, n) })
	return key, err
}

// idKey computes argon2id keys; the tests count the hashes a sign-in
// costs through it.
var idKey = argon2.IDKey

// passwordPurpose is the keystore purpose (Keystore.IndexSum) of the key
// a password is keyed with before argon2.
const passwordPurpose = "password-hash"

// keyedParam marks, among a PHC hash's parameters, a hash of the keyed
// password: "m=19456,t=2,p=1,keyed=1". A version before keyed hashes
// reads the parameters it knows and computes another key, so it refuses
// the password rather than misreading the hash. "keyed=1" is the pepper
// of a keystore never re-keyed (its legacy index key); a re-keyed
// keystore's hashes name the index key they were keyed with instead
// ("keyed=" and its 8-hex-digit ID, Keystore.IndexKeyID), so that after a
// rekey a hash under the retired pepper still verifies, and is replaced
// at the next sign-in (Service.rekeyed). A version before rekeying cannot
// open a re-keyed keystore, so never meets such a hash.
const keyedParam = "keyed="

// legacyKeyed is the keyed parameter's value of a hash under the legacy
// index key.
const legacyKeyed = "1"

// passwordHasher makes and checks the argon2id hashes of account
// passwords. With a keystore the password is keyed first (a pepper: the
// HMAC-SHA256 of the password under a key derived from the keystore's
// master key), so that a copy of the store alone (a backup, an RDB
// snapshot, a replica) gives nothing to guess passwords against offline.
// Without one (ks nil: the tests, and the model of a version before keyed
// hashes) the password itself is hashed.
type passwordHasher struct {
	ks *keystore.Keystore
}

// hash returns the PHC-format argon2id hash of password, keyed when h
// has a keystore. It refuses a password too short or too long, and waits
// for a hash slot as long as it takes: it runs for administrators and
// users changing their password.
func (h passwordHasher) hash(password string) (string, error) {
	if len(password) < 8 {
		return "", failure.Invalid("password must be at least 8 characters")
	}
	if len(password) > MaxPasswordLength {
		return "", failure.Invalid("password must be at most %d bytes", MaxPasswordLength)
	}
	return h.hashWithin(context.Background(), 0, password)
}

// hashWithin is hash without the length checks, giving up with ErrBusy
// when no hash slot frees up within wait (zero: no limit).
func (h passwordHasher) hashWithin(ctx context.Context, wait time.Duration, password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	var input []byte
	if h.ks == nil {
		input = []byte(password)
	} else {
		sum := h.ks.IndexSum(passwordPurpose, password)
		input = sum[:]
	}
	key, err := argonKey(ctx, wait, input, salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	if err != nil {
		return "", err
	}
	params := fmt.Sprintf("m=%d,t=%d,p=%d", argonMemoryKiB, argonTime, argonThreads)
	if h.ks != nil {
		params += "," + keyedParam + h.currentKeyed()
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$%s$%s$%s", argon2.Version, params, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// currentKeyed is the keyed parameter's value of a hash h makes now:
// "1" while the keystore was never re-keyed, else its index key's ID.
func (h passwordHasher) currentKeyed() string {
	if h.ks.Legacy() {
		return legacyKeyed
	}
	return h.ks.IndexKeyID()
}

// keyedNow reports whether hash is keyed with the keystore's current
// index key (a hash h would make now), without parsing the rest of it:
// a hash that is not is replaced at the account's next sign-in.
func (h passwordHasher) keyedNow(hash string) bool {
	return strings.Contains(hash, ","+keyedParam+h.currentKeyed()+"$")
}

// PepperOf names the pepper a stored password hash was keyed with: "" for
// an unkeyed hash (or none), else the index key's ID (Keystore.IndexKeyID;
// "1" for the legacy key of a keystore before its first rekey).
func PepperOf(hash string) string {
	_, params, ok := strings.Cut(strings.TrimPrefix(hash, "$argon2id$"), "$")
	if !ok {
		return ""
	}
	params, _, _ = strings.Cut(params, "$")
	_, keyed, ok := strings.Cut(params, ","+keyedParam)
	if !ok {
		return ""
	}
	return keyed
}

// input is what argon2 hashes for password under p's pepper: the keyed
// password, or the password itself; ok is false when the keystore lacks
// the pepper's key (dropped, or another keystore's).
func (h passwordHasher) input(password string, p phc) ([]byte, bool) {
	if !p.keyed {
		return []byte(password), true
	}
	id := p.keyID
	if id == legacyKeyed {
		id = ""
	}
	sum, ok := h.ks.IndexSumWith(id, passwordPurpose, password)
	return sum[:], ok
}

// verify checks password against a PHC argon2id hash, keyed or not, in
// constant time. An empty or malformed hash never verifies, and neither
// does a keyed one without a keystore. It returns ErrBusy, without
// checking, when no hash slot freed up within a second or before ctx
// ended.
func (h passwordHasher) verify(ctx context.Context, hash, password string) (bool, error) {
	if hash == "" || len(password) > MaxPasswordLength {
		return false, nil
	}
	p, err := parsePHC(hash)
	if err != nil || p.keyed && h.ks == nil {
		return false, nil
	}
	input, ok := h.input(password, p)
	if !ok {
		// The pepper was dropped (rekey --retire-old-pepper): the hash
		// costs what any check costs, and never verifies.
		input = []byte(password)
	}
	got, err := argonKey(ctx, BusyWait, input, p.salt, p.t, p.m, p.p, uint32(len(p.key))) //nolint:gosec // G115: a hash's key is a few dozen bytes
	if err != nil {
		return false, err
	}
	return ok && subtle.ConstantTimeCompare(got, p.key) == 1, nil
}

// phc is a parsed PHC-format argon2id hash.
type phc struct {
	salt, key []byte
	m, t      uint32
	p         uint8
	keyed     bool
	// keyID is the keyed parameter's value: legacyKeyed or an index
	// key's ID.
	keyID string
}

func parsePHC(hash string) (phc, error) {
	var out phc
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return out, errors.New("not an argon2id hash")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return out, errors.New("unsupported argon2 version")
	}
	params, keyID, keyed := strings.Cut(parts[3], ","+keyedParam)
	if keyed && (keyID == "" || strings.ContainsAny(keyID, ",=")) {
		return out, errors.New("bad keyed parameter")
	}
	out.keyID = keyID
	var rest string
	if n, _ := fmt.Sscanf(params, "m=%d,t=%d,p=%d%s", &out.m, &out.t, &out.p, &rest); n != 3 {
		return out, errors.New("bad argon2 parameters")
	}
	out.keyed = keyed
	enc := base64.RawStdEncoding
	var err error
	if out.salt, err = enc.DecodeString(parts[4]); err != nil {
		return out, err
	}
	if out.key, err = enc.DecodeString(parts[5]); err != nil {
		return out, err
	}
	if out.m > 1<<20 || out.t > 16 || out.p == 0 || len(out.key) < 16 {
		return out, errors.New("argon2 parameters out of range")
	}
	return out, nil
}

// UserRecordPrefix starts the store key of every account record.
const UserRecordPrefix = userPrefix

// UserPepper reads a stored account record (user/<name>) for the rekey
// report: the username, and the pepper its password hash was keyed with
// (PepperOf; "" for an account without a local password or an unkeyed
// hash).
func UserPepper(raw []byte) (username, pepper string, err error) {
	u, err := decodeUser(raw)
	if err != nil {
		return "", "", err
	}
	return u.Username, PepperOf(u.PasswordHash), nil
}
