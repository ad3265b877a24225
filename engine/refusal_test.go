package engine

import (
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
)

// TestRefusalCodes: each refusal kind is answered with the status and the
// "error" code docs/clients.md names.
func TestRefusalCodes(t *testing.T) {
	for _, c := range []struct {
		refusal *identity.Refusal
		status  int
		code    string
	}{
		{identity.BadRequest("x"), 400, "bad_request"},
		{identity.Unauthenticated("x"), 401, "unauthenticated"},
		{identity.Forbidden("x"), 403, "forbidden"},
		{identity.Throttled("x", time.Second), 429, "throttled"},
	} {
		if status, code := failure.Status(c.refusal), refusalCode(c.refusal); status != c.status || code != c.code {
			t.Errorf("%v: %d %q, want %d %q", c.refusal, status, code, c.status, c.code)
		}
	}
}
