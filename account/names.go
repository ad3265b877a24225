package account

import (
	"context"
	"errors"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mtibben/confusables"
	"golang.org/x/text/secure/precis"

	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// MaxUsernameLength is the longest username accepted, in characters.
const MaxUsernameLength = 64

// NormalizeUsername validates a username and returns its canonical form:
// PRECIS UsernameCaseMapped (RFC 8265: Unicode NFC, width-mapped, lower
// case), so "Ålice" and "ålice" name the same account; a name of several
// parts separated by single spaces (Active Directory allows
// "John Smith" as a sAMAccountName) has each part so (RFC 8265 §3.5's
// space-separated userparts). Characters that carry meaning elsewhere are
// refused: ':' (HTTP Basic), ',' (the roles header), '/' (admin API
// paths) and '%', and so are names made of dots only ("." and ".." are
// path segments: no admin URL could name them) and spaces other than one
// between two parts.
func NormalizeUsername(name string) (string, error) {
	if name == "" {
		return "", failure.Invalid("username is empty")
	}
	if !utf8.ValidString(name) {
		return "", failure.Invalid("username is not valid UTF-8")
	}
	canonical, err := precis.UsernameCaseMapped.String(name)
	if err != nil {
		canonical, err = spaceSeparated(name)
	}
	if err != nil {
		return "", failure.Invalid("username %q is not allowed: letters, digits and ordinary punctuation only, and single spaces between parts", name)
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

// spaceSeparated is the canonical form of a name of userparts separated by
// single ASCII spaces (RFC 8265 §3.5), each part PRECIS UsernameCaseMapped;
// an error for a leading, trailing or doubled space, or a part refused.
func spaceSeparated(name string) (string, error) {
	parts := strings.Split(name, " ")
	if len(parts) < 2 {
		return "", errNotSpaceSeparated
	}
	for i, part := range parts {
		canonical, err := precis.UsernameCaseMapped.String(part)
		if part == "" || err != nil {
			return "", errNotSpaceSeparated
		}
		parts[i] = canonical
	}
	// The parts together must pass too: the Bidi Rule, checked part by
	// part, would let "1 א" and "א 1" be two accounts that display alike.
	if _, err := precis.UsernameCaseMapped.String(strings.Join(parts, "")); err != nil {
		return "", errNotSpaceSeparated
	}
	return strings.Join(parts, " "), nil
}

// errNotSpaceSeparated: the name is no sequence of allowed userparts.
var errNotSpaceSeparated = errors.New("not space-separated userparts")

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

// AccountName returns the account name that a username written as a
// Windows or directory client writes it names: `DOMAIN\user` (the
// down-level logon name, as ESA clients send sAMAccountNames) and
// `user@domain` (the user principal name) both name `user` when the domain
// part is one of domains, the names (NetBIOS and DNS, compared in any case)
// of the domain whose accounts Gatehouse's accounts are. Any other name is
// returned unchanged, a foreign domain's included: `OTHER\alice` is not
// this domain's alice. The result still needs NormalizeUsername.
func AccountName(name string, domains []string) string {
	if domain, user, ok := strings.Cut(name, `\`); ok && user != "" && isDomain(domain, domains) {
		return user
	}
	if at := strings.LastIndexByte(name, '@'); at > 0 && isDomain(name[at+1:], domains) {
		return name[:at]
	}
	return name
}

// StripDomain is AccountName, refusing a name that names one of domains
// twice (`EXAMPLE\EXAMPLE\alice`, `EXAMPLE\alice@example.test`): read
// once, it would name an account `example\alice` that no sign-in reaches,
// since every sign-in reads that name as alice; read twice, a second
// reader of the name (the ESA API's default domain, then the directory's)
// would take it for alice where the others refuse it.
func StripDomain(name string, domains []string) (string, error) {
	plain := AccountName(name, domains)
	if plain != name && AccountName(plain, domains) != plain {
		return "", failure.Invalid("username %q names its domain twice; write it with its domain once, or without", name)
	}
	return plain, nil
}

// isDomain reports whether name is one of domains, in any case.
func isDomain(name string, domains []string) bool {
	for _, d := range domains {
		if name != "" && strings.EqualFold(name, d) {
			return true
		}
	}
	return false
}

// scriptMixes are the scripts a new local username may mix (Unicode
// TS #39 §5.2, "highly restrictive"): Latin with the scripts Chinese,
// Japanese and Korean are written in together with it. Characters of no
// one script (digits, punctuation: Common; combining marks: Inherited)
// mix with any.
var scriptMixes = [][]string{
	{"Latin", "Han", "Hiragana", "Katakana"},
	{"Latin", "Han", "Bopomofo"},
	{"Latin", "Han", "Hangul"},
}

// refuseMixedScripts is a 400 for a new local account's name (in
// canonical form) whose letters come from scripts that are not written
// together (scriptMixes): "аlice" with a Cyrillic "а" beside alice, which
// an administrator reading the audit log or an upstream's screen could
// not tell apart. A name of one script, any script, is allowed; names
// already made and directory accounts' names are not checked (the
// directory's administrators name those).
func refuseMixedScripts(name string) error {
	var scripts []string
	for _, r := range name {
		if unicode.In(r, unicode.Common, unicode.Inherited) {
			continue
		}
		if s := scriptOf(r); !slices.Contains(scripts, s) {
			scripts = append(scripts, s)
		}
	}
	if len(scripts) < 2 {
		return nil
	}
	for _, mix := range scriptMixes {
		if !slices.ContainsFunc(scripts, func(s string) bool { return !slices.Contains(mix, s) }) {
			return nil
		}
	}
	slices.Sort(scripts)
	return failure.Invalid("username %q mixes the scripts %s: letters of one script (Latin with Chinese, Japanese or Korean is allowed) keep it from looking like another account's name; choose another name", name, strings.Join(scripts, ", "))
}

// scriptOf is the name of r's Unicode script, "Unknown" for none.
func scriptOf(r rune) string {
	for name, table := range unicode.Scripts {
		if unicode.Is(table, r) {
			return name
		}
	}
	return "Unknown"
}

// refuseLookalike is a 409 for a new local account's name (in canonical
// form) with a letter outside ASCII that looks like an existing
// account's: the two have the same skeleton (Unicode TS #39 §4,
// confusables.txt) — "асе" (all Cyrillic, which refuseMixedScripts lets
// through) beside "ace", "іvаn" beside "ivan". Every account's name is
// read from the store's keys alone (storage.ScanKeys), directory
// accounts' included: 14–29 ms at 50 000 accounts on Badger, 0.1–0.4 s
// on Redis. An ASCII name is not checked, so that creating accounts by
// the thousand (an import) costs no scan each: it is not compared with an
// ASCII name (the skeleton takes "rn" for "m" and "1" for "l", and
// "arnie" and "amie" are different people), and an ASCII name made after
// its non-ASCII lookalike is not refused — the lookalike made second,
// the usual way to pass for someone, is.
func (s *Service) refuseLookalike(ctx context.Context, name string) error {
	if utf8.RuneCountInString(name) == len(name) { // ASCII only (name is valid UTF-8)
		return nil
	}
	skeleton := confusables.Skeleton(name)
	var lookalike string
	err := storage.ScanKeys(ctx, s.store, userPrefix, func(key string) error {
		other := key[len(userPrefix):]
		if other == name || confusables.Skeleton(other) != skeleton {
			return nil
		}
		lookalike = other
		return storage.ErrStopScan
	})
	switch {
	case err != nil:
		return err
	case lookalike != "":
		return failure.Conflict("user %q exists, and %q looks like it (Unicode's confusable characters): no account may pass for another in the audit log, the console or an upstream; choose another name", lookalike, name)
	}
	return nil
}

// refusePlusSpaceTwin is a 409 when an account exists that clients
// writing a space as '+' in a URL path (.NET's HttpUtility.UrlEncode,
// Python's quote_plus, which write a '+' as %2B) confuse with name
// (plusSpaceTwin): through the admin API's and the ESA API's paths they
// would reach the one when they mean the other.
func (s *Service) refusePlusSpaceTwin(ctx context.Context, name string) error {
	switch twin, err := s.plusSpaceTwin(ctx, name); {
	case err != nil:
		return err
	case twin != "":
		return failure.Conflict("user %q exists, and clients that write a space as '+' in URLs would take %q for it; choose another name", twin, name)
	}
	return nil
}

// maxPlusSigns bounds the '+' signs of a name without a space, all of
// whose spaced variants plusSpaceTwin looks for (2^maxPlusSigns names, in
// one read). A name with more cannot be checked so and is refused
// (errManyPlusSigns); a name with a space is checked against one name
// however many it has.
const maxPlusSigns = 10

// errManyPlusSigns refuses a new account whose name, without a space, has
// more than maxPlusSigns '+' signs: whether another account is its
// '+'/space twin is not looked for, so the name is not allowed.
var errManyPlusSigns = failure.Invalid("a username without a space may have at most %d '+' signs", maxPlusSigns)

// errTwinFound ends plusSpaceTwin's read at the first twin.
var errTwinFound = errors.New("twin found")

// plusSpaceTwin is the name of an account that clients writing a space as
// '+' confuse with name, "" when there is none. Such clients send every
// name of a class — the names that are alike once each space is written
// as '+' — as the one of the class without a space ("a b+c" and "a+b c"
// both as "a+b+c"), so the twins that matter are that one and the others:
// for a name with a space, the name with every space a '+'; for one
// without, the names with some of its '+' signs spaces — more than
// maxPlusSigns of them are errManyPlusSigns.
func (s *Service) plusSpaceTwin(ctx context.Context, name string) (string, error) {
	var candidates []string
	switch {
	case strings.Contains(name, " "):
		candidates = []string{strings.ReplaceAll(name, " ", "+")}
	case strings.Count(name, "+") > maxPlusSigns:
		return "", errManyPlusSigns
	default:
		candidates = spacedVariants(name)
	}
	var keys []string
	for _, c := range candidates {
		if canonical, err := NormalizeUsername(c); err == nil && canonical != name { // else no account can have it
			keys = append(keys, userPrefix+canonical)
		}
	}
	if len(keys) == 0 {
		return "", nil
	}
	var twin string
	err := s.store.GetMany(ctx, keys, func(i int, _ []byte) error {
		twin = strings.TrimPrefix(keys[i], userPrefix)
		return errTwinFound
	})
	if err != nil && !errors.Is(err, errTwinFound) {
		return "", err
	}
	return twin, nil
}

// spacedVariants are the names made of name (which has no space) with one
// or more of its '+' signs written as spaces.
func spacedVariants(name string) []string {
	var plus []int
	for i := range len(name) {
		if name[i] == '+' {
			plus = append(plus, i)
		}
	}
	variant := func(spaced func(k int) bool) string {
		b := []byte(name)
		for k, i := range plus {
			if spaced(k) {
				b[i] = ' '
			}
		}
		return string(b)
	}
	var out []string
	for set := 1; set < 1<<len(plus); set++ {
		out = append(out, variant(func(k int) bool { return set&(1<<k) != 0 }))
	}
	return out
}

// twinError refuses a Gatehouse record to a directory account that
// clients writing a space as '+' confuse with another (plusSpaceTwin), as
// CreateUser refuses a local one (refusePlusSpaceTwin): a 409 for the
// admin API, and a sign-in refused with its reason (SignIn).
type twinError struct{ err error }

func (e twinError) Error() string { return e.err.Error() }
func (e twinError) Unwrap() error { return e.err }

// isTwinError reports whether err is a twinError.
func isTwinError(err error) bool {
	var t twinError
	return errors.As(err, &t)
}
