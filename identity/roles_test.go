package identity_test

import (
	"testing"

	"github.com/gatehouse-auth/gatehouse/identity"
)

// TestRolesTextIsTheRolesJoined: whatever was set, and however, RolesText
// is the identity's roles joined with commas, and RolesValue that text as
// a string; the text made and boxed beforehand is used, with no
// allocation, only for the very list it was made of.
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
		if got := id.RolesValue(); got != c.want {
			t.Errorf("%s: RolesValue() = %#v; want the string %q", c.name, got, c.want)
		}
	}

	var id identity.Identity
	id.SetRoles(kept, joined)
	if n := testing.AllocsPerRun(100, func() { _ = id.RolesText() }); n != 0 {
		t.Errorf("RolesText of the list its text was made of allocates %.0f times; want none", n)
	}
	if n := testing.AllocsPerRun(100, func() { placeholderSink = id.RolesValue() }); n != 0 {
		t.Errorf("RolesValue of the list its text was made of allocates %.0f times; want none", n)
	}
}

// TestUsernameValueIsTheUsername: UsernameValue is the identity's
// Username as a string whatever was kept, the kept value, with no
// allocation, only while it is that name.
func TestUsernameValueIsTheUsername(t *testing.T) {
	cases := []struct {
		name, username string
		kept           any
	}{
		{"nothing kept", "alice", nil},
		{"the name kept", "alice", "alice"},
		{"another name kept", "alice", "bob"},
		{"no string kept", "alice", 7},
		{"no name", "", "alice"},
	}
	for _, c := range cases {
		id := identity.Identity{Username: c.username}
		id.SetUsernameValue(c.kept)
		if got := id.UsernameValue(); got != c.username {
			t.Errorf("%s: UsernameValue() = %#v; want the string %q", c.name, got, c.username)
		}
	}
	id := identity.Identity{Username: "ålice"}
	id.SetUsernameValue("ålice")
	if n := testing.AllocsPerRun(100, func() { placeholderSink = id.UsernameValue() }); n != 0 {
		t.Errorf("UsernameValue of the name kept allocates %.0f times; want none", n)
	}
	id.Username = string([]byte("bob")) // a name the kept value is not
	if n := testing.AllocsPerRun(100, func() { placeholderSink = id.UsernameValue() }); n != 1 {
		t.Errorf("UsernameValue of another name allocates %.0f times; want it boxed now (1)", n)
	}
}

// placeholderSink keeps what the allocation checks read, as a
// placeholder keeps it: a value no one keeps may stay off the heap.
var placeholderSink any
