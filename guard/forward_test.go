package guard_test

import (
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/guard"
)

func TestParseForward(t *testing.T) {
	if f, err := guard.ParseForward(nil); err != nil || f != guard.ForwardAll {
		t.Fatalf("no names: %b %v; want all", f, err)
	}
	f, err := guard.ParseForward([]string{"user", "2fa", "user"})
	if err != nil || f != guard.ForwardUser|guard.ForwardTwoFactor {
		t.Fatalf("user 2fa user: %b %v", f, err)
	}
	for _, name := range guard.ForwardNames {
		if f, err := guard.ParseForward([]string{name}); err != nil || f == 0 || f&(f-1) != 0 {
			t.Fatalf("%s: %b %v; want one header", name, f, err)
		}
	}
	for _, bad := range []string{"User", "x-gatehouse-user", "", "all", "app-key"} {
		if _, err := guard.ParseForward([]string{"user", bad}); err == nil || !strings.Contains(err.Error(), "known: user, roles") {
			t.Errorf("%q accepted or unclear error: %v", bad, err)
		}
	}
}
