package account

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/directory"
	"github.com/gatehouse-auth/gatehouse/directory/directorytest"
	"github.com/gatehouse-auth/gatehouse/directory/slapdtest"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/hashslots"
	"github.com/gatehouse-auth/gatehouse/internal/hashslots/hashslotstest"
)

// TestHasAdminRoleDirectory: a directory account holds the admin role its
// group maps to whichever record of it the caller has (the stored one
// lists no roles), and none once the directory takes it out of the group;
// a local account's assigned admin role still counts.
func TestHasAdminRoleDirectory(t *testing.T) {
	srv := slapdtest.Start(t)
	srv.AddUser("dora", "dora password", "", slapdtest.OperatorsDN)
	s, d := newDirectoryService(t, srv, directory.GroupRole{Group: slapdtest.OperatorsDN, Role: "admins"})
	ctx := context.Background()
	if _, err := s.PutRole(ctx, Role{Name: "admins", Admin: true, Rules: []Rule{{Methods: []string{"*"}, Paths: []string{"*"}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DirectoryUser(ctx, "dora"); err != nil {
		t.Fatal(err)
	}
	stored, err := s.UserByCanonicalName(ctx, "dora")
	if err != nil || !stored.FromDirectory() || len(stored.Roles) != 0 {
		t.Fatalf("dora's stored record: %+v %v", stored, err)
	}
	if admin, err := s.HasAdminRole(ctx, stored); err != nil || !admin {
		t.Errorf("a directory account mapped to an admin role: HasAdminRole = %v %v; want true", admin, err)
	}

	pw := "correct horse"
	local, err := s.CreateUser(ctx, NewUser{Username: "root", Roles: []string{"admins"}, Password: &pw})
	if err != nil {
		t.Fatal(err)
	}
	if admin, err := s.HasAdminRole(ctx, local); err != nil || !admin {
		t.Errorf("a local admin: HasAdminRole = %v %v", admin, err)
	}

	srv.Modify("dn: " + slapdtest.OperatorsDN + "\nchangetype: modify\ndelete: member\nmember: uid=dora," + slapdtest.PeopleDN + "\n")
	if _, err := d.Refresh(ctx, "dora"); err != nil {
		t.Fatal(err)
	}
	if admin, err := s.HasAdminRole(ctx, stored); err != nil || admin {
		t.Errorf("a directory account out of the group: HasAdminRole = %v %v; want false", admin, err)
	}
}

// newDirectoryService is a test service whose accounts may come from
// srv, with its groups mapped to roles as given (statuses kept an hour).
func newDirectoryService(t *testing.T, srv *slapdtest.Server, groupRoles ...directory.GroupRole) (*Service, *directory.Directory) {
	t.Helper()
	cfg := slapdConfig(srv)
	cfg.GroupRoles = groupRoles
	return serviceWithDirectory(t, cfg, nil)
}

// slapdConfig is the directory of srv over LDAPS, statuses kept an hour.
func slapdConfig(srv *slapdtest.Server) directory.Config { return directorytest.Config(srv) }

// serviceWithDirectory is a test service with the directory cfg, whose
// LDAP operations observe sees (nil: none).
func serviceWithDirectory(t *testing.T, cfg directory.Config, observe func(op string, began time.Time, err error)) (*Service, *directory.Directory) {
	t.Helper()
	d, err := directory.New(cfg, observe, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	s := newTestService(t)
	s.SetDirectory(d)
	return s, d
}

// TestDirectoryRolesAreJoinedOncePerRead: a directory account's roles
// (from its groups) are joined when its status is read from the directory,
// shared by the requests until the next read, and joined again from what
// that read found.
func TestDirectoryRolesAreJoinedOncePerRead(t *testing.T) {
	srv := slapdtest.Start(t)
	srv.AddUser("dora", "dora password", "", slapdtest.ShiftDN) // and so in operators, which nests shift-a
	s, d := newDirectoryService(t, srv,
		directory.GroupRole{Group: slapdtest.OperatorsDN, Role: "ops"}, directory.GroupRole{Group: slapdtest.ShiftDN, Role: "shift"})
	ctx := context.Background()
	for _, name := range []string{"ops", "shift"} {
		if _, err := s.PutRole(ctx, Role{Name: name, Rules: []Rule{{Methods: []string{"GET"}, Paths: []string{"/*"}}}}); err != nil {
			t.Fatal(err)
		}
	}
	dora, err := s.DirectoryUser(ctx, "dora")
	if err != nil {
		t.Fatal(err)
	}
	id := identity.Identity{Username: "dora", UserID: dora.ID, Method: identity.MethodBasic}
	checkRolesJoinedOnce(t, s, id, "before", "ops,shift")
	srv.Modify("dn: " + slapdtest.ShiftDN + "\nchangetype: modify\ndelete: member\nmember: uid=dora," + slapdtest.PeopleDN + "\n")
	srv.Modify("dn: " + slapdtest.OperatorsDN + "\nchangetype: modify\nadd: member\nmember: uid=dora," + slapdtest.PeopleDN + "\n")
	if _, err := d.Refresh(ctx, "dora"); err != nil {
		t.Fatal(err)
	}
	checkRolesJoinedOnce(t, s, id, "after the directory took dora out of shift-a", "ops")
}

// gate is an Attempts whose every attempt meets the same gate.
type gate Gate

// signInOutcome signs name in to s with password, every gate open, and
// returns the outcome; an error fails t.
func signInOutcome(t *testing.T, s *Service, name, password string) Outcome {
	t.Helper()
	res, err := s.SignIn(context.Background(), name, password, gate(GateOpen))
	if err != nil {
		t.Fatal(err)
	}
	return res.Outcome
}

func (g gate) Begin(context.Context, string, *User) (Attempt, Gate, error) {
	return settled{}, Gate(g), nil
}

type settled struct{}

func (settled) Settle(context.Context, SignInResult) error { return nil }

// TestRefusalsCostTheSameDirectoryWork: sign-ins the client cannot tell
// apart (a throttled answer; a wrong password, whether the name is
// unknown, a local account's, used before or never, or the account
// locked here) do the same directory operations and hashes whoever holds
// the name — one search of the entry, and a bind and an argon2 hash
// unless throttled; groups are read only for a right password — so
// their timing does not tell a guesser which names exist, nor which are
// local accounts. A locked account is never bound as itself. (Two
// outside reviews measured real names answering sooner, then later, by
// group searches and a second read; a third measured a local account's
// wrong password answered 29 ms later than any other name's, by its
// hash, without a search or a bind.)
func TestRefusalsCostTheSameDirectoryWork(t *testing.T) {
	srv := slapdtest.Start(t)
	srv.AddUser("dora", "dora password", "", slapdtest.ShiftDN) // in operators through shift-a: two levels of groups
	srv.AddUser("nina", "nina password", "", slapdtest.ShiftDN)
	var mu sync.Mutex
	ops := map[string]int{}
	var order []string // the hashes and binds, in turn
	cfg := slapdConfig(srv)
	cfg.GroupRoles = []directory.GroupRole{{Group: slapdtest.OperatorsDN, Role: "ops"}}
	s, _ := serviceWithDirectory(t, cfg, func(op string, _ time.Time, _ error) {
		mu.Lock()
		defer mu.Unlock()
		ops[op]++
		if op == "bind" {
			order = append(order, op)
		}
	})
	ctx := context.Background()
	pw := "lola tulip harbour"
	if _, err := s.CreateUser(ctx, NewUser{Username: "lola", Roles: []string{}, Password: &pw}); err != nil {
		t.Fatal(err)
	}
	countHashes(t, func() { mu.Lock(); ops["hash"]++; order = append(order, "hash"); mu.Unlock() })
	// work returns the operations a sign-in made; a hash it made came
	// before its bind, whoever checked the password (a local account's
	// directory work done before its hash, where the others' comes after,
	// left a local account answered 1.8 ms sooner).
	work := func(name, password string, g Gate) string {
		mu.Lock()
		clear(ops)
		order = nil
		mu.Unlock()
		if _, err := s.SignIn(ctx, name, password, gate(g)); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(order) == 2 && order[0] != "hash" {
			t.Errorf("%s: %v; want the hash before the bind", name, order)
		}
		return fmt.Sprint(ops)
	}
	if got := work("dora", "dora password", GateOpen); !strings.Contains(got, "search_groups") {
		t.Fatalf("a right password read %s; want its groups read", got)
	}
	// A bind goes on a connection of its own (never sent twice).
	want := map[Gate]string{GateClosed: "map[search_user:1]", GateOpen: "map[bind:1 connect:1 hash:1 search_user:1]", GateLockedOut: "map[bind:1 connect:1 hash:1 search_user:1]"}
	for _, c := range []struct {
		what, name string
		gate       Gate
	}{
		{"throttled, used before", "dora", GateClosed}, {"throttled, unknown", "nobody", GateClosed},
		{"throttled, local", "lola", GateClosed},
		{"wrong password, used before", "dora", GateOpen}, {"wrong password, never used", "nina", GateOpen},
		{"wrong password, unknown", "nobody", GateOpen}, {"wrong password, local", "lola", GateOpen},
		{"locked", "dora", GateLockedOut}, {"locked, local", "lola", GateLockedOut},
	} {
		if got := work(c.name, "a wrong guess", c.gate); got != want[c.gate] {
			t.Errorf("%s (%s): %s; want %s", c.what, c.name, got, want[c.gate])
		}
	}
}

// TestFailedBindsAreBounded: at most failed_binds wrong passwords for a
// name are checked against the directory within the window, whatever the
// front end (so that guesses through Gatehouse cannot set off the
// directory's own lockout); past them a sign-in is throttled without a
// bind, its right password too. A right password takes its count back;
// guesses sent at once are counted before any is checked; a name the
// directory does not have, and a local account's, are bounded alike, so
// the bound tells nothing of which names exist.
func TestFailedBindsAreBounded(t *testing.T) {
	srv := slapdtest.Start(t)
	srv.AddUser("dora", "dora password", "", slapdtest.OperatorsDN)
	srv.AddUser("nina", "nina password", "", slapdtest.OperatorsDN)
	var binds atomic.Int64
	cfg := slapdConfig(srv)
	cfg.FailedBinds = 2
	s, _ := serviceWithDirectory(t, cfg, func(op string, _ time.Time, _ error) {
		if op == "bind" {
			binds.Add(1)
		}
	})
	ctx := context.Background()
	pw := "lee tulip harbour 1"
	if _, err := s.CreateUser(ctx, NewUser{Username: "lee", Password: &pw}); err != nil { // a local account: bounded alike
		t.Fatal(err)
	}
	try := func(name, password string) Outcome { t.Helper(); return signInOutcome(t, s, name, password) }
	for i, step := range []struct {
		name, password string
		want           Outcome
	}{
		{"dora", "wrong 1", OutcomeWrong}, {"dora", "dora password", OutcomeOK}, {"dora", "wrong 2", OutcomeWrong},
		{"dora", "dora password", OutcomeThrottled}, {"dora", "wrong 3", OutcomeThrottled},
		{"nobody", "wrong 1", OutcomeWrong}, {"nobody", "wrong 2", OutcomeWrong}, {"nobody", "wrong 3", OutcomeThrottled},
		{"lee", "wrong 1", OutcomeWrong}, {"lee", "wrong 2", OutcomeWrong}, {"lee", "lee tulip harbour 1", OutcomeThrottled},
	} {
		before := binds.Load()
		if got := try(step.name, step.password); got != step.want {
			t.Fatalf("step %d, %s with %q: outcome %d; want %d", i, step.name, step.password, got, step.want)
		}
		if bound := binds.Load() - before; step.want == OutcomeThrottled && bound != 0 {
			t.Errorf("step %d: a throttled sign-in made %d binds", i, bound)
		}
	}
	var wrong atomic.Int64
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if try("nina", fmt.Sprintf("guess %d", i)) == OutcomeWrong {
				wrong.Add(1)
			}
		})
	}
	wg.Wait()
	if n := wrong.Load(); n != 2 {
		t.Errorf("8 guesses at nina at once: %d checked; want 2", n)
	}
}

// TestEveryNameOfAnEntryIsOneAccount: an entry found by several names (a
// second uid) is one account, known by its own name (the uid in its DN):
// a sign-in, a lookup and the bound on failed binds under either name are
// the account's, so no name of it has second factors, keys or bounds of
// its own. A record made under the other name before (by an older
// Gatehouse) is blocked, not a second account; with name_attribute none
// each name is its own account, as it was.
func TestEveryNameOfAnEntryIsOneAccount(t *testing.T) {
	srv := slapdtest.Start(t)
	dn := srv.AddUser("gina", "gina password", "", slapdtest.OperatorsDN)
	srv.Modify("dn: " + dn + "\nchangetype: modify\nadd: uid\nuid: gina.smith\n")
	cfg := slapdConfig(srv)
	cfg.FailedBinds = 3
	s, _ := serviceWithDirectory(t, cfg, nil)
	ctx := context.Background()

	res, err := s.SignIn(ctx, "Gina.Smith", "gina password", gate(GateOpen))
	if err != nil || res.Outcome != OutcomeOK || res.Name != "gina" || res.User.Username != "gina" {
		t.Fatalf("signing in by the second uid: %+v %v; want the account gina", res, err)
	}
	if u, err := s.DirectoryUser(ctx, "gina.smith"); err != nil || u.Username != "gina" {
		t.Fatalf("DirectoryUser(gina.smith) = %+v %v; want gina's record", u, err)
	}
	if _, err := s.UserByCanonicalName(ctx, "gina.smith"); err == nil {
		t.Fatal("a record was made under the second uid")
	}
	try := func(name, password string) Outcome { t.Helper(); return signInOutcome(t, s, name, password) }
	for i, name := range []string{"gina", "gina.smith", "gina"} {
		if got := try(name, "wrong"); got != OutcomeWrong {
			t.Fatalf("wrong password %d as %s: %d", i, name, got)
		}
	}
	if got := try("gina.smith", "gina password"); got != OutcomeThrottled {
		t.Fatalf("after three wrong passwords under both names: %d; want throttled (one bound for the account)", got)
	}

	// The index of entries: an alias with no record of its own is no
	// user to delete (the account is deleted by its own name).
	if err := s.DeleteUser(ctx, "gina.smith"); !errors.Is(err, failure.ErrNotFound) {
		t.Fatalf("deleting the second uid, which has no record: %v; want not found", err)
	}
	if u, err := s.User(ctx, "gina"); err != nil || u.Username != "gina" {
		t.Fatalf("gina after deleting her second uid: %+v %v", u, err)
	}

	// Records an older version made for each name: after the index is
	// built, neither signs in until an administrator deletes one; then
	// both names are the other's.
	old := newTestService(t)
	old.SetDirectory(s.dir)
	e, err := s.dir.Locate(ctx, "gina")
	if err != nil || e.ID == "" {
		t.Fatalf("gina's entry: %+v %v", e, err)
	}
	for _, name := range []string{"gina", "gina.smith"} {
		rec := &User{Username: name, ID: newID(), Roles: []string{}, Status: StatusActive, Source: SourceDirectory, DN: dn, DirectoryID: e.ID}
		raw, _ := json.Marshal(rec)
		if err := old.store.Put(ctx, userPrefix+name, raw, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.IndexDirectoryEntries(ctx, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gina", "gina.smith"} {
		if res, err := old.SignIn(ctx, name, "gina password", gate(GateOpen)); err != nil || res.Outcome != OutcomeBlocked {
			t.Fatalf("%s with two records of the entry: %+v %v; want blocked until one is deleted", name, res, err)
		}
		// What the ESA API, the admin API and every request read.
		if u, err := old.User(ctx, name); err != nil || u.Username != name || u.Active() {
			t.Fatalf("User(%s) with two records of the entry: %+v %v; want the record itself, blocked", name, u, err)
		}
		stored, _ := old.UserByCanonicalName(ctx, name)
		if err := old.Authorize(ctx, &identity.Identity{Username: name, UserID: stored.ID, Method: identity.MethodAppKey}, "GET", "/"); !errors.Is(err, failure.ErrForbidden) {
			t.Fatalf("a request of %s's key with two records of the entry: %v; want refused", name, err)
		}
	}
	if err := old.IndexDirectoryEntries(ctx, zap.NewNop()); err != nil { // at every start: the same
		t.Fatal(err)
	}
	if res, _ := old.SignIn(ctx, "gina", "gina password", gate(GateOpen)); res.Outcome != OutcomeBlocked {
		t.Fatalf("gina after indexing again: %+v; want still blocked", res)
	}
	if err := old.DeleteUser(ctx, "gina"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gina", "gina.smith"} {
		if res, err := old.SignIn(ctx, name, "gina password", gate(GateOpen)); err != nil || res.Outcome != OutcomeOK || res.User.Username != "gina.smith" {
			t.Fatalf("%s once the record gina was deleted: %+v %v; want the account gina.smith", name, res, err)
		}
	}

	// A record an older instance makes for another name after the entry
	// was indexed is not the account: blocked until the next start
	// indexes it, which contests the entry.
	rec := &User{Username: "gina", ID: newID(), Roles: []string{}, Status: StatusActive, Source: SourceDirectory, DN: dn, DirectoryID: e.ID}
	raw, _ := json.Marshal(rec)
	if err := old.store.Put(ctx, userPrefix+"gina", raw, 0); err != nil {
		t.Fatal(err)
	}
	if res, err := old.SignIn(ctx, "gina", "gina password", gate(GateOpen)); err != nil || res.Outcome != OutcomeBlocked {
		t.Fatalf("a record made behind the index: %+v %v; want blocked", res, err)
	}
	if u, err := old.User(ctx, "gina"); err != nil || u.Active() {
		t.Fatalf("User of a record made behind the index: %+v %v; want it blocked", u, err)
	}
	if err := old.IndexDirectoryEntries(ctx, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if res, _ := old.SignIn(ctx, "gina.smith", "gina password", gate(GateOpen)); res.Outcome != OutcomeBlocked {
		t.Fatalf("gina.smith once the start indexed the other record: %+v; want contested", res)
	}
	// Both records deleted behind Gatehouse's back (a restore, redis-cli):
	// the next start frees the entry, which a sign-in then takes.
	for _, name := range []string{"gina", "gina.smith"} {
		if err := old.store.Delete(ctx, userPrefix+name); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.IndexDirectoryEntries(ctx, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if res, err := old.SignIn(ctx, "gina.smith", "gina password", gate(GateOpen)); err != nil || res.Outcome != OutcomeOK || res.User.Username != "gina" {
		t.Fatalf("the entry once its records are gone: %+v %v; want a new account gina", res, err)
	}

	cfg = slapdConfig(srv)
	cfg.NameAttribute = "none"
	apart, _ := serviceWithDirectory(t, cfg, nil)
	if res, err := apart.SignIn(ctx, "gina.smith", "gina password", gate(GateOpen)); err != nil || res.Outcome != OutcomeOK || res.User.Username != "gina.smith" {
		t.Fatalf("name_attribute none: %+v %v; want the account gina.smith", res, err)
	}
}

// TestFirstSignInsByTwoNamesMakeOneRecord: an entry without a name of its
// own (two uids, its DN by cn) is named after the name that found it
// first; first sign-ins by both names at once make one record, which both
// sign in to (the entry is claimed before the record is made).
func TestFirstSignInsByTwoNamesMakeOneRecord(t *testing.T) {
	srv := slapdtest.Start(t)
	dn := "cn=Cal C," + slapdtest.PeopleDN
	srv.Modify("dn: " + dn + "\nobjectClass: inetOrgPerson\ncn: Cal C\nsn: C\nuid: cal\nuid: cally\nuserPassword: cal password\n\n" +
		"dn: " + slapdtest.OperatorsDN + "\nchangetype: modify\nadd: member\nmember: " + dn + "\n")
	cfg := slapdConfig(srv)
	cfg.FailedBinds = 20 // sign-ins at once are counted before they are checked
	s, _ := serviceWithDirectory(t, cfg, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	names := make([]string, 8)
	for i := range names {
		wg.Go(func() {
			// A sign-in that found no free hash slot within BusyWait (8
			// argon2 hashes at once on a busy machine) checked nothing and
			// is tried again, as a client told to retry does.
			signIn := func() (SignInResult, error) {
				return s.SignIn(ctx, []string{"cal", "cally"}[i%2], "cal password", gate(GateOpen))
			}
			res, err := signIn()
			for deadline := time.Now().Add(60 * time.Second); err == nil && res.Outcome == OutcomeBusy && time.Now().Before(deadline); {
				res, err = signIn()
			}
			if err != nil || res.Outcome != OutcomeOK {
				t.Errorf("sign-in %d: %+v %v", i, res, err)
				return
			}
			names[i] = res.User.Username
		})
	}
	wg.Wait()
	var records []string
	for _, name := range []string{"cal", "cally"} {
		if _, err := s.UserByCanonicalName(ctx, name); err == nil {
			records = append(records, name)
		}
	}
	if len(records) != 1 || slices.ContainsFunc(names, func(n string) bool { return n != records[0] }) {
		t.Fatalf("records %v, sign-ins as %v; want one record that every sign-in is", records, names)
	}
}

// TestDirectoryChecksTakeTheClientsShare: a password the directory checks
// takes a slot of the password checks, as a hash does, so one client's
// flood of guesses (any names) holds at most its share of them: with that
// share held, its next sign-in is answered busy without a search or bind
// of its password (an outside review's flood of random names from one
// address sent as many searches and binds to the directory as it sent
// requests), while another client signs in; a local account's hash is
// not counted twice.
func TestDirectoryChecksTakeTheClientsShare(t *testing.T) {
	srv := slapdtest.Start(t)
	srv.AddUser("dora", "dora password", "", slapdtest.OperatorsDN)
	var mu sync.Mutex
	binds := 0
	s, _ := serviceWithDirectory(t, slapdConfig(srv), func(op string, _ time.Time, _ error) {
		if op == "bind" {
			mu.Lock()
			binds++
			mu.Unlock()
		}
	})
	flooder := hashslots.WithClient(context.Background(), "192.0.2.1")
	release := hashslotstest.HoldClient(t, "192.0.2.1")
	for _, name := range []string{"dora", "nobody"} {
		res, err := s.SignIn(flooder, name, "dora password", gate(GateOpen))
		if err != nil || res.Outcome != OutcomeBusy {
			t.Fatalf("%s from the client holding its share: %+v %v; want busy", name, res, err)
		}
	}
	if binds != 0 {
		t.Fatalf("%d binds for the busy sign-ins; want none", binds)
	}
	other := hashslots.WithClient(context.Background(), "198.51.100.9")
	if res, err := s.SignIn(other, "dora", "dora password", gate(GateOpen)); err != nil || res.Outcome != OutcomeOK {
		t.Fatalf("dora from another client meanwhile: %+v %v; want signed in", res, err)
	}
	release()
	if res, err := s.SignIn(flooder, "dora", "dora password", gate(GateOpen)); err != nil || res.Outcome != OutcomeOK {
		t.Fatalf("dora from the first client once its share is free: %+v %v", res, err)
	}
}

// TestDirectoryPlusAndSpaceTwinIsRefused: a directory account whose first
// use would make its Gatehouse record beside a user whose name swaps its
// spaces and '+' signs ("john smith" beside a local "john+smith") is
// refused, as CreateUser refuses a local one (TestPlusAndSpaceTwinsAreRefused):
// its right password is a blocked sign-in whose reason says why (in the
// directory's audit events too), a wrong one a wrong password, the admin
// API's lookup a 409, and no record is made. Once the twin is gone it
// signs in.
func TestDirectoryPlusAndSpaceTwinIsRefused(t *testing.T) {
	srv := slapdtest.Start(t)
	srv.AddUser("john smith", "john password", "", slapdtest.OperatorsDN)
	var mu sync.Mutex
	var events []directory.Event
	cfg := slapdConfig(srv)
	cfg.GroupRoles = []directory.GroupRole{{Group: slapdtest.OperatorsDN, Role: "ops"}}
	d, err := directory.New(cfg, nil, func(e directory.Event) { mu.Lock(); events = append(events, e); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	s := newTestService(t)
	ctx := context.Background()
	if _, err := s.CreateUser(ctx, NewUser{Username: "john+smith"}); err != nil { // before the directory
		t.Fatal(err)
	}
	s.SetDirectory(d)
	res, err := s.SignIn(ctx, "John Smith", "john password", gate(GateOpen))
	if err != nil || res.Outcome != OutcomeBlocked || !strings.HasPrefix(res.Reason, ReasonPlusSpaceTwin) || !strings.Contains(res.Reason, `"john+smith"`) {
		t.Fatalf("john smith's right password beside the local john+smith: %+v, %v; want blocked, %q naming john+smith", res, err, ReasonPlusSpaceTwin)
	}
	mu.Lock()
	reported := slices.ContainsFunc(events, func(e directory.Event) bool {
		return e.Username == "john smith" && e.Failure && strings.Contains(e.What, "john+smith")
	})
	mu.Unlock()
	if !reported {
		t.Errorf("the refusal is not among the directory's audit events: %+v", events)
	}
	if res, err := s.SignIn(ctx, "john smith", "wrong", gate(GateOpen)); err != nil || res.Outcome != OutcomeWrong || res.Reason != ReasonWrongPassword {
		t.Errorf("a wrong password for john smith: %+v, %v; want wrong password", res, err)
	}
	if res, err := s.SignIn(ctx, "john smith", "john password", gate(GateLockedOut)); err != nil || res.Outcome != OutcomeLocked {
		t.Errorf("john smith locked out here: %+v, %v; want locked", res, err)
	}
	if _, err := s.DirectoryUser(ctx, "john smith"); failure.Status(err) != 409 || !strings.Contains(err.Error(), "john+smith") {
		t.Errorf("the admin API's lookup of john smith: %v; want 409 naming john+smith", err)
	}
	if _, err := s.UserByCanonicalName(ctx, "john smith"); !errors.Is(err, failure.ErrNotFound) {
		t.Errorf("a record was made for john smith beside john+smith: %v", err)
	}
	if err := s.DeleteUser(ctx, "john+smith"); err != nil {
		t.Fatal(err)
	}
	if res, err := s.SignIn(ctx, "john smith", "john password", gate(GateOpen)); err != nil || res.Outcome != OutcomeOK || res.User.Username != "john smith" {
		t.Fatalf("john smith once john+smith is gone: %+v, %v; want signed in", res, err)
	}
	// And the other way round, as before: no local twin beside it.
	if _, err := s.CreateUser(ctx, NewUser{Username: "john+smith"}); failure.Status(err) != 409 {
		t.Errorf("a local john+smith beside the directory's john smith: %v; want 409", err)
	}
}

// TestARenamedAccountKeepsItsRecord: an account renamed in the directory
// (uid=ivan to uid=ivan.new by a modrdn; Active Directory's new
// sAMAccountName, measured on Samba) is the same entry: its Gatehouse
// record, named after the old name, stays active and holds its keys and
// second factors, the new name signs in to it, and the old one no longer
// signs in. Before, the record's status was read by its name alone, found
// nothing, and the account was blocked as deleted.
func TestARenamedAccountKeepsItsRecord(t *testing.T) {
	srv, s, d := renamedIvan(t)
	ctx := context.Background()
	rec, err := s.UserByCanonicalName(ctx, "ivan")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RefreshDirectoryAccount(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if u, err := s.User(ctx, "ivan"); err != nil || !u.Active() || u.DirectoryProblem != "" {
		t.Fatalf("ivan's record once the entry is uid=ivan.new: %+v %v; want active", u, err)
	}
	if v, err := s.DirectoryStatus(ctx, rec); err != nil || v.Status != "active" || v.DN != "uid=ivan.new,"+slapdtest.PeopleDN {
		t.Fatalf("ivan's directory view: %+v %v; want active, the new DN", v, err)
	}
	if res, err := s.SignIn(ctx, "ivan.new", "ivan password", gate(GateOpen)); err != nil || res.Outcome != OutcomeOK || res.User.Username != "ivan" {
		t.Fatalf("signing in by the new name: %+v %v; want ivan's record", res, err)
	}
	if got := signInOutcome(t, s, "ivan", "ivan password"); got != OutcomeWrong {
		t.Fatalf("the old name: %d; want refused as no account's", got)
	}
	// Deleted once renamed: deleted, and the lookup by ID is cached as
	// the rest of the status is.
	srv.Modify("dn: uid=ivan.new," + slapdtest.PeopleDN + "\nchangetype: delete\n")
	if err := s.RefreshDirectoryAccount(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if u, err := s.User(ctx, "ivan"); err != nil || u.Active() || u.DirectoryProblem != "deleted" {
		t.Fatalf("ivan once the renamed entry is deleted: %+v %v; want deleted", u, err)
	}
	mark, err := s.refreshMark(ctx, "ivan")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Cached("ivan", rec.DirectoryID, mark); !ok {
		t.Error("the status of a record whose entry is gone is not cached for its entry ID: every request would search again")
	}
}

// TestANameGivenToAnotherEntryIsNotTheRenamedRecords: once the renamed
// account's old name is another entry's (uid=ivan renamed uid=ivan.new,
// then a new uid=ivan), the record named ivan is no longer the renamed
// entry's: its requests would reach the upstreams as ivan, the name the
// directory now gives another person, and the ESA API's calls naming ivan
// would ask for the renamed account's second factors. It is replaced, as
// a record whose name was given to a new entry always was: blocked for
// both people until an administrator deletes it.
func TestANameGivenToAnotherEntryIsNotTheRenamedRecords(t *testing.T) {
	srv, s, _ := renamedIvan(t)
	ctx := context.Background()
	srv.AddUser("ivan", "new ivan password", "")
	rec, err := s.UserByCanonicalName(ctx, "ivan")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RefreshDirectoryAccount(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if u, err := s.User(ctx, "ivan"); err != nil || u.Active() || u.DirectoryProblem != "replaced" {
		t.Fatalf("the record ivan once uid=ivan is another entry: %+v %v; want replaced", u, err)
	}
	if v, err := s.DirectoryStatus(ctx, rec); err != nil || v.Status != "replaced" {
		t.Fatalf("its directory view: %+v %v; want replaced", v, err)
	}
	for _, c := range []struct{ name, password string }{{"ivan.new", "ivan password"}, {"ivan", "new ivan password"}} {
		if res, err := s.SignIn(ctx, c.name, c.password, gate(GateOpen)); err != nil || res.Outcome != OutcomeBlocked {
			t.Errorf("%s signing in: %+v %v; want blocked", c.name, res, err)
		}
	}
}

// renamedIvan is a directory whose account ivan signed in once, and then
// was renamed uid=ivan.new (a modrdn), with the service and directory
// that read it.
func renamedIvan(t *testing.T) (*slapdtest.Server, *Service, *directory.Directory) {
	t.Helper()
	srv := slapdtest.Start(t)
	srv.AddUser("ivan", "ivan password", "")
	s, d := serviceWithDirectory(t, slapdConfig(srv), nil)
	if got := signInOutcome(t, s, "ivan", "ivan password"); got != OutcomeOK {
		t.Fatalf("ivan: %d", got)
	}
	srv.Modify("dn: uid=ivan," + slapdtest.PeopleDN + "\nchangetype: modrdn\nnewrdn: uid=ivan.new\ndeleteoldrdn: 1\n")
	return srv, s, d
}

// countHashes calls counted for each argon2 hash computed until t ends.
func countHashes(t *testing.T, counted func()) {
	t.Helper()
	plain := idKey
	idKey = func(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte {
		counted()
		return plain(password, salt, time, memory, threads, keyLen)
	}
	t.Cleanup(func() { idKey = plain })
}
