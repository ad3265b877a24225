package console

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/text/unicode/norm"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/plugin/appkey"
	"github.com/gatehouse-auth/gatehouse/plugin/connector"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor/esa"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor/portal"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// page is one console URL: what it shows and the actions its forms post.
type page struct {
	path, title string
	// tmpl names the page's template (templates/<tmpl>.html).
	tmpl string
	// admin pages need a role with admin: true.
	admin bool
	// load returns the page's data. With a caller's error (failure) it
	// may return its data too, which is shown with the error (show).
	load func(c *Console, r *http.Request, v *viewer) (any, error)
	// actions are the page's form posts, by the form's action field.
	actions map[string]action
	// ask are the destructive actions among them, each with the question
	// that names its target and what goes with it: their first post only
	// asks (askFirst), the answer's sure=yes carries them out.
	ask map[string]func(form) string
	// back is, for an action of ask, where the question's "No, go back"
	// leads when not to the page the form was posted to, where "Yes, do
	// it" answers: "Delete user" is posted to the list, whose answer does
	// not read the account again (the user page's read would make a
	// directory account's record anew), and goes back to the user's page.
	back map[string]func(form) string
	// download, when set, answers GET …?format=csv.
	download func(c *Console, r *http.Request, v *viewer) (*download, error)
}

// action carries out one form post.
type action func(c *Console, r *http.Request, v *viewer, f form) (outcome, error)

// confirmed is act once the viewer confirmed who they are in the form's
// confirm field, with their password or a code (Console.reauthenticate).
// It guards the actions that give access (a user, roles, a role's rules,
// a password, a phone number, a second factor, unblocking a user or their
// second factor, an application key's allowlist or expiry) or show a
// credential (an application key's value, an API password, a connector's
// key). A session alone must not suffice for them: the console shares its
// origin with the upstream application of the route, so a script in any
// page that application serves runs with the viewer's session, and it can
// read a form's CSRF token — but not the password.
func confirmed(act action) action {
	return func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
		if err := c.reauthenticate(r, v, f.get("confirm")); err != nil {
			return outcome{}, err
		}
		return act(c, r, v, f)
	}
}

// pages are the console's pages; every one is listed by Paths.
func pages() []*page {
	return []*page{
		{path: Prefix, title: "Console", tmpl: "overview", admin: true, load: loadOverview},
		usersPage(),
		rolesPage(),
		appKeysPage(),
		connectorsPage(),
		apiCredentialsPage(),
		auditPage(),
		accountPage(),
	}
}

// esc escapes a name for a segment of an admin API path: its dots too,
// so that "." and ".." stay names (the admin API answers them as unknown
// or invalid) rather than dot segments the admin mux would resolve and
// answer with a redirect.
func esc(name string) string { return strings.ReplaceAll(url.PathEscape(name), ".", "%2E") }

// overviewData counts what the console manages.
type overviewData struct {
	Users, Roles, AppKeys, Connectors count
}

// count is how many of something the overview shows: N, or "more than
// N" when there are more than overviewCap (More).
type count struct {
	N    int
	More bool
}

// String is the count as the overview shows it.
func (n count) String() string {
	if n.More {
		return "more than " + strconv.Itoa(n.N)
	}
	return strconv.Itoa(n.N)
}

// overviewCap bounds what the overview counts of users, keys and
// connectors, and it shows "more than 5000" past it: users and keys are
// counted from the names in the store's keys, no record read (as their
// pages count them); connectors from a page of overviewCap+1 of the
// admin API's list. With 50 000 users and 100 000 keys the whole lists
// took 6.7 s to count (Badger), and the pages of 5 001 through the API
// 1.5 s (Redis). A variable for tests.
var overviewCap = 5000

func loadOverview(c *Console, r *http.Request, v *viewer) (any, error) {
	var d overviewData
	ctx := r.Context()
	n, more, err := c.engine.Accounts.CountUsers(ctx, overviewCap)
	if err != nil {
		return nil, err
	}
	d.Users = count{N: n, More: more}
	n = 0
	err = appkey.KeyNames(ctx, c.engine.Store, func(string) error {
		if n == overviewCap {
			d.AppKeys.More = true
			return storage.ErrStopScan
		}
		n++
		return nil
	})
	if err != nil {
		return nil, err
	}
	d.AppKeys.N = n
	for _, l := range []struct {
		path   string
		n      *count
		capped bool // read a page of overviewCap+1 (the roles are few: every one)
	}{
		{"/gatehouse/roles", &d.Roles, false}, {"/gatehouse/connectors", &d.Connectors, true},
	} {
		path := l.path
		if l.capped {
			path += "?limit=" + strconv.Itoa(overviewCap+1)
		}
		var list []json.RawMessage
		if err := c.call(r, v, http.MethodGet, path, nil, &list); err != nil {
			return nil, err
		}
		*l.n = count{N: len(list)}
		if l.capped && len(list) > overviewCap {
			*l.n = count{N: overviewCap, More: true}
		}
	}
	return d, nil
}

// ---- users ----

// perPage is how many users or keys a list page shows.
const perPage = 25

// paging is where a list page stands: its page (from 1) of Pages, the
// Total listed, and the neighbouring pages (0: none).
type paging struct {
	Page, Pages, Total int
	PrevPage, NextPage int
}

// pageOf is the page of all that r asks for (?page=, from 1; out of
// range: the nearest), with where it stands.
func pageOf[T any](all []T, r *http.Request) ([]T, paging) {
	p := paging{Total: len(all), Pages: max(1, (len(all)+perPage-1)/perPage)}
	p.Page, _ = strconv.Atoi(r.URL.Query().Get("page"))
	p.Page = min(max(p.Page, 1), p.Pages)
	if p.Page > 1 {
		p.PrevPage = p.Page - 1
	}
	if p.Page < p.Pages {
		p.NextPage = p.Page + 1
	}
	return all[(p.Page-1)*perPage : min(p.Page*perPage, p.Total)], p
}

type usersData struct {
	Users []account.UserView
	Q     string
	paging
	Roles                []account.Role
	Detail               *account.UserView
	Factors              *twofactor.StatusView
	SMSAvailable         bool
	DetailRoles, AllKeys []string
	// Sessions are the live sessions of the user shown in Detail.
	Sessions *sessionList
}

// subject names the user shown, if one is.
func (d usersData) subject() string {
	if d.Detail == nil {
		return ""
	}
	return "User " + d.Detail.Username
}

func loadUsers(c *Console, r *http.Request, v *viewer) (any, error) {
	q := r.URL.Query()
	d := usersData{Q: strings.TrimSpace(q.Get("q")), SMSAvailable: c.twoFactor.SMSAvailable()}
	if err := c.call(r, v, http.MethodGet, "/gatehouse/roles", nil, &d.Roles); err != nil {
		return nil, err
	}
	// The names (in the store's keys) are matched, counted and paged;
	// only the page's accounts are read: 50 000 users cost what 25 do
	// and a scan of their keys ("At scale", docs/console.md).
	names, err := c.engine.Accounts.UserNames(r.Context(), searchKey(d.Q))
	if err != nil {
		return nil, err
	}
	var shown []string
	shown, d.paging = pageOf(names, r)
	users, err := c.engine.Accounts.UsersNamed(r.Context(), shown)
	if err != nil {
		return nil, err
	}
	d.Users = make([]account.UserView, 0, len(users))
	for _, u := range users {
		d.Users = append(d.Users, u.View())
	}
	if name := q.Get("username"); name != "" {
		var u account.UserView
		var st twofactor.StatusView
		if err := c.call(r, v, http.MethodGet, "/gatehouse/users/"+esc(name), nil, &u); err != nil {
			return d, err // the list, with why there is no user to show
		}
		if err := c.call(r, v, http.MethodGet, "/gatehouse/users/"+esc(name)+"/otp", nil, &st); err != nil {
			return nil, err
		}
		sessions, err := c.sessionsOf(r, v, u.Username, Prefix+"users?username="+url.QueryEscape(u.Username))
		if err != nil {
			return nil, err
		}
		sessions.Username = u.Username
		d.Detail, d.Factors, d.Sessions = &u, &st, sessions
	}
	return d, nil
}

// searchKey is a search typed on the users page as usernames are kept:
// normalised as account.NormalizeUsername does, so that "jose\u0301"
// (decomposed) finds josé; a part of a name it refuses (a space, say)
// is composed (NFC) and lower-cased instead, which finds what it can.
func searchKey(q string) string {
	if name, err := account.NormalizeUsername(q); err == nil {
		return name
	}
	return strings.ToLower(norm.NFC.String(q))
}

// enrolled is the one-time view of a new authenticator secret.
type enrolled struct {
	Username, URI, Secret string
	QR                    template.URL
	// Setup is the self-service start's value its confirm form carries
	// (pendingContext); empty elsewhere.
	Setup string
}

func newEnrolled(username, uri string) (*enrolled, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, err
	}
	qr, err := portal.QRDataURI(uri)
	if err != nil {
		return nil, err
	}
	return &enrolled{Username: username, URI: uri, Secret: u.Query().Get("secret"), QR: qr}, nil
}

// userPath is the admin path of the user a users-page form names.
func userPath(f form, below string) string {
	return "/gatehouse/users/" + esc(f.get("username")) + below
}

// roleList is the roles a form ticked; never nil.
func roleList(f form) []string { return append([]string{}, f.all("roles")...) }

func usersPage() *page {
	patch := func(field string, value func(form) any, notice string) action {
		return func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
			err := c.call(r, v, http.MethodPatch, userPath(f, ""), map[string]any{field: value(f)}, nil)
			return outcome{Notice: notice}, err
		}
	}
	simple := func(method, below, notice string) action {
		return func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
			return outcome{Notice: notice}, c.call(r, v, method, userPath(f, below), nil, nil)
		}
	}
	setStatus := patch("status", func(f form) any { return f.get("status") }, "Status changed.")
	return &page{path: Prefix + "users", title: "Users", tmpl: "users", admin: true, load: loadUsers,
		actions: map[string]action{
			"create": confirmed(func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				in := map[string]any{"username": f.get("username"), "roles": roleList(f)}
				if pw := f.get("password"); pw != "" {
					in["password"] = pw
				}
				if m := f.get("mobile_number"); m != "" {
					in["mobile_number"] = m
				}
				var u account.UserView
				if err := c.call(r, v, http.MethodPost, "/gatehouse/users", in, &u); err != nil {
					return outcome{}, err
				}
				return outcome{Notice: "User " + u.Username + " created."}, nil
			}),
			"status": func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				if f.get("status") == string(account.StatusBlocked) && c.isViewer(r, v, f.get("username")) {
					// As deleting it: a blocked account opens no console page.
					return outcome{}, failure.Invalid("you cannot block your own account here (it would shut you out of the console); sign out everywhere on your account page, or block it through the admin API")
				}
				if f.get("status") == string(account.StatusBlocked) { // takes access away: no confirmation in an emergency
					return setStatus(c, r, v, f)
				}
				return confirmed(setStatus)(c, r, v, f)
			},
			"password": confirmed(func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				if f.get("password") == "" { // the admin API's "" removes the password: not what an empty form means
					return outcome{}, failure.Invalid("enter a password")
				}
				return patch("password", func(f form) any { return f.get("password") }, "Password set; the user's sessions were ended.")(c, r, v, f)
			}),
			"roles": confirmed(func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				save := patch("roles", func(f form) any { return roleList(f) }, "Roles saved.")
				if c.isViewer(r, v, f.get("username")) && !v.user.FromDirectory() { // a directory account's roles are its groups'
					return c.keepingAdmin(r, v, roleList(f), nil, func() (outcome, error) { return save(c, r, v, f) })
				}
				return save(c, r, v, f)
			}),
			"mobile_number": confirmed(patch("mobile_number", func(f form) any { return f.get("mobile_number") }, "Mobile number saved.")),
			"unlock":        confirmed(simple(http.MethodPost, "/unlock", "Second factor unlocked.")), // guesses can start again
			"end-sessions":  simple(http.MethodDelete, "/sessions", "The user's sessions were ended."),
			"revoke-session": func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				return revokeSession(c, r, v, f.get("username"), f)
			},
			// Removing a factor gives access (an ESA client lets a user
			// without 2FA in with the password alone): confirmed.
			"remove-factor": confirmed(func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				return outcome{Notice: "Factor removed."}, c.call(r, v, http.MethodDelete, userPath(f, "/otp/"+esc(f.get("type"))), nil, nil)
			}),
			"delete": func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				if c.isViewer(r, v, f.get("username")) {
					return outcome{}, failure.Invalid("you cannot delete your own account here")
				}
				return outcome{Notice: "User deleted."}, c.call(r, v, http.MethodDelete, userPath(f, ""), nil, nil)
			},
			"enrol": confirmed(func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				in := map[string]any{"type": f.get("type")}
				if s := f.get("secret"); s != "" {
					in["secret"] = s
				}
				if n := f.get("counter"); n != "" {
					counter, err := strconv.ParseUint(n, 10, 64)
					if err != nil {
						return outcome{}, failure.Invalid("counter must be a whole number")
					}
					in["counter"] = counter
				}
				var out struct {
					Username   string `json:"username"`
					OTPAuthURI string `json:"otpauth_uri"`
				}
				if err := c.call(r, v, http.MethodPost, userPath(f, "/otp"), in, &out); err != nil {
					return outcome{}, err
				}
				res := outcome{Notice: "Factor enrolled."}
				if out.OTPAuthURI != "" {
					en, err := newEnrolled(out.Username, out.OTPAuthURI)
					if err != nil {
						return outcome{}, err
					}
					res.Once = en
				}
				return res, nil
			}),
		},
		ask: map[string]func(form) string{
			"delete": func(f form) string {
				return "Delete user " + f.get("username") + "? Their application keys and second factors are deleted with the account, their connectors revoked and their sessions ended; none of it can be undone."
			},
		},
		back: map[string]func(form) string{
			"delete": func(f form) string { return Prefix + "users?username=" + url.QueryEscape(f.get("username")) },
		}}
}

// isViewer reports whether the account named (as typed) is v's own,
// compared as accounts: "ROOT" and "CORP\root" name root too.
func (c *Console) isViewer(r *http.Request, v *viewer, name string) bool {
	u, err := c.engine.Accounts.User(r.Context(), name)
	return err == nil && u.ID == v.user.ID
}

// ---- roles ----

type rolesData struct {
	Roles []account.Role
	// Sites are the routes that require roles, which the tester answers
	// for when asked (GET /gatehouse/sites).
	Sites []adminapi.Site
	Test  *roleTest
	// Edit is the role whose rules and admin mark fill the role form
	// (?edit=name); nil: an empty form, to create one.
	Edit *account.Role
}

// roleTest answers "would this request be allowed?": on Site, the Name
// of one of the sites, or on a route without require_role.
type roleTest struct {
	Username, Method, Path, Site string
	Allowed                      bool
	// NotRouted: the request does not reach Site's route at all.
	NotRouted bool
	Why       string
}

func loadRoles(c *Console, r *http.Request, v *viewer) (any, error) {
	var d rolesData
	if err := c.call(r, v, http.MethodGet, "/gatehouse/roles", nil, &d.Roles); err != nil {
		return nil, err
	}
	if err := c.call(r, v, http.MethodGet, "/gatehouse/sites", nil, &d.Sites); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	if name := q.Get("edit"); name != "" {
		i := slices.IndexFunc(d.Roles, func(role account.Role) bool { return role.Name == name })
		if i < 0 {
			return d, failure.NotFound("role %q not found", name)
		}
		d.Edit = &d.Roles[i]
	}
	if q.Get("test_username") == "" {
		return d, nil
	}
	d.Test = &roleTest{Username: q.Get("test_username"), Method: strings.TrimSpace(q.Get("test_method")), Path: q.Get("test_path"), Site: q.Get("test_site")}
	return d, c.testRequest(r, v, d.Test)
}

// testRequest answers t by the admin API's
// GET /gatehouse/users/{username}/allowed, which answers as the data plane
// would; what the API refuses as bad input (an unknown user or site, a
// path that is no request target) is the answer's why, refused.
func (c *Console) testRequest(r *http.Request, v *viewer, t *roleTest) error {
	query := url.Values{"method": {t.Method}, "path": {t.Path}, "site": {t.Site}}
	var answer adminapi.Allowed
	err := c.call(r, v, http.MethodGet, "/gatehouse/users/"+esc(t.Username)+"/allowed?"+query.Encode(), nil, &answer)
	if failure.IsCallerError(err) {
		t.Why = failure.Message(err)
		return nil
	}
	if err != nil {
		return err
	}
	t.Allowed, t.NotRouted, t.Why = answer.Allowed, answer.NotRouted, answer.Why
	return nil
}

// formatRules writes rules as the rules textarea takes them (parseRules).
func formatRules(rules []account.Rule) string {
	lines := make([]string, len(rules))
	for i, rule := range rules {
		lines[i] = strings.Join(rule.Methods, ",") + " " + strings.Join(rule.Paths, " ")
	}
	return strings.Join(lines, "\n")
}

// parseRules reads the rules textarea: one rule a line, its methods
// (comma-separated) then its path patterns, separated by spaces.
func parseRules(text string) ([]account.Rule, error) {
	rules := []account.Rule{}
	for n, line := range strings.Split(text, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 2 {
			return nil, failure.Invalid("rules line %d: write the methods, then one or more paths (e.g. GET,POST /api/*)", n+1)
		}
		rules = append(rules, account.Rule{Methods: strings.Split(fields[0], ","), Paths: fields[1:]})
	}
	return rules, nil
}

func rolesPage() *page {
	return &page{path: Prefix + "roles", title: "Roles", tmpl: "roles", admin: true, load: loadRoles,
		actions: map[string]action{
			"save": confirmed(func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				rules, err := parseRules(f.get("rules"))
				if err != nil {
					return outcome{}, err
				}
				role := account.Role{Name: f.get("name"), Rules: rules, Admin: f.get("admin") == "true"}
				if err := account.ValidateName("role", role.Name); err != nil {
					return outcome{}, err
				}
				return c.keepingAdmin(r, v, nil, map[string]bool{role.Name: role.Admin}, func() (outcome, error) {
					notice := "Role " + role.Name + " saved."
					// The create form replaces a role of the same name: say
					// so, unless it was that role's own edit form.
					var old account.Role
					err := c.call(r, v, http.MethodGet, "/gatehouse/roles/"+esc(role.Name), nil, &old)
					switch {
					case err == nil && f.get("edit") != role.Name:
						notice = "Role " + role.Name + " already existed and was replaced: its " + strconv.Itoa(len(old.Rules)) +
							" earlier rule(s) and admin mark (" + strconv.FormatBool(old.Admin) + ") are now this form's."
					case err != nil && !errors.Is(err, failure.ErrNotFound):
						return outcome{}, err
					}
					return outcome{Notice: notice}, c.call(r, v, http.MethodPut, "/gatehouse/roles/"+esc(role.Name), role, nil)
				})
			}),
			"delete": func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				return c.keepingAdmin(r, v, nil, map[string]bool{f.get("name"): false}, func() (outcome, error) {
					return outcome{Notice: "Role " + f.get("name") + " deleted."}, c.call(r, v, http.MethodDelete, "/gatehouse/roles/"+esc(f.get("name")), nil, nil)
				})
			},
		},
		ask: map[string]func(form) string{
			"delete": func(f form) string {
				return "Delete role " + f.get("name") + "? Every user holding it loses what it allows at once, and it is taken from them: creating it again does not give it back."
			},
		}}
}

// ---- application keys ----

// keyValue is a key value shown once, with the admin API's warnings
// about a new key (its user holds an admin role).
type keyValue struct {
	Name, Key string
	Warnings  []string
}

// parseTime reads a date (UTC: the end of that day when dayEnd, as a key
// valid through it; else its start, as a bound of the audit log's
// times), a datetime-local value (UTC) or an RFC 3339 time.
func parseTime(field, s string, dayEnd bool) (*time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return &t, nil
		}
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		if dayEnd {
			t = t.Add(24*time.Hour - time.Second)
		}
		return &t, nil
	}
	return nil, failure.Invalid("%s must be a date (2026-12-31) or a time (2026-12-31T18:00, UTC)", field)
}

// splitList reads a list typed with commas, spaces or one item a line.
func splitList(s string) []string { return splitBy(s, ", \n\r\t") }

// splitTags reads tags typed with commas or one a line: a tag may hold
// spaces.
func splitTags(s string) []string { return splitBy(s, ",\n\r") }

// splitBy splits s at each of the characters seps, trims the items of
// white space and drops empty ones; never nil.
func splitBy(s, seps string) []string {
	out := []string{}
	for _, item := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(seps, r) }) {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func keyPath(f form, below string) string { return "/gatehouse/appkeys/" + esc(f.get("name")) + below }

// appKeysData is the application keys page: the keys whose name or
// user holds the search Q, a page at a time, sorted by name.
type appKeysData struct {
	Keys []appkey.View
	Q    string
	paging
	// Here is the page's own address, search and page number included:
	// its forms post to it, so that the answer to an action (and the
	// confirmation page's "No, go back") shows the keys the operator was
	// looking at, not the first page of all of them.
	Here string
}

func loadAppKeys(c *Console, r *http.Request, v *viewer) (any, error) {
	d := appKeysData{Q: strings.TrimSpace(r.URL.Query().Get("q"))}
	needle, name := strings.ToLower(d.Q), searchKey(d.Q)
	// The keys are matched, counted and paged by the names in the
	// store's keys (a key's own, and its account's entries for a match
	// on the user's name); only the page's keys are read.
	var ofUsers map[string]bool
	if name != "" {
		keys, indexed, err := c.keyNamesOfUsersNamed(r.Context(), name)
		if err != nil {
			return nil, err
		}
		if !indexed {
			return loadAllAppKeys(c, r, v, d)
		}
		ofUsers = keys
	}
	var names []string
	err := appkey.KeyNames(r.Context(), c.engine.Store, func(key string) error {
		if strings.Contains(strings.ToLower(key), needle) || ofUsers[key] {
			names = append(names, key)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var shown []string
	shown, d.paging = pageOf(names, r)
	if shown, err = appkey.Readable(r.Context(), c.engine.Store, shown); err != nil {
		return nil, err
	}
	d.Keys = make([]appkey.View, 0, len(shown))
	for _, key := range shown {
		var k appkey.View
		err := c.call(r, v, http.MethodGet, "/gatehouse/appkeys/"+esc(key), nil, &k)
		if errors.Is(err, failure.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		if !strings.Contains(strings.ToLower(k.Name), needle) && !strings.Contains(k.Username, name) {
			continue // an account's entry left over from a key now another's
		}
		d.Keys = append(d.Keys, k)
	}
	d.Here = Prefix + "appkeys?" + url.Values{"q": {d.Q}, "page": {strconv.Itoa(d.Page)}}.Encode()
	return d, nil
}

// keyNamesOfUsersNamed returns the names of the keys of the users whose
// canonical name holds part, from the store's keys (the users' names,
// their IDs, their keys' entries: appkey.KeyNamesOfUsers), and true; or
// false when not every key has its account's entry yet.
func (c *Console) keyNamesOfUsersNamed(ctx context.Context, part string) (map[string]bool, bool, error) {
	users, err := c.engine.Accounts.UserNames(ctx, part)
	if err != nil {
		return nil, false, err
	}
	ids, err := c.engine.Accounts.UserIDs(ctx, users)
	if err != nil {
		return nil, false, err
	}
	idSet := make(map[string]bool, len(ids))
	for _, id := range ids {
		idSet[id] = true
	}
	return appkey.KeyNamesOfUsers(ctx, c.engine.Store, idSet)
}

// loadAllAppKeys is loadAppKeys from every key's record (the whole
// listing), for a store whose keys do not all have their account's
// entry yet (appkey.KeyNamesOfUsers): a search by a user's name cannot
// be answered from the entries until they do.
func loadAllAppKeys(c *Console, r *http.Request, v *viewer, d appKeysData) (any, error) {
	var keys []appkey.View
	if err := c.call(r, v, http.MethodGet, "/gatehouse/appkeys", nil, &keys); err != nil {
		return nil, err
	}
	needle, name := strings.ToLower(d.Q), searchKey(d.Q)
	keys = slices.DeleteFunc(keys, func(k appkey.View) bool {
		return !strings.Contains(strings.ToLower(k.Name), needle) && !strings.Contains(k.Username, name)
	})
	slices.SortFunc(keys, func(a, b appkey.View) int { return strings.Compare(a.Name, b.Name) })
	d.Keys, d.paging = pageOf(keys, r)
	d.Here = Prefix + "appkeys?" + url.Values{"q": {d.Q}, "page": {strconv.Itoa(d.Page)}}.Encode()
	return d, nil
}

// revealKey shows a key's value (confirmed: once the viewer confirmed
// who they are).
func revealKey(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
	var out struct {
		Key string `json:"key"`
	}
	if err := c.call(r, v, http.MethodGet, keyPath(f, "/key"), nil, &out); err != nil {
		return outcome{}, err
	}
	return outcome{Once: keyValue{Name: f.get("name"), Key: out.Key}}, nil
}

func appKeysPage() *page {
	return &page{path: Prefix + "appkeys", title: "Application keys", tmpl: "appkeys", admin: true, load: loadAppKeys,
		actions: map[string]action{
			"create": confirmed(func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				expires, err := parseTime("expires_at", f.get("expires_at"), true)
				if err != nil {
					return outcome{}, err
				}
				// Every field of the admin API's request, under its JSON name
				// (CONTRACT §10), but the ThingWorx aliases of some of them.
				in := appkey.NewKey{Name: f.get("name"), Username: f.get("username"), ExpiresAt: expires,
					IPAllowlist: splitList(f.get("ip_allowlist")), Metadata: appkey.Metadata{
						Description: f.get("description"), Project: f.get("project"), Tags: splitTags(f.get("tags")),
						ClientName: f.get("client_name"), Documentation: f.get("documentation"), HomeURL: f.get("home_url")}}
				var out appkey.Created
				if err := c.call(r, v, http.MethodPost, "/gatehouse/appkeys", in, &out); err != nil {
					return outcome{}, err
				}
				return outcome{Notice: "Key " + out.Name + " created; it expires " + out.ExpiresAt.UTC().Format(time.RFC3339) + ".",
					Once: keyValue{Name: out.Name, Key: out.Key, Warnings: out.Warnings}}, nil
			}),
			"update": confirmed(func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) { // may widen the allowlist, move the expiry
				in := map[string]any{"ip_allowlist": splitList(f.get("ip_allowlist"))}
				expires, err := parseTime("expires_at", f.get("expires_at"), true)
				if err != nil {
					return outcome{}, err
				}
				if expires != nil {
					in["expires_at"] = expires
				}
				var out appkey.Updated
				if err := c.call(r, v, http.MethodPatch, keyPath(f, ""), in, &out); err != nil {
					return outcome{}, err
				}
				return outcome{Notice: strings.Join(append([]string{"Key " + f.get("name") + " updated."}, out.Warnings...), " Warning: ")}, nil
			}),
			"reset-expiration": confirmed(func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				return outcome{Notice: "Expiration of " + f.get("name") + " reset."}, c.call(r, v, http.MethodPost, keyPath(f, "/reset-expiration"), nil, nil)
			}),
			"rotate": confirmed(func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				grace, err := strconv.ParseInt(strings.TrimSpace(f.get("grace_seconds")), 10, 64)
				if err != nil && f.get("grace_seconds") != "" {
					return outcome{}, failure.Invalid("grace_seconds must be a whole number")
				}
				var out struct {
					Key string `json:"key"`
				}
				if err := c.call(r, v, http.MethodPost, keyPath(f, "/rotate"), map[string]any{"grace_seconds": grace}, &out); err != nil {
					return outcome{}, err
				}
				return outcome{Notice: "Key " + f.get("name") + " rotated.", Once: keyValue{Name: f.get("name"), Key: out.Key}}, nil
			}),
			"reveal": confirmed(revealKey),
			"delete": func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				return outcome{Notice: "Key " + f.get("name") + " deleted."}, c.call(r, v, http.MethodDelete, keyPath(f, ""), nil, nil)
			},
			"purge-expired": func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				var out struct {
					Deleted int `json:"deleted"`
				}
				err := c.call(r, v, http.MethodPost, "/gatehouse/appkeys/purge-expired", nil, &out)
				return outcome{Notice: strconv.Itoa(out.Deleted) + " expired key(s) deleted."}, err
			},
		},
		ask: map[string]func(form) string{
			"delete": func(f form) string {
				return "Delete application key " + f.get("name") + "? Clients using it are refused from now on, and the sessions it opened end; it cannot be brought back."
			},
			"purge-expired": func(form) string {
				return "Delete every expired application key? They cannot be brought back (an expired key can otherwise be given a new expiry)."
			},
		}}
}

// ---- connectors ----

type connectorsData struct {
	// Connectors are the page's connectors, sorted by name.
	Connectors []connector.View
	paging
	// Here is the page's own address, its page number included: its
	// forms post to it, so that the answer to an action shows the
	// connectors the operator was looking at.
	Here string
	// Tokens are the live token pairs of the page's connectors, newest
	// first, at most tokensPerConnector of each.
	Tokens []connector.TokenView
	// TokensLeftOut are the page's connectors with more live pairs than
	// are shown, and how many more.
	TokensLeftOut []tokensLeftOut
	// CanPackage is whether a package can be made (connector.Plugin.
	// CanPackage): without a server address for its metadata.json the
	// page offers a new certificate alone and says why.
	CanPackage bool
}

// tokensPerConnector is how many live token pairs of each connector the
// connectors page shows, the newest; the rest are counted.
const tokensPerConnector = 10

// TokensShown is how many live token pairs of each connector the page
// shows at most (tokensPerConnector), for its template.
func (connectorsData) TokensShown() int { return tokensPerConnector }

// tokensLeftOut is a connector whose live token pairs the connectors
// page does not all show: More of them are not shown.
type tokensLeftOut struct {
	Connector string
	More      int
}

func loadConnectors(c *Console, r *http.Request, v *viewer) (any, error) {
	var d connectorsData
	if kind, ok := c.engine.Credential(identity.MethodConnector); ok {
		p, isConnector := kind.(*connector.Plugin)
		d.CanPackage = isConnector && p.CanPackage()
	}
	var all []connector.View
	if err := c.call(r, v, http.MethodGet, "/gatehouse/connectors", nil, &all); err != nil {
		return nil, err
	}
	d.Connectors, d.paging = pageOf(all, r)
	d.Here = Prefix + "connectors?" + url.Values{"page": {strconv.Itoa(d.Page)}}.Encode()
	// The token pairs of the page's connectors alone, each read from its
	// connector's index: not every live pair (a connector's pairs are
	// revoked with it, but a pair left over is shown all the same).
	d.Tokens = []connector.TokenView{}
	for _, conn := range d.Connectors {
		var pairs []connector.TokenView
		if err := c.call(r, v, http.MethodGet, "/gatehouse/tokens?"+url.Values{"connector": {conn.Name}}.Encode(), nil, &pairs); err != nil {
			return nil, err
		}
		if len(pairs) > tokensPerConnector {
			d.TokensLeftOut = append(d.TokensLeftOut, tokensLeftOut{Connector: conn.Name, More: len(pairs) - tokensPerConnector})
			pairs = pairs[:tokensPerConnector]
		}
		d.Tokens = append(d.Tokens, pairs...)
	}
	return d, nil
}

// connectorOnce is what the connectors page shows once: a certificate
// issued with its key (Issued), or a package to save (Package).
type connectorOnce struct {
	Issued  *connector.Issued
	Package *packageLink
}

// packageLink is a connector's package, drawn on the connectors page as
// a link that saves it, so that the page answering the download is the
// page as it is now (the new certificate's serial in the table, not the
// revoked one's as a download's answer would leave it). The page is
// never stored (no-store), as every page showing a secret once.
type packageLink struct {
	// FileName is the name the package is saved as.
	FileName string
	// Href is the package as a data: URL.
	Href template.URL
}

// newPackageLink is the packageLink of connector name's package zipped.
func newPackageLink(name string, zipped []byte) *packageLink {
	return &packageLink{FileName: name + ".zip", Href: template.URL("data:application/zip;base64," + base64.StdEncoding.EncodeToString(zipped))} //nolint:gosec // G203: a fixed scheme and base64 characters alone
}

func connectorsPage() *page {
	return &page{path: Prefix + "connectors", title: "Connectors", tmpl: "connectors", admin: true, load: loadConnectors,
		actions: map[string]action{
			"create": confirmed(func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				in := connector.CreateRequest{Name: f.get("name"), Username: f.get("username"), CSRPEM: strings.TrimSpace(f.get("csr_pem"))}
				var out connector.Issued
				if err := c.call(r, v, http.MethodPost, "/gatehouse/connectors", in, &out); err != nil {
					return outcome{}, err
				}
				return outcome{Notice: "Connector " + out.Name + " created; certificate " + out.Serial + " issued.", Once: connectorOnce{Issued: &out}}, nil
			}),
			"package": confirmed(func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				var zipped []byte
				err := c.call(r, v, http.MethodPost, "/gatehouse/connectors/"+esc(f.get("name"))+"/package",
					connector.PackageRequest{Password: f.get("password"), Format: f.get("format")}, &zipped)
				if err != nil {
					return outcome{}, err
				}
				return outcome{Notice: "Connector " + f.get("name") + ": a new certificate was issued in its package; the previous certificate and its token pairs are revoked.",
					Once: connectorOnce{Package: newPackageLink(f.get("name"), zipped)}}, nil
			}),
			"reissue": confirmed(func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				in := connector.ReissueRequest{CSRPEM: strings.TrimSpace(f.get("csr_pem"))}
				var out connector.Issued
				if err := c.call(r, v, http.MethodPost, "/gatehouse/connectors/"+esc(f.get("name"))+"/certificate", in, &out); err != nil {
					return outcome{}, err
				}
				return outcome{Notice: "Connector " + out.Name + ": certificate " + out.Serial + " issued; the previous certificate and its token pairs are revoked.", Once: connectorOnce{Issued: &out}}, nil
			}),
			"revoke": func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				return outcome{Notice: "Connector " + f.get("name") + " revoked."},
					c.call(r, v, http.MethodDelete, "/gatehouse/connectors/"+esc(f.get("name")), nil, nil)
			},
			"revoke-token": func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				return outcome{Notice: "Token pair " + f.get("id") + " revoked."},
					c.call(r, v, http.MethodDelete, "/gatehouse/tokens/"+esc(f.get("id")), nil, nil)
			},
		},
		ask: map[string]func(form) string{
			"revoke": func(f form) string {
				return "Revoke connector " + f.get("name") + "? Its certificates are refused from now on and its token pairs end."
			},
		}}
}

// ---- ESA API credentials ----

func apiCredentialsPage() *page {
	return &page{path: Prefix + "api-credentials", title: "ESA API credentials", tmpl: "apicredentials", admin: true,
		load: func(c *Console, r *http.Request, v *viewer) (any, error) {
			var list []esa.CredentialView
			return list, c.call(r, v, http.MethodGet, "/gatehouse/api-credentials", nil, &list)
		},
		actions: map[string]action{
			"create": confirmed(func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				in := map[string]any{"name": f.get("name"), "auth_api": f.get("auth_api") == "true",
					"user_management_api": f.get("user_management_api") == "true"}
				if in["auth_api"] == false && in["user_management_api"] == false { // the admin API's message names its JSON fields
					return outcome{}, failure.Invalid("tick Auth API, User management API or both: a credential enabled for neither could make no call")
				}
				var out esa.NewCredentialView
				if err := c.call(r, v, http.MethodPost, "/gatehouse/api-credentials", in, &out); err != nil {
					return outcome{}, err
				}
				return outcome{Notice: "API credential " + out.Name + " created.", Once: out}, nil
			}),
			"delete": func(c *Console, r *http.Request, v *viewer, f form) (outcome, error) {
				return outcome{Notice: "API credential " + f.get("name") + " deleted."},
					c.call(r, v, http.MethodDelete, "/gatehouse/api-credentials/"+esc(f.get("name")), nil, nil)
			},
		},
		ask: map[string]func(form) string{
			"delete": func(f form) string {
				return "Delete ESA API credential " + f.get("name") + "? The ESA clients using it are refused from now on; it cannot be brought back."
			},
		}}
}
