package directory_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatehouse-auth/gatehouse/directory"
	"github.com/gatehouse-auth/gatehouse/directory/directorytest"
	"github.com/gatehouse-auth/gatehouse/directory/slapdtest"
	"github.com/gatehouse-auth/gatehouse/internal/testport"
)

// config is directorytest.Config for s with operatorsRead.
func config(s *slapdtest.Server) directory.Config {
	c := directorytest.Config(s)
	operatorsRead(&c)
	return c
}

// operatorsRead maps the operators group (and the groups nested in it)
// to "reader".
func operatorsRead(c *directory.Config) {
	c.GroupRoles = []directory.GroupRole{{Group: slapdtest.OperatorsDN, Role: "reader"}}
}

// recorder collects a directory's audit events.
type recorder struct {
	mu     sync.Mutex
	events []directory.Event
}

func (r *recorder) add(e directory.Event) { r.mu.Lock(); r.events = append(r.events, e); r.mu.Unlock() }

func (r *recorder) has(user, what string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.events, func(e directory.Event) bool { return e.Username == user && strings.Contains(e.What, what) })
}

// TestDirectoryAgainstSlapd: passwords by bind, status and roles (through
// a nested group) from a real OpenLDAP over LDAPS with a test CA.
func TestDirectoryAgainstSlapd(t *testing.T) {
	s := slapdtest.Start(t)
	s.AddUser("alice", "alice password", "+15550001", slapdtest.ShiftDN)
	s.AddUser("bob", "bob password", "", slapdtest.OperatorsDN)
	s.Modify("dn: uid=bob," + slapdtest.PeopleDN + "\nchangetype: modify\nadd: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n")
	s.AddUser("carol", "carol password", "", slapdtest.OperatorsDN)
	s.Modify("dn: uid=carol," + slapdtest.PeopleDN + "\nchangetype: modify\nadd: pwdAccountLockedTime\npwdAccountLockedTime: 20260101000000Z\n")
	s.AddUser("dave", "dave password", "")
	rec := &recorder{}
	d, err := directory.New(config(s), nil, rec.add)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()

	e, err := d.Bind(ctx, "alice", "alice password")
	if err != nil || !e.Active() || !slices.Equal(e.Roles, []string{"reader"}) || e.Mobile != "+15550001" {
		t.Fatalf("alice: %+v, %v; want active, roles [reader] through the nested group, her mobile", e, err)
	}
	for _, c := range []struct{ user, pass string }{
		{"alice", "wrong password"}, {"alice", ""}, {"nobody", "alice password"},
		{"*)(uid=*", "alice password"}, {"admin)(|(a=*", "alice password"}, {"*", "alice password"}, {"alice*", "alice password"},
	} {
		if _, err := d.Bind(ctx, c.user, c.pass); !errors.Is(err, directory.ErrWrongPassword) {
			t.Errorf("Bind(%q, %q) = %v; want ErrWrongPassword", c.user, c.pass, err)
		}
	}
	if !rec.has("alice", "bind failed") {
		t.Errorf("a failed bind was not reported for the audit log: %+v", rec.events)
	}
	for user, problem := range map[string]string{"bob": "disabled", "carol": "locked", "dave": "in no mapped group"} {
		e, err := d.Status(ctx, user, "", "")
		if err != nil || e.Active() || e.Problem != problem {
			t.Errorf("%s: %+v, %v; want problem %q", user, e, err, problem)
		}
	}
	if e, err := d.Status(ctx, "*)(uid=*", "", ""); err != nil || e.Found {
		t.Errorf("an injected filter found %+v, %v", e, err)
	}

	// Cached for status_ttl; a refresh reads again and reports the change.
	s.Modify("dn: " + slapdtest.ShiftDN + "\nchangetype: modify\ndelete: member\nmember: uid=alice," + slapdtest.PeopleDN + "\n")
	if e, _ := d.Status(ctx, "alice", "", ""); !e.Active() {
		t.Fatalf("the cached status was not used: %+v", e)
	}
	// A refresh mark (left by an administrator's refresh on any instance)
	// the cached status was not read under reads it again.
	if e, err := d.Status(ctx, "alice", "", "mark-1"); err != nil || e.Active() || e.Problem != "in no mapped group" {
		t.Fatalf("after removal from the group, under a new refresh mark: %+v, %v", e, err)
	}
	if _, ok := d.Cached("alice", "", "mark-1"); !ok {
		t.Error("the status read under a mark is not cached under it")
	}
	if _, ok := d.Cached("alice", "", ""); ok {
		t.Error("the status read under a mark is taken for one read under none")
	}
	if !rec.has("alice", "status changed") {
		t.Errorf("the status change was not reported: %+v", rec.events)
	}
}

// TestUnknownNameCostsABind: a password tried for a name the directory
// does not have is bound too (to an entry that does not exist), as it is
// for a real account, so the answer does not come a round trip sooner.
func TestUnknownNameCostsABind(t *testing.T) {
	s := slapdtest.Start(t)
	s.AddUser("alice", "alice password", "", slapdtest.OperatorsDN)
	var mu sync.Mutex
	var binds []string
	d, err := directory.New(config(s), func(op string, _ time.Time, err error) {
		if op == "bind" {
			mu.Lock()
			binds = append(binds, fmt.Sprint(err))
			mu.Unlock()
		}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, name := range []string{"alice", "nobody"} {
		mu.Lock()
		binds = nil
		mu.Unlock()
		if _, err := d.Bind(context.Background(), name, "a wrong password"); !errors.Is(err, directory.ErrWrongPassword) {
			t.Fatalf("Bind(%s) = %v", name, err)
		}
		mu.Lock()
		if len(binds) != 1 {
			t.Errorf("a wrong password for %s: %d binds %v; want 1", name, len(binds), binds)
		}
		mu.Unlock()
	}
}

// TestStartTLS: ldap:// with starttls upgrades the connection and checks
// the server's certificate against the URL's host: against slapd's, made
// for 127.0.0.1, binds pass; under another name (localhost) the directory
// is unavailable, never bound in clear text.
func TestStartTLS(t *testing.T) {
	s := slapdtest.Start(t)
	s.AddUser("alice", "alice password", "", slapdtest.OperatorsDN)
	ctx := context.Background()
	c := config(s)
	c.URLs, c.StartTLS = []string{s.URL}, true
	d, err := directory.New(c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if e, err := d.Bind(ctx, "alice", "alice password"); err != nil || !e.Active() {
		t.Fatalf("Bind over StartTLS = %+v, %v", e, err)
	}
	c.URLs = []string{strings.Replace(s.URL, "127.0.0.1", "localhost", 1)}
	other, err := directory.New(c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Bind(ctx, "alice", "alice password"); !errors.Is(err, directory.ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Bind over StartTLS to a certificate of another name = %v; want unavailable for the certificate", err)
	}
}

// TestStartTLSLeavesLDAPSAlone: starttls upgrades the ldap:// URLs of the
// list; an ldaps:// one beside them (a failover server) is TLS from the
// start and is used as it is, not sent a StartTLS it refuses ("ldap:
// already encrypted", which made every ldaps:// server of a list with
// starttls on unavailable).
func TestStartTLSLeavesLDAPSAlone(t *testing.T) {
	s := slapdtest.Start(t)
	s.AddUser("alice", "alice password", "", slapdtest.OperatorsDN)
	c := config(s)
	c.URLs, c.StartTLS = []string{fmt.Sprintf("ldap://127.0.0.1:%d", testport.Free(t)), s.TLSURL}, true // the first one dead
	d, err := directory.New(c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if e, err := d.Bind(context.Background(), "alice", "alice password"); err != nil || !e.Active() {
		t.Fatalf("Bind over the ldaps:// URL of a list with starttls on = %+v, %v; want active", e, err)
	}
}

// TestAHungServerIsTriedLast: a first URL whose server accepts
// connections but never answers (a hung domain controller) costs one
// timeout, not one per new connection: a password is checked on a fresh
// connection, so every sign-in waited the whole timeout on it before the
// next URL was tried. Once it failed, the others are tried first for a
// while; it is still tried when they fail.
func TestAHungServerIsTriedLast(t *testing.T) {
	s := slapdtest.Start(t)
	s.AddUser("alice", "alice password", "", slapdtest.OperatorsDN)
	s.AddUser("bob", "bob password", "", slapdtest.OperatorsDN)
	cfg := config(s)
	cfg.URLs = []string{"ldaps://" + slapdtest.HungServer(t), s.TLSURL}
	cfg.Timeout = caddy.Duration(2 * time.Second)
	d, err := directory.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	if _, err := d.Bind(ctx, "alice", "alice password"); err != nil {
		t.Fatalf("alice, the first URL hung: %v", err)
	}
	for _, name := range []string{"bob", "alice"} {
		began := time.Now()
		if _, err := d.Bind(ctx, name, name+" password"); err != nil {
			t.Fatalf("%s, the first URL hung: %v", name, err)
		}
		if took := time.Since(began); took >= time.Duration(cfg.Timeout) {
			t.Errorf("%s's password, checked after the hung server failed once, took %v: the hung server was tried again first", name, took)
		}
	}
}

// TestDirectoryFailoverAndOutage: a dead first URL fails over to the
// next; with every server down, reads fail with ErrUnavailable (never a
// pass) once the cached status is older than status_ttl, and service
// resumes when the server is back. The bind password is in no error.
func TestDirectoryFailoverAndOutage(t *testing.T) {
	s := slapdtest.Start(t)
	s.AddUser("alice", "alice password", "", slapdtest.OperatorsDN)
	cfg := config(s)
	dead := fmt.Sprintf("ldaps://127.0.0.1:%d", testport.Free(t))
	cfg.URLs = []string{dead, s.TLSURL}
	cfg.StatusTTL = caddy.Duration(time.Second)
	d, err := directory.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	if e, err := d.Bind(ctx, "alice", "alice password"); err != nil || !e.Active() {
		t.Fatalf("through the second URL: %+v, %v", e, err)
	}
	s.Stop()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := d.Status(ctx, "alice", "", "")
		if errors.Is(err, directory.ErrUnavailable) {
			if strings.Contains(err.Error(), slapdtest.ServicePassword) {
				t.Fatalf("the bind password is in an error: %v", err)
			}
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("with the server down, status_ttl after the last read: %v; want ErrUnavailable", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := d.Bind(ctx, "alice", "alice password"); !errors.Is(err, directory.ErrUnavailable) {
		t.Fatalf("a bind with the server down: %v; want ErrUnavailable", err)
	}
	s.Restart()
	if e, err := d.Bind(ctx, "alice", "alice password"); err != nil || !e.Active() {
		t.Fatalf("after the restart: %+v, %v", e, err)
	}

	// A wrong service password: an error that does not repeat it.
	cfg.BindPassword = "the wrong service password"
	bad, err := directory.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.Status(ctx, "alice", "", ""); err == nil || strings.Contains(err.Error(), cfg.BindPassword) {
		t.Fatalf("wrong service password: %v", err)
	}
}

// BenchmarkBindAgainstSlapd measures a directory sign-in (the user search,
// the nested group searches, the bind and the bind back to the service
// account) against a real slapd over LDAPS, from parallel callers sharing
// the connection pool.
func BenchmarkBindAgainstSlapd(b *testing.B) {
	s := slapdtest.Start(b)
	s.AddUser("alice", "alice password", "", slapdtest.ShiftDN)
	d := directorytest.New(b, s, operatorsRead)
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := d.Bind(ctx, "alice", "alice password"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "binds/s")
}

// TestEntryIDChangesWhenRecreated: an entry's ID is slapd's entryUUID, the
// same on every read, and another once the entry was deleted and created
// again under the same DN.
func TestEntryIDChangesWhenRecreated(t *testing.T) {
	s := slapdtest.Start(t)
	s.AddUser("bob", "bob password", "", slapdtest.OperatorsDN)
	d := directorytest.New(t, s, operatorsRead)
	ctx := context.Background()
	first, err := d.Refresh(ctx, "bob")
	if err != nil || len(first.ID) != 36 {
		t.Fatalf("bob: %+v %v; want a UUID as ID", first, err)
	}
	if again, err := d.Refresh(ctx, "bob"); err != nil || again.ID != first.ID {
		t.Fatalf("bob read again: %q %v; want %q", again.ID, err, first.ID)
	}
	s.Modify("dn: uid=bob," + slapdtest.PeopleDN + "\nchangetype: delete\n")
	s.AddUser("bob", "another password", "")
	if recreated, err := d.Refresh(ctx, "bob"); err != nil || recreated.DN != first.DN || recreated.ID == "" || recreated.ID == first.ID {
		t.Fatalf("bob recreated: %+v %v; want the same DN with another ID than %q", recreated, err, first.ID)
	}
}

// TestPasswordResetByAnAdministratorMustBeChanged: with ppolicy's
// pwdMustChange, a password an administrator set must be changed before
// anything else (the directory lets that bind do nothing more): until
// then the account is refused, as Active Directory's "must change at
// next logon" is, its application keys, tokens and sessions included.
func TestPasswordResetByAnAdministratorMustBeChanged(t *testing.T) {
	s := ppolicyServer(t, map[string]string{"mustchange": "pwdMustChange: TRUE\n"})
	frank := s.AddUser("frank", "frank password", "", slapdtest.OperatorsDN)
	s.Modify(underPolicy(frank, "mustchange"))
	d := directorytest.New(t, s, operatorsRead)
	ctx := context.Background()
	if e, err := d.Refresh(ctx, "frank"); err != nil || !e.Active() {
		t.Fatalf("frank before the reset: %+v, %v; want active", e, err)
	}
	s.Modify("dn: " + frank + "\nchangetype: modify\nreplace: userPassword\nuserPassword: temporary password\n")
	if e, err := d.Refresh(ctx, "frank"); err != nil || e.Active() || e.Problem != "must change its password" {
		t.Fatalf("frank after an administrator's reset: %+v, %v; want refused, must change its password", e, err)
	}
}

// TestPasswordPolicyLockoutAndAge: an OpenLDAP account under a ppolicy
// entry (pwdPolicySubentry) is locked while its lockout lasts and active
// again once pwdLockoutDuration passed, without a bind of its own (an
// account used only through keys or tokens makes none: the attribute
// stays until one); and refused once its password is older than
// pwdMaxAge, as the directory refuses its bind.
func TestPasswordPolicyLockoutAndAge(t *testing.T) {
	s := ppolicyServer(t, map[string]string{
		"lockout": "pwdLockout: TRUE\npwdMaxFailure: 2\npwdLockoutDuration: 2\n",
		"aging":   "pwdMaxAge: 2\npwdGraceAuthNLimit: 0\n",
	})
	erin := s.AddUser("erin", "erin password", "", slapdtest.OperatorsDN)
	gina := s.AddUser("gina", "gina password", "", slapdtest.OperatorsDN)
	// A policy below gina's, which the server does not read for her:
	// Gatehouse reads her policy's entry alone too.
	s.Modify(underPolicy(erin, "lockout") + "\n" + underPolicy(gina, "aging") + "\n" +
		"dn: cn=below,cn=aging,ou=policies," + slapdtest.BaseDN + "\nobjectClass: organizationalRole\nobjectClass: pwdPolicy\ncn: below\n" +
		"pwdAttribute: userPassword\n\n" +
		"dn: " + gina + "\nchangetype: modify\nreplace: userPassword\nuserPassword: gina password 2\n")
	d := directorytest.New(t, s, operatorsRead)
	lockoutEnds(t, d, "erin")
	eventually(t, d, "gina", func(e directory.Entry) bool { return e.Problem == "password expired" })
}

// lockoutEnds binds as name with two wrong passwords (the test policies'
// pwdMaxFailure), checks that the account is locked, then that it is
// active again once its 2 s lockout ended, without a bind of its own.
func lockoutEnds(t *testing.T, d *directory.Directory, name string) {
	t.Helper()
	for _, pw := range []string{"wrong 1", "wrong 2"} {
		if _, err := d.Bind(context.Background(), name, pw); err == nil {
			t.Fatal("a wrong password was taken")
		}
	}
	if e, err := d.Refresh(context.Background(), name); err != nil || e.Problem != "locked" {
		t.Fatalf("%s after two wrong passwords: %+v, %v; want locked", name, e, err)
	}
	eventually(t, d, name, func(e directory.Entry) bool { return e.Active() })
}

// eventually reads name's status until ok holds, with a generous deadline.
func eventually(t *testing.T, d *directory.Directory, name string, ok func(directory.Entry) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		e, err := d.Refresh(context.Background(), name)
		if err == nil && ok(e) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s 30 s on: %+v, %v", name, e, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ppolicyServer starts slapd with the ppolicy entries policies names
// (name → the entry's policy attributes, one "attr: value" line each),
// under ou=policies.
func ppolicyServer(t *testing.T, policies map[string]string) *slapdtest.Server {
	s := slapdtest.Start(t)
	ldif := "dn: ou=policies," + slapdtest.BaseDN + "\nobjectClass: organizationalUnit\nou: policies\n"
	for name, attrs := range policies {
		ldif += "\ndn: cn=" + name + ",ou=policies," + slapdtest.BaseDN + "\nobjectClass: organizationalRole\nobjectClass: pwdPolicy\ncn: " +
			name + "\npwdAttribute: userPassword\n" + attrs
	}
	s.Modify(ldif)
	return s
}

// underPolicy is the LDIF that puts the account dn under the ppolicy
// entry ppolicyServer made as name.
func underPolicy(dn, name string) string {
	return "dn: " + dn + "\nchangetype: modify\nadd: pwdPolicySubentry\npwdPolicySubentry: cn=" + name + ",ou=policies," + slapdtest.BaseDN + "\n"
}

// TestAMemberOfManyGroups: a user in more groups than the server returns
// to a search that does not page (slapd's default soft size limit, 500)
// still gets the role of the mapped group among them: groups are read a
// page at a time, up to the service account's hard limit.
func TestAMemberOfManyGroups(t *testing.T) {
	s := slapdtest.Start(t)
	gina := s.AddUser("gina", "gina password", "")
	var ldif strings.Builder
	for i := range 700 {
		fmt.Fprintf(&ldif, "dn: cn=team-%03d,ou=groups,%s\nobjectClass: groupOfNames\ncn: team-%03d\nmember: %s\n\n", i, slapdtest.BaseDN, i, gina)
	}
	s.Modify(ldif.String())
	s.Modify("dn: " + slapdtest.OperatorsDN + "\nchangetype: modify\nadd: member\nmember: cn=team-650,ou=groups," + slapdtest.BaseDN + "\n")
	d := directorytest.New(t, s, operatorsRead)
	if e, err := d.Refresh(context.Background(), "gina"); err != nil || !e.Active() || !slices.Equal(e.Roles, []string{"reader"}) {
		t.Fatalf("gina in 700 groups, one nested in the mapped group: %+v, %v; want active, reader", e, err)
	}
}

// TestTheServersDefaultPolicy: an account without a pwdPolicySubentry is
// under the server's default policy (ppolicy_default), which Gatehouse
// reads where default_password_policy names it: a lockout ends once that
// policy's duration passed, without a bind of the account's own.
func TestTheServersDefaultPolicy(t *testing.T) {
	s := ppolicyServer(t, map[string]string{"default": "pwdLockout: TRUE\npwdMaxFailure: 2\npwdLockoutDuration: 2\n"})
	s.AddUser("hank", "hank password", "", slapdtest.OperatorsDN)
	d := underDefaultPolicy(t, s, slapdtest.DefaultPolicyDN)
	defer d.Close()
	lockoutEnds(t, d, "hank")
	if _, err := directory.New(directory.Config{URLs: []string{"ldaps://x"}, BindDN: "cn=a", BindPassword: "p", BaseDN: "dc=x",
		DefaultPasswordPolicy: slapdtest.DefaultPolicyDN}, nil, nil); err == nil || !strings.Contains(err.Error(), "openldap") {
		t.Errorf("default_password_policy with the active_directory flavor: %v; want refused", err)
	}
}

// underDefaultPolicy is a directory of s with default_password_policy dn
// and a status_ttl of a second; the caller closes it.
func underDefaultPolicy(t *testing.T, s *slapdtest.Server, dn string) *directory.Directory {
	t.Helper()
	cfg := config(s)
	cfg.DefaultPasswordPolicy = dn
	cfg.StatusTTL = caddy.Duration(time.Second)
	d, err := directory.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestAnUnreadablePolicyIsLoggedForWhatItDoes: the error logged for a
// policy entry that cannot be read says what happens to the accounts
// under it. An account's own pwdPolicySubentry keeps it active (no expiry
// read, a lockout until the next bind): its line must not say it is
// default_password_policy, nor that accounts are refused, which sent an
// operator to an option that was right; the default policy's line says
// its accounts are refused.
func TestAnUnreadablePolicyIsLoggedForWhatItDoes(t *testing.T) {
	s := ppolicyServer(t, nil)
	kim := s.AddUser("kim", "kim password", "", slapdtest.OperatorsDN)
	missing := "cn=missing,ou=policies," + slapdtest.BaseDN
	s.Modify("dn: " + kim + "\nchangetype: modify\nadd: pwdPolicySubentry\npwdPolicySubentry: " + missing + "\n")
	s.AddUser("lou", "lou password", "", slapdtest.OperatorsDN)
	d := underDefaultPolicy(t, s, slapdtest.DefaultPolicyDN) // not made: unreadable too
	defer d.Close()
	core, logs := observer.New(zap.ErrorLevel)
	d.SetLogger(zap.New(core))
	ctx := context.Background()
	if e, err := d.Refresh(ctx, "kim"); err != nil || !e.Active() {
		t.Fatalf("kim under her own unreadable policy: %+v, %v; want active, as before", e, err)
	}
	if e, err := d.Refresh(ctx, "lou"); err != nil || e.Problem != directory.ProblemPolicyUnreadable {
		t.Fatalf("lou under the unreadable default policy: %+v, %v; want %q", e, err, directory.ProblemPolicyUnreadable)
	}
	own, def := logs.FilterField(zap.String("policy", missing)).All(), logs.FilterField(zap.String("policy", slapdtest.DefaultPolicyDN)).All()
	if len(own) != 1 || len(def) != 1 {
		t.Fatalf("logged for kim's policy %d times, for the default one %d times; want once each: %v", len(own), len(def), logs.All())
	}
	if m := own[0].Message; strings.Contains(m, "default_password_policy") || strings.Contains(m, "refused") || !strings.Contains(m, "pwdPolicySubentry") {
		t.Errorf("an account's own unreadable policy logged as %q; want it named a pwdPolicySubentry, its accounts not refused", m)
	}
	if m := def[0].Message; !strings.Contains(m, "default_password_policy") || !strings.Contains(m, "refused") {
		t.Errorf("the unreadable default policy logged as %q; want default_password_policy named, its accounts refused", m)
	}
}

// TestAnUnreadableDefaultPolicy: default_password_policy naming an entry
// the service account cannot read (none there, a DN that is no policy)
// refuses the accounts under the server's default policy, with a problem
// that says so, and logs it, rather than hold them to no policy (whose
// expired password would pass through their keys, tokens and sessions);
// CheckDefaultPolicy, which a start runs, tells it at once. An account
// with a readable policy of its own is not touched, and once the entry
// can be read the others are active again.
func TestAnUnreadableDefaultPolicy(t *testing.T) {
	s := ppolicyServer(t, map[string]string{"own": "pwdLockout: TRUE\n"})
	s.AddUser("hank", "hank password", "", slapdtest.OperatorsDN)
	ivy := s.AddUser("ivy", "ivy password", "", slapdtest.OperatorsDN)
	s.Modify(underPolicy(ivy, "own"))
	s.AddUser("jo", "jo password", "", slapdtest.OperatorsDN)
	s.Modify("dn: uid=jo," + slapdtest.PeopleDN + "\nchangetype: modify\nadd: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n")
	ctx := context.Background()
	for _, dn := range []string{slapdtest.DefaultPolicyDN, slapdtest.PeopleDN} { // missing; not a policy
		d := underDefaultPolicy(t, s, dn)
		core, logs := observer.New(zap.ErrorLevel)
		d.SetLogger(zap.New(core))
		if err := d.CheckDefaultPolicy(); err == nil || errors.Is(err, directory.ErrUnavailable) || !strings.Contains(err.Error(), dn) {
			t.Errorf("CheckDefaultPolicy of %s: %v; want an error naming it, not unavailable", dn, err)
		}
		if e, err := d.Refresh(ctx, "hank"); err != nil || e.Active() || e.Problem != directory.ProblemPolicyUnreadable {
			t.Errorf("hank under the default policy %s, which cannot be read: %+v, %v; want refused, %q", dn, e, err, directory.ProblemPolicyUnreadable)
		}
		if _, err := d.Bind(ctx, "hank", "hank password"); err != nil {
			t.Errorf("hank's right password: %v", err) // the bind passes; the status refuses
		}
		if e, err := d.Refresh(ctx, "jo"); err != nil || e.Problem != "disabled" {
			t.Errorf("jo, disabled, under the unreadable policy: %+v, %v; want disabled told first", e, err)
		}
		if e, err := d.Refresh(ctx, "ivy"); err != nil || !e.Active() {
			t.Errorf("ivy under her own readable policy: %+v, %v; want active", e, err)
		}
		if logs.FilterField(zap.String("policy", dn)).Len() == 0 {
			t.Errorf("the unreadable policy %s was not logged: %v", dn, logs.All())
		}
		d.Close()
	}

	// The entry made: read again once status_ttl passed.
	d := underDefaultPolicy(t, s, slapdtest.DefaultPolicyDN)
	defer d.Close()
	if e, _ := d.Refresh(ctx, "hank"); e.Problem != directory.ProblemPolicyUnreadable {
		t.Fatalf("hank before the entry exists: %+v", e)
	}
	s.Modify("dn: " + slapdtest.DefaultPolicyDN + "\nobjectClass: organizationalRole\nobjectClass: pwdPolicy\ncn: default\npwdAttribute: userPassword\n")
	eventually(t, d, "hank", func(e directory.Entry) bool { return e.Active() })
	if err := d.CheckDefaultPolicy(); err != nil {
		t.Errorf("CheckDefaultPolicy once the entry exists: %v", err)
	}
}

// TestSearchLimits: a server whose limits stop a search (slapd's
// size limit for the service account, paged searches refused to it, a
// user_filter matching more entries than it returns) refuses the accounts
// the limit keeps Gatehouse from reading, saying so in the log and their
// status, and no other: before, each such search was a directory outage,
// and a server refusing paged searches one for every account.
func TestSearchLimits(t *testing.T) {
	s := slapdtest.Start(t, `limits dn.exact="`+slapdtest.ServiceDN+`" size=3 size.prtotal=disabled`)
	s.AddUser("alice", "alice password", "", slapdtest.OperatorsDN)
	gina := s.AddUser("gina", "gina password", "", slapdtest.OperatorsDN)
	var ldif strings.Builder
	for i := range 4 {
		fmt.Fprintf(&ldif, "dn: cn=team-%d,ou=groups,%s\nobjectClass: groupOfNames\ncn: team-%d\nmember: %s\n\n", i, slapdtest.BaseDN, i, gina)
		fmt.Fprintf(&ldif, "dn: uid=smith-%d,%s\nobjectClass: inetOrgPerson\nuid: smith-%d\ncn: smith\nsn: smith\n\n", i, slapdtest.PeopleDN, i)
	}
	s.Modify(ldif.String())
	cfg := config(s)
	// A filter that finds an account by its surname too: "smith" matches
	// four entries, more than the server returns to the service account.
	cfg.UserFilter = "(&(objectClass=inetOrgPerson)(|(uid={username})(sn={username})))"
	d, err := directory.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	core, logs := observer.New(zap.ErrorLevel)
	d.SetLogger(zap.New(core))
	ctx := context.Background()

	if e, err := d.Bind(ctx, "alice", "alice password"); err != nil || !e.Active() || !slices.Equal(e.Roles, []string{"reader"}) {
		t.Errorf("alice, in one group, from a server that refuses paged searches: %+v, %v; want active, reader", e, err)
	}
	e, err := d.Refresh(ctx, "gina")
	if err != nil || e.Active() || e.Problem != directory.ProblemGroupLimit || len(e.Roles) != 0 {
		t.Errorf("gina, in more groups than the size limit: %+v, %v; want refused, %q", e, err, directory.ProblemGroupLimit)
	}
	if l := logs.FilterMessageSnippet("size limit").FilterField(zap.String("user", "gina")).All(); len(l) != 1 || !strings.Contains(l[0].Message, "size.hard") {
		t.Errorf("the size limit met reading gina's groups: logged %+v; want one error naming it and what to change", logs.All())
	}
	if e, err := d.Locate(ctx, "smith"); err != nil || e.Found {
		t.Errorf("a name user_filter matches four entries for: %+v, %v; want no account (ambiguous)", e, err)
	}

	// A limit on the entries a search may examine (slapd's size.unchecked,
	// met by a filter of attributes without an index) stops every user
	// search: unavailable, as the server answers nothing of the name, and
	// logged with what to change.
	u := slapdtest.Start(t, "sizelimit size.unchecked=2")
	u.AddUser("alice", "alice password", "", slapdtest.OperatorsDN)
	d2 := directorytest.New(t, u, operatorsRead)
	core2, logs2 := observer.New(zap.ErrorLevel)
	d2.SetLogger(zap.New(core2))
	if _, err := d2.Bind(ctx, "alice", "alice password"); !errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("a user search over the server's administrative limit: %v; want ErrUnavailable", err)
	}
	if l := logs2.FilterMessageSnippet("administrative limit").All(); len(l) != 1 || !strings.Contains(l[0].Message, "size.unchecked") {
		t.Errorf("the administrative limit met searching users: logged %+v; want an error naming it and what to change", logs2.All())
	}
}

// TestFailedConnectsGiveBackTheirPlace: a connection no server answers
// gives its place among the pool's 32 back, so that a directory down for
// more than 32 tries still answers at once that it is unreachable, not,
// after the timeout, that every connection stayed in use.
func TestFailedConnectsGiveBackTheirPlace(t *testing.T) {
	cfg := directory.Config{URLs: []string{fmt.Sprintf("ldap://127.0.0.1:%d", testport.Free(t))}, Flavor: directory.OpenLDAP,
		BindDN: "cn=a", BindPassword: "p", BaseDN: "dc=x", Timeout: caddy.Duration(5 * time.Second)}
	d, err := directory.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for i := range 40 {
		if _, err := d.Bind(context.Background(), "alice", "alice password"); !errors.Is(err, directory.ErrUnavailable) || strings.Contains(err.Error(), "in use") {
			t.Fatalf("try %d with the server down: %v; want it unreachable", i+1, err)
		}
	}
}

// TestAUserFilterThatFindsSeveralEntries: a name user_filter finds
// several entries for is no account, as before, but the audit event says
// so rather than "no such account", and Caddy's log has a warning, at
// most one a minute, naming the filter: a filter written with | for &
// (measured on Samba: every sign-in refused as "no such account", each
// account's status "deleted", nothing logged) makes every name one.
func TestAUserFilterThatFindsSeveralEntries(t *testing.T) {
	s := slapdtest.Start(t)
	s.AddUser("alice", "alice password", "", slapdtest.OperatorsDN)
	s.AddUser("bob", "bob password", "", slapdtest.OperatorsDN)
	rec := &recorder{}
	cfg := config(s)
	cfg.UserFilter = "(|(objectClass=inetOrgPerson)(uid={username}))"
	d, err := directory.New(cfg, nil, rec.add)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	core, logs := observer.New(zap.WarnLevel)
	d.SetLogger(zap.New(core))
	ctx := context.Background()
	for _, name := range []string{"alice", "bob"} {
		if _, err := d.Bind(ctx, name, name+" password"); !errors.Is(err, directory.ErrWrongPassword) {
			t.Fatalf("%s under a filter that finds every entry: %v; want no account", name, err)
		}
		if !rec.has(name, "finds several entries") {
			t.Errorf("%s's refusal audited as %+v; want it to say the name finds several entries", name, rec.events)
		}
	}
	if l := logs.FilterMessageSnippet("user_filter finds several entries").All(); len(l) != 1 {
		t.Errorf("logged %+v; want one warning (a minute's)", logs.All())
	}
	if _, err := d.Bind(ctx, "nobody", "x"); !errors.Is(err, directory.ErrWrongPassword) || !rec.has("nobody", "finds several entries") {
		t.Errorf("nobody: %v %+v", err, rec.events)
	}
}
