package identity_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
)

// TestRefusalsSpeakTheErrorVocabulary: a refusal is of its kind for
// errors.Is, renders with the kind's status and its reason as the message,
// wrapped or not, and naming the account keeps all of it.
func TestRefusalsSpeakTheErrorVocabulary(t *testing.T) {
	cases := []struct {
		refusal *identity.Refusal
		kind    error
		status  int
	}{
		{identity.BadRequest("unclean path"), failure.ErrInvalid, 400},
		{identity.Unauthenticated("no credential"), failure.ErrUnauthenticated, 401},
		{identity.Forbidden("no role allows it"), failure.ErrForbidden, 403},
		{identity.Throttled("slow down", 2*time.Second), failure.ErrThrottled, 429},
	}
	for _, c := range cases {
		for _, err := range []error{c.refusal, c.refusal.For("alice"), fmt.Errorf("checking: %w", c.refusal)} {
			if !errors.Is(err, c.kind) || c.refusal.Kind() != c.kind {
				t.Errorf("%v: not of kind %v", err, c.kind)
			}
			if got := failure.Status(err); got != c.status {
				t.Errorf("%v: status %d, want %d", err, got, c.status)
			}
			if got := failure.Message(err); got != c.refusal.Reason() {
				t.Errorf("%v: message %q, want the reason %q", err, got, c.refusal.Reason())
			}
			if r, ok := identity.AsRefusal(err); !ok || r.Reason() != c.refusal.Reason() {
				t.Errorf("%v: AsRefusal %v %v", err, r, ok)
			}
		}
	}
	named := identity.Throttled("slow down", 2*time.Second).For("alice")
	if named.Username != "alice" || named.RetryAfter != 2*time.Second {
		t.Errorf("For: %+v, want the username and the retry delay", named)
	}
	if got := identity.Forbidden("the account is blocked").Error(); got != "forbidden: the account is blocked" {
		t.Errorf("Error() = %q", got)
	}
}
