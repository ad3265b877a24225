package account

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"

	"github.com/gatehouse-auth/gatehouse/failure"
)

// MaxUsernameLength is the longest username accepted, in characters.
const MaxUsernameLength = 64

// NormalizeUsername validates a username and returns its canonical form:
// PRECIS UsernameCaseMapped (RFC 8265: Unicode NFC, width-mapped, lower
// case), so "Ålice" and "ålice" name the same account. Characters that
// carry meaning elsewhere are refused: ':' (HTTP Basic), ',' (the roles
// header), '/' (admin API paths) and '%', and so are names made of dots
// only ("." and ".." are path segments: no admin URL could name them).
func NormalizeUsername(name string) (string, error) {
	if name == "" {
		return "", failure.Invalid("username is empty")
	}
	if !utf8.ValidString(name) {
		return "", failure.Invalid("username is not valid UTF-8")
	}
	canonical, err := precis.UsernameCaseMapped.String(name)
	if err != nil {
		return "", failure.Invalid("username %q is not allowed: letters, digits and ordinary punctuation only, no spaces", name)
	}
	if n := utf8.RuneCountInString(canonical); n > MaxUsernameLength {
		return "", failure.Invalid("username is %d characters long; the limit is %d", n, MaxUsernameLength)
	}
	if strings.ContainsAny(canonical, ":,/%") {
		return "", failure.Invalid("username %q must not contain ':', ',', '/' or '%%'", name)
	}
	if strings.Trim(canonical, ".") == "" {
		return "", failure.Invalid("username %q is made of dots only; it needs at least one other character", name)
	}
	return canonical, nil
}

// ValidateName checks an object name (role, app key, connector, API
// credential): 1 to 64 characters from letters, digits, '-', '_' and '.',
// not dots only (no admin URL could name "." or "..": paths are cleaned).
func ValidateName(kind, name string) error {
	if name == "" || len(name) > 64 {
		return failure.Invalid("%s name must be 1 to 64 characters", kind)
	}
	if strings.Trim(name, ".") == "" {
		return failure.Invalid("%s name %q is made of dots only; it needs at least one other character", kind, name)
	}
	for _, r := range name {
		if r > unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_' || r == '.') {
			return failure.Invalid("%s name %q may only hold ASCII letters, digits, '-', '_' and '.'", kind, name)
		}
	}
	return nil
}
