package console

import (
	"net/http"
	"net/url"
	"slices"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/session"
)

// sessionList is a table of one user's live sessions, each with a form
// that revokes it (the "sessions" template).
type sessionList struct {
	Sessions []adminapi.SessionView
	// Current is the viewer's own session's ID, marked in the table.
	Current string
	// Action is the URL the revoke forms post to; Username, when set, is
	// their hidden username field (the users page names whose session).
	Action, Username string
	// CSRF are the forms' hidden fields.
	CSRF formTokens
}

// sessionsOf lists the live sessions of username through the admin API,
// for forms posted to action.
func (c *Console) sessionsOf(r *http.Request, v *viewer, username, action string) (*sessionList, error) {
	l := &sessionList{Current: session.ID(v.token), Action: action, CSRF: v.tokens()}
	err := c.call(r, v, http.MethodGet, "/gatehouse/sessions?username="+url.QueryEscape(username), nil, &l.Sessions)
	return l, err
}

// revokeSession ends the session the form names, which must be one of
// username's live sessions: any other ID, another user's session among
// them, is not found (404) and nothing changes.
func revokeSession(c *Console, r *http.Request, v *viewer, username string, f form) (outcome, error) {
	l, err := c.sessionsOf(r, v, username, "")
	if err != nil {
		return outcome{}, err
	}
	id := f.get("session")
	if !slices.ContainsFunc(l.Sessions, func(s adminapi.SessionView) bool { return s.ID == id }) {
		return outcome{}, failure.NotFound("%s has no such session; it may have ended already", username)
	}
	notice := "Session ended."
	if id == l.Current {
		notice = "This session was ended; sign in again to go on."
	}
	return outcome{Notice: notice}, c.call(r, v, http.MethodDelete, "/gatehouse/sessions/"+id, nil, nil)
}
