package adminapi

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/failure"
)

// Core serves the users, sessions, roles and audit endpoints, and "would
// this request be allowed?".
type Core struct {
	engine *engine.Engine
	// sites are the routes of the config that require roles.
	sites []Site
}

// NewCore returns the core admin endpoints of e; sites are the routes of
// the config that require roles (require_role), which
// GET /gatehouse/users/{username}/allowed answers for.
func NewCore(e *engine.Engine, sites ...Site) *Core { return &Core{engine: e, sites: sites} }

// AdminRoutes implements Provider.
func (c *Core) AdminRoutes() []Route {
	return []Route{
		{Pattern: "POST /gatehouse/users", Handle: c.createUser, Body: true},
		{Pattern: "GET /gatehouse/users", Handle: c.listUsers, Query: append([]string{"prefix", "role"}, PageQuery...)},
		{Pattern: "GET /gatehouse/users/{username}", Handle: c.getUser},
		{Pattern: "PATCH /gatehouse/users/{username}", Handle: c.patchUser, Body: true},
		{Pattern: "DELETE /gatehouse/users/{username}", Handle: c.deleteUser},
		{Pattern: "DELETE /gatehouse/users/{username}/sessions", Handle: c.endSessions},
		{Pattern: "GET /gatehouse/users/{username}/allowed", Handle: c.allowed, Query: []string{"method", "path", "site"}},
		{Pattern: "GET /gatehouse/sites", Handle: c.listSites},
		{Pattern: "GET /gatehouse/sessions", Handle: c.listSessions, Query: []string{"username"}},
		{Pattern: "DELETE /gatehouse/sessions/{id}", Handle: c.endSession},
		{Pattern: "PUT /gatehouse/roles/{name}", Handle: c.putRole, Body: true},
		{Pattern: "GET /gatehouse/roles", Handle: c.listRoles},
		{Pattern: "GET /gatehouse/roles/{name}", Handle: c.getRole},
		{Pattern: "DELETE /gatehouse/roles/{name}", Handle: c.deleteRole},
		{Pattern: auditQueryPattern, Handle: c.queryAudit, Query: []string{"username", "kind", "outcome", "since", "until", "limit"}},
		{Pattern: "POST /gatehouse/directory/refresh/{username}", Handle: c.refreshDirectoryUser},
	}
}

func (c *Core) createUser(w http.ResponseWriter, r *http.Request) error {
	var in account.NewUser
	if err := DecodeJSON(r, &in); err != nil {
		return err
	}
	u, err := c.engine.Accounts.CreateUser(r.Context(), in)
	if err != nil {
		return err
	}
	Note(r, u.Username, "user created with roles ["+strings.Join(u.Roles, ", ")+"]")
	return WriteJSON(w, http.StatusCreated, u.View())
}

// listUsers answers the users in name order: every one, or with
// ?prefix= those whose name starts with it (read as a username is, so
// that User- finds user-…), with ?role= those holding the role, and with
// ?limit= a page of them, the next page offered in a Link header
// (?after= the last name of this one; ReadPage).
func (c *Core) listUsers(w http.ResponseWriter, r *http.Request) error {
	page, err := ReadPage(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	query := account.UserQuery{Prefix: usernamePrefix(q.Get("prefix")), Role: q.Get("role"), After: page.After, Limit: page.Limit}
	users, more, err := c.engine.Accounts.UsersPage(r.Context(), query)
	if err != nil {
		return err
	}
	views := make([]account.UserView, 0, len(users))
	for _, u := range users {
		views = append(views, u.View())
	}
	if more {
		SetNext(w, r, users[len(users)-1].Username)
	}
	return WriteJSON(w, http.StatusOK, views)
}

// usernamePrefix is the start of a username as names are kept
// (account.NormalizeUsername); a part it refuses (one ending in a space)
// is lower-cased instead, which finds what it can.
func usernamePrefix(p string) string {
	if p == "" {
		return ""
	}
	if name, err := account.NormalizeUsername(p); err == nil {
		return name
	}
	return strings.ToLower(p)
}

func (c *Core) getUser(w http.ResponseWriter, r *http.Request) error {
	u, err := PathUser(r, c.engine.Accounts)
	if err != nil {
		return err
	}
	return c.writeUser(w, r, u)
}

// writeUser answers u's view, with a directory account's cached
// directory status.
func (c *Core) writeUser(w http.ResponseWriter, r *http.Request, u *account.User) error {
	view := u.View()
	dir, err := c.engine.Accounts.DirectoryStatus(r.Context(), u)
	if err != nil {
		return err
	}
	view.Directory = dir
	return WriteJSON(w, http.StatusOK, view)
}

// refreshDirectoryUser drops the cached directory status of a directory
// account: it is read from the directory at once, and answered; every
// other instance sharing the store reads it again at its next use.
func (c *Core) refreshDirectoryUser(w http.ResponseWriter, r *http.Request) error {
	dir := c.engine.Accounts.Directory()
	if dir == nil {
		return failure.NotFound("no directory is configured (gatehouse { directory ldap { … } })")
	}
	u, err := PathUser(r, c.engine.Accounts)
	if err != nil {
		return err
	}
	if !u.FromDirectory() {
		return failure.Conflict("%q is a local account, not a directory one", u.Username)
	}
	if err := c.engine.Accounts.RefreshDirectoryAccount(r.Context(), u); err != nil {
		return err
	}
	Note(r, u.Username, "directory status refreshed")
	if u, err = c.engine.Accounts.User(r.Context(), u.Username); err != nil { // with what the directory now says
		return err
	}
	return c.writeUser(w, r, u)
}

func (c *Core) patchUser(w http.ResponseWriter, r *http.Request) error {
	var patch account.UserPatch
	if err := DecodeJSON(r, &patch); err != nil {
		return err
	}
	if patch == (account.UserPatch{}) {
		// {} or only nulls: nothing to change, which a caller that sent it
		// did not mean.
		return failure.Invalid("give at least one of roles, status, password, mobile_number (null is no value)")
	}
	u, err := c.engine.Accounts.UpdateUser(r.Context(), r.PathValue("username"), patch)
	if err != nil {
		return err
	}
	Note(r, u.Username, "changed: "+patchSummary(patch, u))
	return WriteJSON(w, http.StatusOK, u.View())
}

// patchSummary names what patch changed in u: roles and status with their
// new values, the password and mobile number by name only.
func patchSummary(patch account.UserPatch, u *account.User) string {
	var parts []string
	if patch.Roles != nil {
		parts = append(parts, "roles ["+strings.Join(u.Roles, ", ")+"]")
	}
	if patch.Status != nil {
		parts = append(parts, "status "+string(u.Status))
	}
	switch {
	case patch.Password != nil && *patch.Password == "":
		parts = append(parts, "password removed")
	case patch.Password != nil:
		parts = append(parts, "password")
	}
	if patch.MobileNumber != nil {
		parts = append(parts, "mobile_number")
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

func (c *Core) deleteUser(w http.ResponseWriter, r *http.Request) error {
	if err := c.engine.Accounts.DeleteUser(r.Context(), r.PathValue("username")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// endSessions ends every session of the user and answers the user.
func (c *Core) endSessions(w http.ResponseWriter, r *http.Request) error {
	u, err := c.engine.Accounts.EndSessions(r.Context(), r.PathValue("username"))
	if err != nil {
		return err
	}
	Note(r, u.Username, "sessions ended")
	return WriteJSON(w, http.StatusOK, u.View())
}

func (c *Core) putRole(w http.ResponseWriter, r *http.Request) error {
	var role account.Role
	if err := DecodeJSON(r, &role); err != nil {
		return err
	}
	if role.Name != "" && role.Name != r.PathValue("name") {
		return failure.Invalid("role name in the body (%q) differs from the path (%q)", role.Name, r.PathValue("name"))
	}
	role.Name = r.PathValue("name")
	saved, err := c.engine.Accounts.PutRole(r.Context(), role)
	if err != nil {
		return err
	}
	Note(r, "", fmt.Sprintf("role %s saved: %d rule(s), admin %v", saved.Name, len(saved.Rules), saved.Admin))
	return WriteJSON(w, http.StatusOK, saved)
}

func (c *Core) listRoles(w http.ResponseWriter, r *http.Request) error {
	roles, err := c.engine.Accounts.Roles(r.Context())
	if err != nil {
		return err
	}
	if roles == nil {
		roles = []*account.Role{}
	}
	return WriteJSON(w, http.StatusOK, roles)
}

func (c *Core) getRole(w http.ResponseWriter, r *http.Request) error {
	role, err := c.engine.Accounts.Role(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, role)
}

func (c *Core) deleteRole(w http.ResponseWriter, r *http.Request) error {
	if err := c.engine.Accounts.DeleteRole(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// auditQueryPattern is the audit log's query, the one admin call not
// audited itself.
const auditQueryPattern = "GET /gatehouse/audit"

func (c *Core) queryAudit(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := audit.Filter{Username: q.Get("username"), Kind: q.Get("kind"), Outcome: q.Get("outcome")}
	if f.Kind != "" && !slices.Contains(audit.Kinds, f.Kind) {
		return failure.Invalid("kind must be one of %s", strings.Join(audit.Kinds, ", "))
	}
	if f.Outcome != "" && !slices.Contains(audit.Outcomes, f.Outcome) {
		return failure.Invalid("outcome must be one of %s", strings.Join(audit.Outcomes, ", "))
	}
	var err error
	if f.Since, err = queryTime(q, "since"); err != nil {
		return err
	}
	if f.Until, err = queryTime(q, "until"); err != nil {
		return err
	}
	if f.Until.IsZero() && q.Get("until") != "" {
		// 0001-01-01T00:00:00Z, which Filter would read as no bound:
		// nothing is older.
		f.Until = f.Until.Add(time.Nanosecond)
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > audit.MaxQueryLimit {
			return failure.Invalid("limit must be a whole number from 1 to %d", audit.MaxQueryLimit)
		}
		f.Limit = n
	}
	if f.Username != "" {
		if name, err := c.engine.Accounts.CanonicalName(f.Username); err == nil {
			f.Username = name
		}
	}
	events, err := c.engine.Audit.Query(r.Context(), f)
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, events)
}

// queryTime reads the RFC 3339 time of query parameter name; zero when
// it is absent or empty.
func queryTime(q url.Values, name string) (time.Time, error) {
	s := q.Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, failure.Invalid("%s must be an RFC 3339 time such as 2026-01-02T15:04:05Z (fractions of a second allowed), not %q", name, s)
	}
	return t, nil
}
