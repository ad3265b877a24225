package identity

import "strings"

// JoinedRoles is a list of roles joined with commas, the value of the
// roles header and of the {http.auth.user.roles} placeholder, made once
// for a list that is kept (a cached account's) so that the requests of
// that account reuse it instead of joining the list, and boxing the text
// into the placeholder's interface value, with an allocation each time.
// It remembers the list it was made of, and Identity.RolesText and
// RolesValue use it only for that very list.
type JoinedRoles struct {
	of    *string // the list's first element
	n     int
	text  string
	value any // text, boxed
}

// JoinRoles returns roles joined with commas, tied to roles (for none,
// nothing: RolesText and RolesValue need nothing made beforehand). The
// caller keeps roles unchanged for as long as it hands the result out.
func JoinRoles(roles []string) JoinedRoles {
	if len(roles) == 0 {
		return JoinedRoles{}
	}
	text := strings.Join(roles, ",")
	return JoinedRoles{of: &roles[0], n: len(roles), text: text, value: text}
}

// SetRoles sets the identity's roles, with their text when it was made
// beforehand of the same list (JoinRoles; another list's text is ignored).
func (id *Identity) SetRoles(roles []string, joined JoinedRoles) {
	id.Roles, id.joinedRoles = roles, joined
}

// RolesText is the identity's roles joined with commas: the text made
// beforehand (SetRoles) when it is of the list Roles holds, else joined
// now.
func (id *Identity) RolesText() string {
	switch len(id.Roles) {
	case 0:
		return ""
	case 1:
		return id.Roles[0]
	}
	if id.joinedRolesTied() {
		return id.joinedRoles.text
	}
	return strings.Join(id.Roles, ",")
}

// RolesValue is RolesText as an interface value, a Caddy placeholder's:
// the one boxed beforehand (SetRoles) when it is of the list Roles holds,
// else boxed now.
func (id *Identity) RolesValue() any {
	if id.joinedRolesTied() {
		return id.joinedRoles.value
	}
	return id.RolesText()
}

// joinedRolesTied reports whether the text set with the roles
// (SetRoles) was made of the list Roles holds.
func (id *Identity) joinedRolesTied() bool {
	j := id.joinedRoles
	return len(id.Roles) > 0 && j.of == &id.Roles[0] && j.n == len(id.Roles)
}

// SetUsernameValue keeps v, the account's name as an interface value
// boxed once for the account's requests (a cached account's), for
// UsernameValue to answer while the identity's Username is that name.
func (id *Identity) SetUsernameValue(v any) { id.usernameValue = v }

// UsernameValue is Username as an interface value, a Caddy placeholder's:
// the one kept (SetUsernameValue) when it holds the same name, else boxed
// now.
func (id *Identity) UsernameValue() any {
	if name, ok := id.usernameValue.(string); ok && name == id.Username {
		return id.usernameValue
	}
	return id.Username
}
