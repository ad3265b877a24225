package caddymodule

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestForwardOption(t *testing.T) {
	var h Handler
	d := caddyfile.NewTestDispenser(`gatehouse {
		accept basic
		forward user auth
		forward assertion
	}`)
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(h.Forward, []string{"user", "auth", "assertion"}) {
		t.Fatalf("forward = %q", h.Forward)
	}
	raw, _ := json.Marshal(&h)
	if !strings.Contains(string(raw), `"forward":["user","auth","assertion"]`) {
		t.Fatalf("JSON: %s", raw)
	}
	for _, bad := range []string{"forward", "forward user bogus"} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n" + bad + "\n}"))
		if err == nil {
			t.Errorf("%q accepted", bad)
		}
		if strings.Contains(bad, "bogus") && (err == nil || !strings.Contains(err.Error(), `"bogus"`)) {
			t.Errorf("%q: error does not name the bad header: %v", bad, err)
		}
	}
}
