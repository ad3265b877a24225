package twofactor

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"strings"
	"unicode"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"

	"github.com/gatehouse-auth/gatehouse/failure"
)

// b32 is the canonical encoding of OTP secrets (RFC 4648 base32, no
// padding), as authenticator apps and oathtool -b expect it.
var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

var hotpOpts = hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// code returns the RFC 4226 code of secret (base32) at counter; TOTP is
// HOTP with the time step as counter (RFC 6238).
func code(secretB32 string, counter uint64) string {
	c, err := hotp.GenerateCodeCustom(secretB32, counter, hotpOpts)
	if err != nil {
		return "" // cannot happen: secrets are validated when enrolled
	}
	return c
}

// matches compares a presented code with the expected one in constant time.
func matches(presented, expected string) bool {
	return expected != "" && subtle.ConstantTimeCompare([]byte(presented), []byte(expected)) == 1
}

// totpStep is the RFC 6238 time step of a Unix time.
func totpStep(unix int64) int64 { return unix / totpPeriod }

// matchTOTP returns the time step within ±1 of now whose code is
// presented, or false.
func matchTOTP(sec *secret, presented string, unix int64) (int64, bool) {
	now := totpStep(unix)
	for step := now - 1; step <= now+1; step++ {
		if step >= 0 && matches(presented, code(sec.base32, uint64(step))) {
			return step, true
		}
	}
	return 0, false
}

// skewSteps is how many time steps beyond matchTOTP's window, either
// side, a refused code is looked for (skewTOTP): ten minutes.
const skewSteps = 20

// skewTOTP returns how many time steps from now lies the step whose code
// is presented, for a step beyond matchTOTP's window by at most
// skewSteps, or false. Such a code is refused like any wrong one; it only
// tells that a clock is off, the server's or the device's. Every step is
// tried, a match or not, so that the time a refusal takes does not tell
// a guesser that a guess is the code of a step to come.
func skewTOTP(sec *secret, presented string, unix int64) (off int64, found bool) {
	now := totpStep(unix)
	for d := int64(2); d <= skewSteps+1; d++ {
		for _, step := range [2]int64{now + d, now - d} {
			if step >= 0 && matches(presented, code(sec.base32, uint64(step))) && !found {
				off, found = step-now, true
			}
		}
	}
	return off, found
}

// matchHOTP returns the counter from next to next+window whose code is
// presented, or false. It stops at the end of uint64 rather than wrap.
func matchHOTP(sec *secret, presented string, next uint64, window int) (uint64, bool) {
	for i := range uint64(max(window, 0)) + 1 { //nolint:gosec // G115: a window made non-negative
		c := next + i
		if c < next {
			break
		}
		if matches(presented, code(sec.base32, c)) {
			return c, true
		}
	}
	return 0, false
}

// NormalizeCode removes the white space and dashes people and clients put
// around and inside a code ("123 456", a trailing newline or CR, a
// no-break or thin space a phone inserts: every Unicode space, as ESET's
// server strips white space from a code, and the invisible format
// characters copying text brings along, such as a zero-width space or a
// byte order mark), reads fullwidth digits (an East Asian keyboard's) as
// digits, and reports whether what is left is a well-formed 6-digit code.
func NormalizeCode(s string) (string, bool) {
	if len(s) > 32 {
		return "", false
	}
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '-' || unicode.IsSpace(r) || unicode.Is(unicode.Cf, r):
			return -1
		case '０' <= r && r <= '９':
			return r - '０' + '0'
		}
		return r
	}, s)
	if len(s) != codeDigits {
		return s, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return s, false
		}
	}
	return s, true
}

// DecodeSecret parses a base32 OTP secret as people and token vendors
// write it: any case, optional padding, spaces and dashes allowed. It
// must hold 128 to 512 bits.
func DecodeSecret(s string) ([]byte, error) {
	cleaned := strings.ToUpper(strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' || r == '=' {
			return -1
		}
		return r
	}, s))
	raw, err := b32.DecodeString(cleaned)
	if err != nil || cleaned == "" {
		return nil, failure.Invalid("secret must be base32 (RFC 4648: letters A-Z and digits 2-7)")
	}
	if len(raw) < minSecretBytes || len(raw) > maxSecretBytes {
		return nil, failure.Invalid("secret must hold %d to %d bytes (RFC 4226 requires at least 128 bits); this one holds %d",
			minSecretBytes, maxSecretBytes, len(raw))
	}
	return raw, nil
}

// otpauthURI is the Key URI authenticator apps scan for a TOTP secret.
func (s *Service) otpauthURI(username string, raw []byte) string {
	key, err := totp.Generate(totp.GenerateOpts{Issuer: s.opts.Issuer, AccountName: username, Secret: raw,
		Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return "" // cannot happen: issuer and account name are never empty
	}
	return key.URL()
}

// NewAppSecret returns a random authenticator-app secret for username that
// is not enrolled: for an enrolment that takes effect only once the user
// has shown a code of it (ConfirmApp), by EnrolApp with the secret.
func (s *Service) NewAppSecret(username string) *Enrolment {
	raw := make([]byte, generatedSecretBytes)
	rand.Read(raw)
	return &Enrolment{Username: username, URI: s.otpauthURI(username, raw), Secret: b32.EncodeToString(raw)}
}
