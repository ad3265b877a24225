package engine

import (
	"net/http"
	"testing"
)

func TestStripIdentityHeaders(t *testing.T) {
	h := NewIdentityHeaders("X-Gatehouse-")
	in := http.Header{
		"X-Gatehouse-User":  {"mallory"},
		"x-gatehouse-roles": {"admin"},
		"X_gatehouse_auth":  {"basic"},
		"X-GATEHOUSE_2FA":   {"true"},
		"X-Gatehouse":       {"keep: not the prefix"},
		"X-Gatehousex-User": {"keep"},
		"Accept":            {"*/*"},
	}
	h.Strip(in)
	for _, gone := range []string{"X-Gatehouse-User", "x-gatehouse-roles", "X_gatehouse_auth", "X-GATEHOUSE_2FA"} {
		if _, ok := in[gone]; ok {
			t.Errorf("%s survived", gone)
		}
	}
	for _, kept := range []string{"X-Gatehouse", "X-Gatehousex-User", "Accept"} {
		if _, ok := in[kept]; !ok {
			t.Errorf("%s was removed", kept)
		}
	}
	if h.TwoFactor != "X-Gatehouse-2FA" || h.AppKey != "X-Gatehouse-App-Key" {
		t.Fatalf("header names: %+v", h)
	}
}

func FuzzStripIdentityHeaders(f *testing.F) {
	f.Add("X-Gatehouse-User")
	f.Add("x_GATEHOUSE-roles")
	f.Add("X-Gate")
	h := NewIdentityHeaders("X-Gatehouse-")
	f.Fuzz(func(t *testing.T, name string) {
		hdr := http.Header{name: {"v"}}
		h.Strip(hdr)
		_, kept := hdr[name]
		norm := normalizeHeaderName(name)
		spoof := len(norm) >= len("x-gatehouse-") && norm[:len("x-gatehouse-")] == "x-gatehouse-"
		if kept == spoof {
			t.Fatalf("header %q: kept=%v but identity-prefixed=%v", name, kept, spoof)
		}
	})
}
