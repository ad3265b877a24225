package identity_test

import (
	"testing"

	"github.com/gatehouse-auth/gatehouse/identity"
)

// TestRolesTextIsTheRolesJoined: whatever was set, and however, RolesText
// is the identity's roles joined with commas; the text made beforehand is
// used, with no allocation, only for the very list it was made of.
func TestRolesTextIsTheRolesJoined(t *testing.T) {
	kept := []string{"auditor", "ops", "reader"}
	joined := identity.JoinRoles(kept)
	other := []string{"admin", "ops"}

	cases := []struct {
		name string
		set  func(id *identity.Identity)
		want string
	}{
		{"none", func(id *identity.Identity) { id.SetRoles(nil, joined) }, ""},
		{"one", func(id *identity.Identity) { id.SetRoles([]string{"reader"}, joined) }, "reader"},
		{"the list the text was made of", func(id *identity.Identity) { id.SetRoles(kept, joined) }, "auditor,ops,reader"},
		{"another list, with the first one's text", func(id *identity.Identity) { id.SetRoles(other, joined) }, "admin,ops"},
		{"an equal list elsewhere", func(id *identity.Identity) { id.SetRoles([]string{"auditor", "ops", "reader"}, joined) }, "auditor,ops,reader"},
		{"a shorter view of the list", func(id *identity.Identity) { id.SetRoles(kept[:2], joined) }, "auditor,ops"},
		{"a later view of the list", func(id *identity.Identity) { id.SetRoles(kept[1:], joined) }, "ops,reader"},
		{"set, then Roles replaced", func(id *identity.Identity) { id.SetRoles(kept, joined); id.Roles = other }, "admin,ops"},
		{"Roles alone", func(id *identity.Identity) { id.Roles = other }, "admin,ops"},
		{"no text made", func(id *identity.Identity) { id.SetRoles(kept, identity.JoinedRoles{}) }, "auditor,ops,reader"},
	}
	for _, c := range cases {
		var id identity.Identity
		c.set(&id)
		if got := id.RolesText(); got != c.want {
			t.Errorf("%s: RolesText() = %q; want %q", c.name, got, c.want)
		}
	}

	var id identity.Identity
	id.SetRoles(kept, joined)
	if n := testing.AllocsPerRun(100, func() { _ = id.RolesText() }); n != 0 {
		t.Errorf("RolesText of the list its text was made of allocates %.0f times; want none", n)
	}
}
