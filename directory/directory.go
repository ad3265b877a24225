package directory

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/logthin"
	"github.com/gatehouse-auth/gatehouse/internal/shardlru"
)

// Entry is what the directory says of an account at one time.
type Entry struct {
	// Found reports whether the user filter matched exactly one entry.
	Found bool
	// DN is the account's entry.
	DN string
	// Name is the account's own name in the directory, as it holds it:
	// Active Directory's sAMAccountName, OpenLDAP's uid (the value in the
	// entry's DN when it has several). A name that found the entry may be
	// another (a second uid, a mail address a custom user_filter matches):
	// the account is known by this one alone. Empty when the entry has none.
	Name string
	// ID is the entry's permanent identifier (OpenLDAP's entryUUID,
	// Active Directory's objectGUID in hex): an account deleted and
	// created again under the same name or DN has another. Empty when the
	// server gives none.
	ID string
	// Roles are the Gatehouse roles of its mapped groups, sorted.
	Roles []string
	// JoinedRoles is Roles joined, made once per read of the directory
	// for the requests of the account (identity.Identity.SetRoles).
	JoinedRoles identity.JoinedRoles
	// Problem says why the account may not sign in ("disabled",
	// "locked", "expired", "password expired", "must change its
	// password", "in no mapped group", "deleted", ProblemPolicyUnreadable,
	// ProblemGroupLimit);
	// empty when it may.
	Problem string
	// Mobile is the account's mobile or telephone number, when it has one.
	Mobile string
	// CheckedAt is when the directory was read.
	CheckedAt time.Time
	// primaryGroup is the binary SID of an Active Directory account's
	// primary group (primarygroup.go); empty elsewhere.
	primaryGroup string
	// mark is the refresh mark it was read under (see Status).
	mark string
	// ambiguous marks a name user_filter found several entries for: no
	// account, but not for want of one (BindLocated's audit event).
	ambiguous bool
	// soughtID is the entry ID a read looked for when the name found no
	// entry or another (see Status), and found no more: a read without
	// one does not answer a Status that has one.
	soughtID string
}

// Active reports whether the account may sign in.
func (e Entry) Active() bool { return e.Found && e.Problem == "" }

// Event is a change the directory reported, for the audit log.
type Event struct {
	// Username is the account's name.
	Username string
	// What says what happened: why a bind failed, or the status change.
	What string
	// Failure marks a failed bind (a status change is no failure).
	Failure bool
}

// Directory is a connected LDAP directory with its status cache. Its
// methods take the caller's context, but the LDAP operations they make are
// bounded by Config.Timeout alone: go-ldap takes no context, and reads
// shared between callers (Refresh) could not follow one caller's
// cancellation. Nor do they stop early when it is done: a password check
// must cost the same directory work whatever happens to its caller.
type Directory struct {
	cfg     Config
	domains []string
	pool    *pool
	groups  []parsedGroupRole
	now     func() time.Time
	// userAttributes are read from a user's entry: the flavor's and the
	// name attribute.
	userAttributes []string
	// notify receives audit events; it must not block.
	notify func(Event)
	// log receives what the operator must fix (a password policy that
	// cannot be read); SetLogger.
	log *zap.Logger

	// status caches what the directory said of each account: bounded, so
	// that names tried by a guesser cannot fill the memory.
	status *shardlru.Cache[Entry]
	// mu orders the updates of status, so that an older read never
	// replaces a newer one.
	mu    sync.Mutex
	reads singleflight.Group
	// policies caches OpenLDAP password policies (ppolicy.go).
	policies policies
	// primary caches Active Directory primary groups (primarygroup.go).
	primary primaryGroups
	// coversPausedUntil is when Cover does the directory's work again
	// after a read that failed (Unix nanoseconds).
	coversPausedUntil atomic.Int64
	// groupLimits and userLimits thin the log lines of group and user
	// searches a limit of the directory stopped (limitAdvice): one a
	// minute each, as every sign-in may meet one.
	groupLimits, userLimits logthin.Thinner
	// ambiguousNames thins the log lines of names user_filter finds
	// several entries for (locate): one a minute.
	ambiguousNames logthin.Thinner
	// mappedOnly narrows an Active Directory group search to the mapped
	// groups (an LDAP filter), so that a member of thousands of groups
	// gets the few Gatehouse reads, not a size limit; empty elsewhere.
	mappedOnly string
}

// statusCacheSize bounds the status cache: accounts beyond it are read
// from the directory again (least recently used first).
const statusCacheSize = 65536

type parsedGroupRole struct {
	dn   *ldap.DN
	role string
}

// New validates cfg and returns the directory; it dials nothing yet.
// observe records each LDAP operation (name, start, error) for metrics;
// notify receives the events to audit. Both may be nil.
func New(cfg Config, observe func(op string, began time.Time, err error), notify func(Event)) (*Directory, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if observe == nil {
		observe = func(string, time.Time, error) {}
	}
	if notify == nil {
		notify = func(Event) {}
	}
	p, err := newPool(cfg, observe)
	if err != nil {
		return nil, err
	}
	d := &Directory{cfg: cfg, domains: domainsOf(cfg.BaseDN), pool: p, now: time.Now, notify: notify, log: zap.NewNop(), status: shardlru.New[Entry](statusCacheSize),
		userAttributes: userAttributes[cfg.Flavor], groupLimits: logthin.Thinner{Interval: time.Minute}, userLimits: logthin.Thinner{Interval: time.Minute},
		ambiguousNames: logthin.Thinner{Interval: time.Minute}}
	if cfg.NameAttribute != "" {
		d.userAttributes = append(slices.Clip(d.userAttributes), cfg.NameAttribute)
	}
	for _, gr := range cfg.GroupRoles {
		dn, _ := ldap.ParseDN(gr.Group) // checked by withDefaults
		d.groups = append(d.groups, parsedGroupRole{dn: dn, role: gr.Role})
		if cfg.Flavor == ActiveDirectory {
			d.mappedOnly += "(distinguishedName=" + ldap.EscapeFilter(gr.Group) + ")"
		}
	}
	if d.mappedOnly != "" {
		d.mappedOnly = "(|" + d.mappedOnly + ")"
	}
	return d, nil
}

// SetLogger makes l the logger of what the operator must fix (a password
// policy that cannot be read). It is called before the directory is used.
func (d *Directory) SetLogger(l *zap.Logger) { d.log = l }

// Close closes the pooled connections.
func (d *Directory) Close() error { d.pool.close(); return nil }

// FailedBinds is the bound on wrong passwords checked against the
// directory for one name, and its window (Config.FailedBinds); a limit
// below 1 is no bound.
func (d *Directory) FailedBinds() (limit int, window time.Duration) {
	return d.cfg.FailedBinds, time.Duration(d.cfg.FailedBindsWindow)
}

// StatusTTL is how long a status is used before it is read again.
func (d *Directory) StatusTTL() time.Duration { return time.Duration(d.cfg.StatusTTL) }

// Domains are the names of the directory's domain, from the DC= parts of
// base_dn: "example" and "example.test" for DC=example,DC=test. Its users
// write EXAMPLE\alice and alice@example.test (see account.AccountName).
func (d *Directory) Domains() []string { return d.domains }

// Status returns the account's status: from the cache while it is younger
// than status_ttl and was read under mark, else read again. When the
// directory cannot be read it returns an error wrapping ErrUnavailable:
// never a stale status past status_ttl, never a pass.
//
// id is the entry ID the account's Gatehouse record was made for (Entry.ID;
// "" when it has none): when name finds no entry, the entry of that ID is
// looked for under its own name, so that an account renamed in the
// directory (a new sAMAccountName or uid) keeps its record (renamed).
// When name finds another entry (its old name given to a new account, or
// two accounts' names swapped), that entry is the answer, and the record
// is the caller's to refuse as replaced: its requests reach the upstreams
// under name, which the directory now gives someone else.
//
// mark names the latest refresh of the account an administrator asked for
// ("" for none), on whichever instance of a cluster: the caller keeps it
// in the shared store (account.Service), so that a refresh reaches every
// instance's cache, not only the one that answered it.
func (d *Directory) Status(ctx context.Context, name, id, mark string) (Entry, error) {
	e, ok := d.status.Get(name)
	if ok && e.answers(id, mark) && d.now().Sub(e.CheckedAt) < time.Duration(d.cfg.StatusTTL) {
		return e, nil
	}
	return d.read(name, id, mark)
}

// Cached returns the cached status of name without reading the directory,
// when it was read under mark for the entry id (see Status).
func (d *Directory) Cached(name, id, mark string) (Entry, bool) {
	e, ok := d.status.Peek(name)
	return e, ok && e.answers(id, mark)
}

// answers reports whether e, cached, is the status Status(name, id, mark)
// asks for: read under mark, and the entry of id, or for id "" whatever
// name found, or what a read that looked for the entry of id found.
func (e Entry) answers(id, mark string) bool {
	return e.mark == mark && (id == "" || e.ID == id || e.soughtID == id)
}

// Refresh reads the account's status from the directory now and caches
// it; concurrent refreshes of one account share a read. A change from the
// cached status is reported as an event.
func (d *Directory) Refresh(_ context.Context, name string) (Entry, error) {
	return d.read(name, "", "")
}

// read is Refresh, the status read under mark for the entry id (Status):
// reads share only with reads under the same mark, so that one asked for
// by a refresh never takes the answer of a read begun before it.
func (d *Directory) read(name, id, mark string) (Entry, error) {
	v, err, _ := d.reads.Do(name+"\x00"+id+"\x00"+mark, func() (any, error) { return d.lookup(name, id, mark != "") })
	if err != nil {
		return Entry{}, err
	}
	e := v.(Entry)
	e.mark = mark
	d.mu.Lock()
	old, had := d.status.Peek(name)
	if !had || !old.CheckedAt.After(e.CheckedAt) {
		d.status.Add(name, e)
	}
	d.mu.Unlock()
	if had && (old.Active() != e.Active() || old.Problem != e.Problem || !slices.Equal(old.Roles, e.Roles)) {
		d.notify(Event{Username: name, What: "directory status changed: " + describe(old) + " → " + describe(e)})
	}
	if had && old.Found && e.Found && old.Name != e.Name && !strings.EqualFold(e.Name, name) {
		d.notify(Event{Username: name, What: fmt.Sprintf("directory account renamed: its entry (%s) is named %q now; it keeps this Gatehouse user, which %q signs in to", e.DN, e.Name, e.Name)})
	}
	return e, nil
}

// Report sends ev to the audit log, as the directory's own events go: for
// a refusal the caller decides about an account of the directory.
func (d *Directory) Report(ev Event) { d.notify(ev) }

// describe is an entry's state in words, for the audit log.
func describe(e Entry) string {
	switch {
	case !e.Found:
		return "deleted"
	case e.Problem != "":
		return e.Problem
	default:
		return fmt.Sprintf("active, roles %v", e.Roles)
	}
}

// Bind checks name's password by a bind as its entry. It returns the
// account's fresh status on success (which may still have a Problem),
// ErrWrongPassword for a wrong password or an unknown account, and an
// error wrapping ErrUnavailable when the directory cannot be reached.
// A refusal costs one search and one bind whether or not the name
// exists (see BindLocated).
func (d *Directory) Bind(ctx context.Context, name, password string) (Entry, error) {
	e, err := d.Locate(ctx, name)
	if err != nil {
		return Entry{}, err
	}
	return d.BindLocated(ctx, name, e, password)
}

// Locate reads name's entry now, without its groups (one search; the
// status cache is not changed): what a password check needs first, the
// same work whether or not the directory has the name.
func (d *Directory) Locate(_ context.Context, name string) (Entry, error) {
	return d.locate(name)
}

// BindLocated is Bind of the entry e that Locate just read for name. A
// name the directory does not have is bound all the same, to a DN no
// entry has, and its groups are read only once the password is right
// (its status is returned, read as Refresh reads it, for the entry's
// ID): a refusal then tells a guesser nothing of which names the
// directory has by its time.
func (d *Directory) BindLocated(_ context.Context, name string, e Entry, password string) (Entry, error) {
	if !e.Found {
		_ = d.pool.bind(noSuchEntry+","+d.cfg.BaseDN, password)
		what := "no such account"
		if e.ambiguous {
			what = "the name finds several entries, so it is no account's (user_filter must find one entry per name)"
		}
		d.notify(Event{Username: name, What: "directory bind failed: " + what, Failure: true})
		return Entry{}, ErrWrongPassword
	}
	switch err := d.pool.bind(e.DN, password); {
	case errors.Is(err, errWrongPassword):
		d.notify(Event{Username: name, What: "directory bind failed: " + bindRefusal(err), Failure: true})
		return Entry{}, ErrWrongPassword
	case err != nil && isNetworkError(err) || errors.Is(err, ErrUnavailable):
		return Entry{}, fmt.Errorf("%w: %w", ErrUnavailable, scrub(err))
	case err != nil:
		// Refused for another reason (a disabled AD account answers
		// invalidCredentials, others answer e.g. unwillingToPerform).
		d.notify(Event{Username: name, What: "directory bind failed: " + scrub(err).Error(), Failure: true})
		return Entry{}, ErrWrongPassword
	}
	// The status of the entry just bound: name is the account's, which
	// may have been the entry's before a rename.
	return d.read(name, e.ID, "")
}

// Cover does the directory work a wrong password for name costs, without
// binding as name: a read of the entry (Locate), and with a password a
// bind to a DN no entry has. A sign-in refused before its check (the
// account locked here, or throttled: no password) then takes as long as
// one refused by it, and a bind as name would count against the
// directory's own lockout.
//
// While the directory does not answer, no cover waits for it: every name
// that is not a local account's is answered 503 then, which tells local
// accounts apart by itself, and a local account (an administrator's way
// in to fix the directory) would wait for the directory's timeout twice
// at each sign-in, holding a slot of the password checks meanwhile. A
// read that fails pauses the covers for failedFor.
func (d *Directory) Cover(ctx context.Context, name, password string) {
	if d.now().UnixNano() < d.coversPausedUntil.Load() {
		return
	}
	if _, err := d.Locate(ctx, name); err != nil {
		d.coversPausedUntil.Store(d.now().Add(failedFor).UnixNano())
		return
	}
	if password != "" {
		_ = d.pool.bind(noSuchEntry+","+d.cfg.BaseDN, password)
	}
}

// adBindRefusals are the reasons Active Directory gives for a bind it
// refuses with invalidCredentials, in its diagnostic message ("80090308:
// LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data
// 773, v1db1"), by the code after "data". Samba 4.17 gave each of them
// only for the right password, and 52e (a wrong one) otherwise.
var adBindRefusals = map[string]string{
	"530": "the account may not sign in at this time (logonHours)",
	"531": "the account may not sign in from this computer (userWorkstations)",
	"532": "the password expired",
	"533": "the account is disabled",
	"701": "the account expired (accountExpires)",
	"773": "the password must be changed at the next logon",
	"775": "the account is locked out",
}

// adDataCode finds the code of an Active Directory bind refusal.
var adDataCode = regexp.MustCompile(`\bdata ([0-9a-fA-F]{3,8})\b`)

// adRefusal is a bind Active Directory refused for the account's state,
// by its code (adBindRefusals): a wrong password to the client, as any
// refused bind is (errors.Is errWrongPassword).
type adRefusal string

func (r adRefusal) Error() string {
	return adBindRefusals[string(r)] + " (Active Directory refused the bind: data " + string(r) + ")"
}

// Is makes an adRefusal a wrong password.
func (r adRefusal) Is(target error) bool { return target == errWrongPassword }

// bindRefusal says why the directory refused a bind for its credentials
// (err wraps errWrongPassword), for the audit log: "wrong password", or
// the account state Active Directory named (adRefusal), so that an
// administrator told "wrong password" by a user sure of it sees that the
// directory refused the account.
func bindRefusal(err error) string {
	var r adRefusal
	if errors.As(err, &r) {
		return r.Error()
	}
	return "wrong password"
}

// noSuchEntry is the RDN of the entry Bind binds to for a name the
// directory does not have: none has it.
const noSuchEntry = "cn=gatehouse-no-such-entry-7f3a9c"

// ErrWrongPassword is Bind's answer to a wrong password or an unknown
// account: the same for both.
var ErrWrongPassword = errors.New("directory: invalid username or password")

// userAttributes are read from a user's entry, per flavor.
var userAttributes = map[Flavor][]string{
	ActiveDirectory: {"userAccountControl", uacComputed, "lockoutTime", "accountExpires", "pwdLastSet", "mobile", "telephoneNumber", "objectGUID", "objectSid", "primaryGroupID"},
	OpenLDAP:        {"pwdAccountLockedTime", "pwdReset", "pwdPolicySubentry", "pwdChangedTime", "mobile", "telephoneNumber", "entryUUID"},
}

// lookup reads name's entry, or the entry id when name finds none
// (renamed: not when name is another entry's now, see Status), and, when
// groups are mapped to roles, its groups:
// those whose member it is, and an Active Directory account's primary
// group with that group's own (cached per status_ttl, but read again for
// a read a refresh asked for: marked).
func (d *Directory) lookup(name, id string, marked bool) (Entry, error) {
	e, err := d.locate(name)
	if err == nil && id != "" && e.ID != id {
		if !e.Found && !e.ambiguous {
			e, err = d.renamed(id, e)
		}
		if err == nil && e.ID != id {
			e.soughtID = id
		}
	}
	if err != nil || !e.Found || len(d.groups) == 0 {
		return e, err
	}
	groups, err := d.groupsOf(e.DN)
	if err == nil && e.primaryGroup != "" {
		var primary []string
		primary, err = d.primaryGroupsOf(e.DN, e.primaryGroup, e.CheckedAt, marked)
		groups = append(groups, primary...)
	}
	if advice := d.limitAdvice(err); advice != "" {
		// The directory answers, but not with all the groups: the roles
		// cannot be known, and the account is refused, saying why, rather
		// than every sign-in of it answered as an outage. Accounts in
		// fewer groups are read as ever.
		if due, count := d.groupLimits.Due(d.now()); due {
			d.log.Error("directory: an account's groups cannot be read in full, so it is refused ("+ProblemGroupLimit+"): "+advice,
				zap.String("user", name), zap.String("dn", e.DN), zap.Int64("accounts_refused_since_last_line", count), zap.Error(scrub(err)))
		}
		if e.Problem == "" {
			e.Problem = ProblemGroupLimit
		}
		return e, nil
	}
	if err != nil {
		return Entry{}, unavailable(err)
	}
	e.Roles = d.roles(groups)
	e.JoinedRoles = identity.JoinRoles(e.Roles)
	if e.Problem == "" && len(d.groups) > 0 && len(e.Roles) == 0 {
		e.Problem = "in no mapped group"
	}
	return e, nil
}

// locate reads name's entry (one search), without its groups: its roles
// are not set, nor the problem of being in no mapped group.
func (d *Directory) locate(name string) (Entry, error) {
	now := d.now()
	entries, err := d.pool.search("search_user", d.cfg.BaseDN, fill(d.cfg.UserFilter, "{username}", name), d.userAttributes)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		entries, err = nil, nil
	}
	if advice := d.limitAdvice(err); advice != "" {
		if due, count := d.userLimits.Due(d.now()); due {
			d.log.Error("directory: a user search cannot be completed, so names Gatehouse has no record of cannot sign in, nor directory accounts be read (503): "+advice,
				zap.Int64("searches_failed_since_last_line", count), zap.Error(scrub(err)))
		}
	}
	if err != nil {
		return Entry{}, unavailable(err)
	}
	if len(entries) > 1 {
		// An ambiguous name: no account. Logged, as a user_filter that
		// finds more than the name (an | for an &) makes every name one.
		if due, count := d.ambiguousNames.Due(now); due {
			d.log.Warn("directory: user_filter finds several entries for a name, so that name is no account's; if this is every name, user_filter is too wide (it must find one entry per name, e.g. (&(objectClass=user)(sAMAccountName={username})))",
				zap.String("name", name), zap.Int("entries", len(entries)), zap.Strings("dns", []string{entries[0].DN, entries[1].DN}),
				zap.Int64("names_since_last_line", count), zap.String("user_filter", d.cfg.UserFilter))
		}
		return Entry{CheckedAt: now, ambiguous: true}, nil
	}
	if len(entries) == 0 {
		return Entry{CheckedAt: now}, nil
	}
	u := entries[0]
	e := Entry{Found: true, DN: u.DN, CheckedAt: now, Mobile: u.GetAttributeValue("mobile"), ID: u.GetAttributeValue("entryUUID"),
		Name: ownName(u, d.cfg.NameAttribute)}
	if guid := u.GetRawAttributeValue("objectGUID"); len(guid) > 0 {
		e.ID = hex.EncodeToString(guid)
	}
	if e.Mobile == "" {
		e.Mobile = u.GetAttributeValue("telephoneNumber")
	}
	if sid, ok := primaryGroupSID(u.GetRawAttributeValue("objectSid"), u.GetAttributeValue("primaryGroupID")); ok && d.cfg.Flavor == ActiveDirectory {
		e.primaryGroup = sid
	}
	var policy passwordPolicy
	if d.cfg.Flavor == OpenLDAP {
		own := u.GetAttributeValue("pwdPolicySubentry")
		dn := own
		if dn == "" {
			dn = d.cfg.DefaultPasswordPolicy
		}
		policy, err = d.policyOf(dn, now)
		switch {
		case errors.Is(err, ErrUnavailable):
			return Entry{}, err
		case err != nil && own == "":
			// The operator named the server's default policy, and it
			// cannot be read: the account is refused rather than held to
			// no policy, whose expired password would pass through its
			// keys, tokens and sessions (a state that needs no policy,
			// e.g. disabled, is told first).
			if e.Problem = d.problem(u, passwordPolicy{}, now); e.Problem == "" {
				e.Problem = ProblemPolicyUnreadable
			}
			return e, nil
		}
		// An account's own pwdPolicySubentry that cannot be read
		// (logged) is an unknown policy, as before: a lockout lasts until
		// the next bind, a password does not expire here.
	}
	e.Problem = d.problem(u, policy, now)
	return e, nil
}

// renamed returns the entry whose ID is id, found again under its own
// name (name_attribute), when it is one user_filter finds: an account
// renamed in the directory (Active Directory's sAMAccountName, a uid
// changed by a modrdn) keeps its Gatehouse record, its keys and second
// factors, rather than being taken for deleted. byName is what the
// record's name found (no entry): the answer when the
// entry of id has no name, or no longer one user_filter finds (moved out
// of base_dn, or out of the filter's reach: refused, as it was meant to
// be). One search more, only for such a read.
func (d *Directory) renamed(id string, byName Entry) (Entry, error) {
	filter := "(entryUUID=" + ldap.EscapeFilter(id) + ")"
	if d.cfg.Flavor == ActiveDirectory {
		guid, err := hex.DecodeString(id)
		if err != nil {
			return byName, nil
		}
		filter = "(objectGUID=" + binaryFilterValue(string(guid)) + ")"
	}
	if d.cfg.NameAttribute == "" {
		return byName, nil // no name to find it by with user_filter
	}
	entries, err := d.pool.search("search_user", d.cfg.BaseDN, filter, []string{d.cfg.NameAttribute})
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		entries, err = nil, nil
	}
	if err != nil {
		return Entry{}, unavailable(err)
	}
	if len(entries) != 1 {
		return byName, nil
	}
	name := ownName(entries[0], d.cfg.NameAttribute)
	if name == "" {
		return byName, nil
	}
	e, err := d.locate(name)
	if err != nil || e.Found && e.ID == id {
		return e, err
	}
	return byName, nil
}

// ownName is the value of attr that names the account of u: its only
// one, or of several the one in u's DN (uid=gina,… with uid: gina and
// uid: gina.smith is gina). Empty when u has none, several none of which
// is in its DN (servers return values in no set order, and a user who may
// add a value to their own entry must not choose the name), or attr is
// empty (Config.NameAttribute none).
func ownName(u *ldap.Entry, attr string) string {
	if attr == "" {
		return ""
	}
	values := u.GetAttributeValues(attr)
	if len(values) > 1 {
		if dn, err := ldap.ParseDN(u.DN); err == nil && len(dn.RDNs) > 0 {
			for _, a := range dn.RDNs[0].Attributes {
				if !strings.EqualFold(a.Type, attr) {
					continue
				}
				for _, v := range values {
					if strings.EqualFold(v, a.Value) {
						return v
					}
				}
			}
		}
	}
	if len(values) != 1 {
		return ""
	}
	return values[0]
}

// ProblemGroupLimit is the Problem of an account whose groups the
// directory does not return in full to the service account (a size or
// administrative limit stopped the search): its roles cannot be known.
const ProblemGroupLimit = "in more groups than the directory's search limits let Gatehouse read"

// limitAdvice says, for err of a search that a limit of the directory
// stopped, which limit and what to change; "" for any other error (a time
// limit is an outage: the next search may finish in time).
func (d *Directory) limitAdvice(err error) string {
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded):
		return "the directory's size limit for the service account stopped the search; raise it for that account (slapd: limits dn.exact=\"" + d.cfg.BindDN +
			"\" size.soft=1000 size.hard=unlimited; a paged search is held to size.prtotal, by default the hard limit, so a sizelimit alone does not lift it)"
	case ldap.IsErrorWithCode(err, ldap.LDAPResultAdminLimitExceeded):
		return "the directory's administrative limit stopped the search (slapd: size.unchecked, the entries a search may examine: index the attributes of user_filter and group_filter, e.g. index uid,member eq, or raise size.unchecked for the service account with limits dn.exact=\"" +
			d.cfg.BindDN + "\"; Active Directory: MaxResultSetSize, MaxQueryDuration)"
	}
	return ""
}

func unavailable(err error) error {
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, scrub(err))
}

// Active Directory's userAccountControl bits, the constructed attribute
// that holds the ones the domain controller computes (UF_LOCKOUT), and
// accountExpires' "never".
const (
	uacDisabled                 = 0x2
	uacLockout                  = 0x10
	uacDontExpirePassword       = 0x10000
	uacSmartcardRequired        = 0x40000
	uacPasswordExpired          = 0x800000
	uacComputed                 = "msDS-User-Account-Control-Computed"
	neverExpires          int64 = 0x7FFFFFFFFFFFFFFF
)

// problem says why the entry may not sign in, by flavor; "" when it may.
// policy is an OpenLDAP account's password policy (passwordPolicy).
func (d *Directory) problem(u *ldap.Entry, policy passwordPolicy, now time.Time) string {
	switch d.cfg.Flavor {
	case ActiveDirectory:
		// A user object always has userAccountControl: without it the
		// service account may not read the account's state, which is
		// taken for the worst, as an unreadable one is.
		uac, ok := adInteger(u, "userAccountControl")
		if !ok || u.GetAttributeValue("userAccountControl") == "" || uac&uacDisabled != 0 {
			return "disabled"
		}
		if adLocked(u) {
			return "locked"
		}
		expires, ok := adInteger(u, "accountExpires")
		if !ok || (expires > 0 && expires != neverExpires && expires < fileTimeOf(now)) {
			return "expired"
		}
		// "Must change at next logon", which an account whose password
		// never expires or that must sign in with a smart card is not
		// held to (MS-SAMR 3.1.5.14.4). Told before an expired password:
		// the domain controller computes UF_PASSWORD_EXPIRED for it too
		// (Samba 4.17 did), and "password expired" sent administrators to
		// the domain's maximum password age instead.
		if v := u.GetAttributeValue("pwdLastSet"); v == "0" && uac&(uacDontExpirePassword|uacSmartcardRequired) == 0 {
			return "must change its password"
		}
		if adPasswordExpired(u) {
			return "password expired"
		}
	case OpenLDAP:
		switch v := u.GetAttributeValue("pwdAccountLockedTime"); {
		case v == "000001010000Z":
			return "disabled" // ppolicy: locked until an administrator unlocks it
		case v != "" && !policy.lockoutOver(v, now):
			return "locked"
		}
		// ppolicy's pwdMustChange: reset by an administrator, the password
		// must be changed; the directory lets its bind change only that.
		if strings.EqualFold(u.GetAttributeValue("pwdReset"), "TRUE") {
			return "must change its password"
		}
		if policy.expired(u.GetAttributeValue("pwdChangedTime"), now) {
			return "password expired"
		}
	}
	return ""
}

// adPasswordExpired reports whether the domain controller computed the
// account's password as expired (UF_PASSWORD_EXPIRED in
// msDS-User-Account-Control-Computed: older than the domain's maximum
// password age, or to be changed at the next logon; never for an account
// whose password does not expire). The directory refuses its bind; its
// application keys, connector tokens and sessions are refused too. A
// computed value that is not an integer is taken for the worst; one that
// is not there (a server that does not compute it) for none, so that such
// a server's accounts are not all refused: pwdLastSet 0 still is.
func adPasswordExpired(u *ldap.Entry) bool {
	computed, ok := adInteger(u, uacComputed)
	return !ok || computed&uacPasswordExpired != 0
}

// adLocked reports whether an Active Directory account is locked out now.
// lockoutTime stays set after the domain's lockout duration ends, until
// the account's next logon (which an account used only through Gatehouse
// never makes), so the domain controller's own verdict is read:
// msDS-User-Account-Control-Computed's UF_LOCKOUT, which counts the
// duration. Where that is not readable, a set lockoutTime is a lockout.
func adLocked(u *ldap.Entry) bool {
	if v := u.GetAttributeValue(uacComputed); v != "" {
		computed, err := strconv.ParseInt(v, 10, 64)
		return err != nil || computed&uacLockout != 0
	}
	t, _ := strconv.ParseInt(u.GetAttributeValue("lockoutTime"), 10, 64)
	return t > 0
}

// adInteger reads the integer attribute name of an Active Directory
// entry: 0 when the entry has none, and ok false when it holds something
// else than an integer (the caller takes that for the worst).
func adInteger(u *ldap.Entry, name string) (v int64, ok bool) {
	s := u.GetAttributeValue(name)
	if s == "" {
		return 0, true
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

// fileTimeOf is t as a Windows FILETIME (100 ns since 1601), in which
// Active Directory's times are compared: a FILETIME converted to a Go
// time instead overflows past the year 2262, and the 9999-12-31 that
// tools write for "never" would read as a date in 1816.
func fileTimeOf(t time.Time) int64 {
	const epochDiff = 116444736000000000 // 1601 to 1970 in 100 ns
	return t.Unix()*10_000_000 + int64(t.Nanosecond()/100) + epochDiff
}

// maxNesting bounds how deep nested groups are followed.
const maxNesting = 8

// groupsOf returns the DNs of the groups dn belongs to. Active Directory
// follows nesting itself (LDAP_MATCHING_RULE_IN_CHAIN) and is asked for the
// mapped groups alone; for other servers the groups of each group found
// are searched in turn, a page at a time.
func (d *Directory) groupsOf(dn string) ([]string, error) {
	var all []string
	frontier := []string{dn}
	for depth := 0; len(frontier) > 0 && depth < maxNesting; depth++ {
		var next []string
		for _, member := range frontier {
			filter := fill(d.cfg.GroupFilter, "{dn}", member)
			if d.mappedOnly != "" {
				filter = "(&" + filter + d.mappedOnly + ")"
			}
			entries, err := d.pool.searchPaged("search_groups", d.cfg.GroupBaseDN, filter, []string{"1.1"})
			if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
				continue
			}
			if err != nil {
				return nil, err
			}
			for _, g := range entries {
				if !slices.Contains(all, g.DN) {
					all = append(all, g.DN)
					next = append(next, g.DN)
				}
			}
		}
		if d.cfg.Flavor == ActiveDirectory {
			break
		}
		frontier = next
	}
	return all, nil
}

// roles maps group DNs to the configured roles.
func (d *Directory) roles(groups []string) []string {
	var roles []string
	for _, g := range groups {
		dn, err := ldap.ParseDN(g)
		if err != nil {
			continue
		}
		for _, gr := range d.groups {
			if gr.dn.EqualFold(dn) && !slices.Contains(roles, gr.role) {
				roles = append(roles, gr.role)
			}
		}
	}
	slices.Sort(roles)
	return roles
}
