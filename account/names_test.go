package account

import (
	"strings"
	"testing"
	"unicode/utf8"
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
		{"al ice", "", false},
		{"al:ice", "", false},
		{"a,b", "", false},
		{"a/b", "", false},
		{"a\x00b", "", false},
		{"\xff", "", false},
		{strings.Repeat("a", 65), "", false},
		{strings.Repeat("é", 64), strings.Repeat("é", 64), true},
	}
	for _, c := range cases {
		got, err := NormalizeUsername(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("NormalizeUsername(%q) = %q, %v; want %q ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func FuzzNormalizeUsername(f *testing.F) {
	for _, s := range []string{"alice", "Ålice", "a:b", "用户", "", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := NormalizeUsername(in)
		if err != nil {
			return
		}
		if !utf8.ValidString(got) || got == "" || strings.ContainsAny(got, ":,/% \x00") {
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
	for _, bad := range []string{"", "a b", "ä", "a/b", strings.Repeat("x", 65)} {
		if ValidateName("role", bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
