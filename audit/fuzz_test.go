package audit

import (
	"regexp"
	"strings"
	"testing"
)

// credentialRun is what HideCredentials must leave nowhere: a prefix of a
// credential Gatehouse issues, in any ASCII case, then 20 base64url
// characters. Spelled without (?i), whose folding also matches U+212A
// (the Kelvin sign) as k, which no credential holds.
var credentialRun = regexp.MustCompile(`([gG][hH][aA][kK]_|[gG][cC][tT]_|[gG][cC][rR]_)[A-Za-z0-9_-]{20}`)

// FuzzHideCredentials: for any path or username a client sends,
// HideCredentials never panics, leaves no credential-shaped run (the
// "REDACTED" it writes is none), and changes nothing where there is none.
// Non-ASCII text around a key (U+212A folds to a shorter "k") is the case
// a case-folded copy got wrong.
func FuzzHideCredentials(f *testing.F) {
	for _, seed := range []string{
		"/api/items",
		"/x/ghak_HAsRZIMmSTUxtLR3KTH0_w5sEI-5kqtl70l27ks_kLwlZScX/y",
		"/" + strings.Repeat("\u212a", 10) + strings.Repeat("B", 20) + "ghak_" + strings.Repeat("C", 30),
		"GCT_abcdefghijklmnopqrstuvwxyz gcr_0123456789012345678901234 \xff",
		"ghak_ghak_ghak_" + strings.Repeat("a", 40),
		"gct_short_gcr_",
		"ghAk_00\u212a0000000000000000000",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := HideCredentials(s)
		if credentialRun.MatchString(got) {
			t.Fatalf("HideCredentials(%q) = %q: a credential is left", s, got)
		}
		if !credentialRun.MatchString(s) && got != s {
			t.Fatalf("HideCredentials(%q) = %q: changed what holds no credential", s, got)
		}
	})
}
