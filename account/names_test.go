package account

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gatehouse-auth/gatehouse/directory"
	"github.com/gatehouse-auth/gatehouse/failure"
)

func TestNormalizeUsername(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"alice", "alice", true},
		{"Alice", "alice", true},
		{"ÅLICE", "ålice", true},
		{"A\u030ALICE", "ålice", true}, // decomposed Å: NFC makes it the same account
		{"josé.garcía", "josé.garcía", true},
		{"用户", "用户", true},
		{"", "", false},
		{"al ice", "al ice", true}, // Active Directory allows spaces in sAMAccountName
		{"John Smith", "john smith", true},
		{"ＪＯＨＮ Ｓｍｉｔｈ", "john smith", true}, // fullwidth: width-mapped, part by part
		{"josé garcía lópez", "josé garcía lópez", true},
		{" alice", "", false},
		{"alice ", "", false},
		{"al  ice", "", false},
		{"al\tice", "", false},
		{"al\u00a0ice", "", false}, // no-break space
		{"al\u3000ice", "", false}, // ideographic space
		{" ", "", false},
		{"1 א", "", false}, // right-to-left: the whole name keeps the Bidi Rule, or "א 1" would display alike
		{"א 1", "א 1", true},
		{"a b:c", "", false},
		{"al:ice", "", false},
		{"a,b", "", false},
		{"a/b", "", false},
		{"a\x00b", "", false},
		{"\xff", "", false},
		{strings.Repeat("a", 65), "", false},
		{strings.Repeat("é", 64), strings.Repeat("é", 64), true},
		{".", "", false},
		{"..", "", false},
		{"...", "", false},
		{"\uff0e\uff0e", "", false}, // fullwidth dots
		{".alice.", ".alice.", true},
		{"a..b", "a..b", true},
	}
	for _, c := range cases {
		got, err := NormalizeUsername(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("NormalizeUsername(%q) = %q, %v; want %q ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func FuzzNormalizeUsername(f *testing.F) {
	for _, s := range []string{"alice", "Ålice", "a:b", "用户", "", "\xff\xfe", "..", "\uff0e", "John Smith", "a  b", " a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := NormalizeUsername(in)
		if err != nil {
			return
		}
		if !utf8.ValidString(got) || strings.Trim(got, ".") == "" || strings.ContainsAny(got, ":,/%\t\n\r\x00") ||
			strings.HasPrefix(got, " ") || strings.HasSuffix(got, " ") || strings.Contains(got, "  ") {
			t.Fatalf("accepted unsafe username %q -> %q", in, got)
		}
		again, err := NormalizeUsername(got)
		if err != nil || again != got {
			t.Fatalf("normalisation not idempotent: %q -> %q -> %q (%v)", in, got, again, err)
		}
	})
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"admin", "read-only", "v1.2_x"} {
		if err := ValidateName("role", ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a b", "ä", "a/b", strings.Repeat("x", 65), ".", "..", "...."} {
		if ValidateName("role", bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestDotOnlyUsernames: "." and ".." cannot be created (no admin URL could
// name them: the path is cleaned first), and asking for them is a plain
// 404 or refusal.
func TestDotOnlyUsernames(t *testing.T) {
	ctx := context.Background()
	s := newTestService(t)
	for _, name := range []string{".", "..", "..."} {
		_, err := s.CreateUser(ctx, NewUser{Username: name})
		if failure.Status(err) != 400 || !strings.Contains(failure.Message(err), "dots only") {
			t.Errorf("creating %q: %v (status %d); want 400 saying dots only", name, err, failure.Status(err))
		}
		if _, err := s.User(ctx, name); failure.Status(err) != 404 {
			t.Errorf("looking up %q: %v; want 404", name, err)
		}
		if res, err := s.SignIn(ctx, name, "whatever password", gate(GateOpen)); err != nil || res.Outcome != OutcomeWrong {
			t.Errorf("sign-in as %q: %+v, %v; want a wrong password", name, res, err)
		}
	}
}

func TestAccountName(t *testing.T) {
	domains := []string{"CORP", "corp.example.com"}
	for in, want := range map[string]string{
		`CORP\alice`:                "alice",
		`corp\Alice`:                "Alice",
		`alice@corp.example.com`:    "alice",
		`alice@CORP.Example.COM`:    "alice",
		`alice@corp`:                "alice",
		`OTHER\alice`:               `OTHER\alice`,
		`alice@other.example.com`:   "alice@other.example.com",
		`CORP\`:                     `CORP\`,
		`\alice`:                    `\alice`,
		`@corp.example.com`:         "@corp.example.com",
		`alice@`:                    "alice@",
		`a@b@corp.example.com`:      "a@b",
		`CORP\bob@corp.example.com`: "bob@corp.example.com",
		"alice":                     "alice",
	} {
		if got := AccountName(in, domains); got != want {
			t.Errorf("AccountName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := AccountName(`CORP\alice`, nil); got != `CORP\alice` {
		t.Errorf("without a configured domain: %q", got)
	}
}

// TestStripDomain: a name that names the domain twice is refused, so
// that no reader of it takes it for the account another reader refuses,
// and no account is created under a name no sign-in reaches.
func TestStripDomain(t *testing.T) {
	domains := []string{"CORP", "corp.example.com"}
	for in, want := range map[string]string{
		`CORP\alice`:                       "alice",
		"alice@corp.example.com":           "alice",
		`OTHER\alice`:                      `OTHER\alice`,
		"a@b@corp.example.com":             "a@b",
		`CORP\CORP\alice`:                  "",
		`CORP\alice@corp.example.com`:      "",
		"alice@corp.example.com@corp":      "",
		`corp.example.com\alice@CORP`:      "",
		`CORP\OTHER\alice`:                 `OTHER\alice`,
		"alice@corp.example.com@other.com": "alice@corp.example.com@other.com",
	} {
		got, err := StripDomain(in, domains)
		if want == "" {
			if err == nil {
				t.Errorf("StripDomain(%q) = %q; want it refused", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("StripDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// FuzzAccountName: the account name is never empty for a non-empty name,
// and is the name itself or a part of it that holds no domain separator
// added by the client; what StripDomain lets through is read the same
// again (a second reader takes it for the same account).
func FuzzAccountName(f *testing.F) {
	for _, s := range []string{`CORP\alice`, "alice@corp.example.com", `\`, "@", `CORP\@corp`, "", `CORP\CORP\alice`} {
		f.Add(s)
	}
	domains := []string{"CORP", "corp.example.com"}
	f.Fuzz(func(t *testing.T, name string) {
		got := AccountName(name, domains)
		if name != "" && got == "" {
			t.Fatalf("AccountName(%q) is empty", name)
		}
		if got != name && !strings.HasPrefix(name, got) && !strings.HasSuffix(name, got) {
			t.Fatalf("AccountName(%q) = %q is not a part of it", name, got)
		}
		if plain, err := StripDomain(name, domains); err == nil && AccountName(plain, domains) != plain {
			t.Fatalf("StripDomain(%q) = %q, which names the domain again", name, plain)
		}
	})
}

// TestCanonicalNameRecognisesTheDomainInAnySpelling: with a directory,
// the domain of EXAMPLE\alice and alice@example.test is recognised after
// the name is normalised, so full-width spellings name alice too (not an
// account "alice@example.test" of their own); a name too long to
// normalise with its domain still maps as typed.
func TestCanonicalNameRecognisesTheDomainInAnySpelling(t *testing.T) {
	d, err := directory.New(directory.Config{URLs: []string{"ldap://127.0.0.1:1"}, Flavor: directory.OpenLDAP,
		BindDN: "cn=svc,dc=example,dc=test", BindPassword: "x", BaseDN: "dc=example,dc=test"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s := &Service{}
	s.SetDirectory(d)
	long := strings.Repeat("a", 60)
	for typed, want := range map[string]string{
		"alice": "alice", `EXAMPLE\alice`: "alice", "alice@example.test": "alice", "Alice@Example.Test": "alice",
		"alice@ＥＸＡＭＰＬＥ.test": "alice", `ＥＸＡＭＰＬＥ\Alice`: "alice", "alice@other.test": "alice@other.test",
		long + "@example.test": long,
	} {
		if got, err := s.canonicalName(typed); err != nil || got != want {
			t.Errorf("canonicalName(%q) = %q, %v; want %q", typed, got, err, want)
		}
	}
}

// TestPlusAndSpaceTwinsAreRefused: "john smith" and "john+smith" cannot
// both be accounts: a client that writes a space as '+' in a URL path
// (.NET's HttpUtility.UrlEncode) would reach the one meaning the other (an
// outside review read john+smith's profile asking for John Smith's).
func TestPlusAndSpaceTwinsAreRefused(t *testing.T) {
	s := newTestService(t)
	ctx := context.Background()
	for _, c := range []struct{ first, twin string }{{"john smith", "John+Smith"}, {"ann+lee", "ann lee"},
		{"a b+c", "a+b+c"}, {"d+e+f", "d e+f"}, {"g+h+i+j", "g h i j"}} {
		if _, err := s.CreateUser(ctx, NewUser{Username: c.first}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateUser(ctx, NewUser{Username: c.twin}); failure.Status(err) != 409 {
			t.Errorf("%q beside %q: %v; want 409", c.twin, c.first, err)
		}
	}
	// A name without a space with more '+' signs than plusSpaceTwin
	// looks through the spaced variants of is refused, whether or not a
	// twin exists ("m n+o+…" made first would be its twin); with a space,
	// or with maxPlusSigns signs, it is checked and allowed.
	many := strings.Repeat("p+", maxPlusSigns+1) + "q"
	if _, err := s.CreateUser(ctx, NewUser{Username: many}); failure.Status(err) != 400 || !strings.Contains(err.Error(), "'+' signs") {
		t.Errorf("%q: %v; want 400 naming the '+' signs", many, err)
	}
	for _, name := range []string{strings.Repeat("r+", maxPlusSigns) + "s", "t " + strings.Repeat("u+", maxPlusSigns+1) + "v"} {
		if _, err := s.CreateUser(ctx, NewUser{Username: name}); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	twin := strings.Replace(strings.Repeat("w+", maxPlusSigns+1)+"x", "+", " ", 1)
	if _, err := s.CreateUser(ctx, NewUser{Username: twin}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, NewUser{Username: strings.Replace(twin, " ", "+", 1)}); failure.Status(err) != 400 {
		t.Errorf("the twin of %q with %d '+' signs: %v; want refused", twin, maxPlusSigns+1, err)
	}
	if _, err := s.directoryRecord(ctx, many, directory.Entry{DN: "uid=" + many}); !isTwinError(err) || failure.Status(err) != 400 {
		t.Errorf("a directory account named %q: %v; want its record refused with the reason", many, err)
	}
	// Names alike once spaces are '+' but both with a space reach neither
	// through such a client (it sends "k+l+m", which is neither's).
	for _, name := range []string{"john smith2", "k l+m", "k+l m"} {
		if _, err := s.CreateUser(ctx, NewUser{Username: name}); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
}

// TestMixedScriptNamesAreRefused: a new local account cannot mix letters
// of scripts that are not written together, so that it cannot pass for
// another account ("аlice", Cyrillic "а"); names of one script, and
// Latin with the scripts of Chinese, Japanese or Korean, are created.
func TestMixedScriptNamesAreRefused(t *testing.T) {
	s := newTestService(t)
	ctx := context.Background()
	for _, name := range []string{"\u0430lice", "p\u0430ypal", "adm\u0456n", "\u03bfscar", "bob\u10d0", "ab\u0e01"} {
		if _, err := s.CreateUser(ctx, NewUser{Username: name}); failure.Status(err) != 400 || !strings.Contains(err.Error(), "mixes the scripts") {
			t.Errorf("%q: %v; want 400 naming the mixed scripts", name, err)
		} else if _, err := s.User(ctx, name); failure.Status(err) != 404 {
			t.Errorf("%q refused but stored: %v", name, err)
		}
	}
	for _, name := range []string{"alice", "josé.garcía", "\u0430\u043b\u0438\u0441\u0430", "\u03bf\u03c3\u03ba\u03b1\u03c1", "用户", "tanaka田中たなかタナカ",
		"kim김", "li李ㄌ", "user-1_2.3", "john smith", "a\u0301b", "ß"} {
		if _, err := s.CreateUser(ctx, NewUser{Username: name}); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
}

// TestLookalikeNamesAreRefused: a new local account with a letter
// outside ASCII cannot look like an existing one (all Cyrillic "асе"
// beside "ace", which the mixed-script rule lets through; all-Greek
// "ραγρα" beside all-Cyrillic "раура"); honest pairs ("josé" beside
// "jose") and ASCII names are created without a look ("amie" beside
// "arnie", and an ASCII name beside its non-ASCII lookalike: the check
// reads every name, and an import of ASCII names must not pay that
// each); nothing is stored for a refused name.
func TestLookalikeNamesAreRefused(t *testing.T) {
	s := newTestService(t)
	ctx := context.Background()
	cyrillicAce, cyrillicPaypa, greekPaypa := "\u0430\u0441\u0435", "\u0440\u0430\u0443\u0440\u0430", "\u03c1\u03b1\u03b3\u03c1\u03b1"
	for _, first := range []string{"ace", cyrillicPaypa, "amie", "user1", "jose"} {
		if _, err := s.CreateUser(ctx, NewUser{Username: first}); err != nil {
			t.Fatalf("%q: %v", first, err)
		}
	}
	for name, existing := range map[string]string{cyrillicAce: "ace", greekPaypa: cyrillicPaypa} {
		_, err := s.CreateUser(ctx, NewUser{Username: name})
		if failure.Status(err) != 409 || !strings.Contains(err.Error(), fmt.Sprintf("user %q exists", existing)) {
			t.Errorf("%q beside %q: %v; want 409 naming %q", name, existing, err, existing)
		} else if _, err := s.User(ctx, name); failure.Status(err) != 404 {
			t.Errorf("%q refused but stored: %v", name, err)
		}
	}
	for _, name := range []string{"arnie", "userl", "josé", "ac\u00e9", "paypa"} {
		if _, err := s.CreateUser(ctx, NewUser{Username: name}); err != nil {
			t.Errorf("%q: %v; want it created", name, err)
		}
	}
}
