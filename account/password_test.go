package account

import (
	"strings"
	"testing"
)

func TestPasswordHashAndVerify(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$") || strings.Contains(h, "correct horse") {
		t.Fatalf("unexpected hash format %q", h)
	}
	if !VerifyPassword(h, "correct horse") {
		t.Fatal("right password refused")
	}
	for _, wrong := range []string{"correct hors", "Correct horse", "", strings.Repeat("x", 2000)} {
		if VerifyPassword(h, wrong) {
			t.Fatalf("wrong password %q accepted", wrong)
		}
	}
	if VerifyPassword("", "") || VerifyPassword("$argon2id$v=19$m=1,t=1,p=1$$", "x") {
		t.Fatal("malformed hash verified")
	}
	if _, err := HashPassword("short"); err == nil {
		t.Fatal("short password accepted")
	}
}
