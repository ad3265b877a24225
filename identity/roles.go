package identity

import "strings"

// JoinedRoles is a list of roles joined with commas, the value of the
// roles header and of the {http.auth.user.roles} placeholder, made once
// for a list that is kept (a cached account's) so that the requests of
// that account reuse it instead of joining the list, with an allocation,
// each time. It remembers the list it was made of, and Identity.RolesText
// uses it only for that very list.
type JoinedRoles struct {
	of   *string // the list's first element
	n    int
	text string
}

// JoinRoles returns roles joined with commas, tied to roles (for fewer
// than two roles, no text: RolesText needs none). The caller keeps roles
// unchanged for as long as it hands the result out.
func JoinRoles(roles []string) JoinedRoles {
	if len(roles) < 2 {
		return JoinedRoles{} // RolesText needs no text made beforehand
	}
	return JoinedRoles{of: &roles[0], n: len(roles), text: strings.Join(roles, ",")}
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
	if j := id.joinedRoles; j.of == &id.Roles[0] && j.n == len(id.Roles) {
		return j.text
	}
	return strings.Join(id.Roles, ",")
}
