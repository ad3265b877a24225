package directory_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/go-ldap/ldap/v3"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/directory"
)

// TestDirectoryAgainstSambaAD runs the active_directory flavor against a
// real Active Directory: a Samba AD DC provisioned by the test
// (samba-tool domain provision, 8 to 155 s here). Samba's LDAP server
// listens on the fixed ports 389 and 636 (no option moves them), so the
// test needs root, those ports free and a machine where a DC can start;
// it runs only when asked for (make test-samba, which sets
// GATEHOUSE_TEST_SAMBA=1): a CI machine with samba installed once could
// not bring the DC's LDAP server up in three minutes, and make test must
// not hang on a service it does not install (docs/operators/directory.md).
func TestDirectoryAgainstSambaAD(t *testing.T) {
	if os.Getenv("GATEHOUSE_TEST_SAMBA") != "1" {
		t.Skip("runs with make test-samba (GATEHOUSE_TEST_SAMBA=1)")
	}
	if _, err := exec.LookPath("samba-tool"); err != nil {
		t.Fatal("samba-tool not installed (Debian: samba)")
	}
	if _, err := exec.LookPath("winbindd"); err != nil {
		t.Fatal("winbindd not installed (Debian: winbind); the AD DC starts it and exits without it")
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:389", time.Second); err == nil {
		c.Close()
		t.Skip("port 389 is in use; Samba's LDAP server cannot use another")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "etc", "smb.conf")
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("samba-tool", append(args, "-s", conf)...).CombinedOutput(); err != nil {
			t.Fatalf("samba-tool %v: %v\n%s", args, err, out)
		}
	}
	if out, err := exec.Command("samba-tool", "domain", "provision", "--realm=EXAMPLE.TEST", "--domain=EXAMPLE",
		"--server-role=dc", "--dns-backend=NONE", "--adminpass=Adm1n-Passw0rd!", "--targetdir="+dir,
		"--option=interfaces=lo", "--option=bind interfaces only=yes",
		// Nothing shared with another samba on the machine: its pid
		// files default to /run/samba.
		"--option=pid directory="+filepath.Join(dir, "run")).CombinedOutput(); err != nil {
		t.Fatalf("provision: %v\n%s", err, out)
	}
	// Simple binds over ldap:// on loopback (the DC's own TLS certificate
	// names its host name, not 127.0.0.1).
	smb, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	smb = []byte(strings.Replace(string(smb), "[global]", "[global]\n\tldap server require strong auth = no", 1))
	if err := os.WriteFile(conf, smb, 0o600); err != nil {
		t.Fatal(err)
	}
	// --debug-stdout: the log below, not in /var/log/samba.
	samba := exec.Command("samba", "--foreground", "--debug-stdout", "--debuglevel=1", "-s", conf)
	samba.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	log, _ := os.Create(filepath.Join(dir, "samba.log"))
	samba.Stdout, samba.Stderr = log, log
	if err := samba.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = samba.Wait(); close(exited) }()
	t.Cleanup(func() {
		// samba forks workers into its process group; the temporary
		// directory can go only once all of them have exited.
		pgid := samba.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
		}
		deadline := time.Now().Add(30 * time.Second)
		for syscall.Kill(-pgid, 0) == nil && time.Now().Before(deadline.Add(5*time.Second)) {
			if time.Now().After(deadline) {
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	// A busy machine (the 2-core CI box with the suite beside it) can
	// take well over a minute to bring up an AD DC.
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:389", time.Second); err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(log.Name())
			t.Fatalf("samba exited before its LDAP server listened (%v); its log:\n%s", waitErr, out)
		default:
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(log.Name())
			t.Fatalf("samba's LDAP server did not start within three minutes; its log:\n%s", out)
		}
	}
	run("user", "create", "gatehouse", "Svc-Passw0rd!")
	run("user", "create", "frank", "Passw0rd-Frank!")
	run("group", "add", "Operators")
	run("group", "add", "Shift")
	run("group", "addmembers", "Operators", "Shift")
	run("group", "addmembers", "Shift", "frank")
	// A group that holds Domain Users, every account's primary group.
	run("group", "add", "Everyone-Staff")
	run("group", "addmembers", "Everyone-Staff", "Domain Users")
	run("user", "create", "gus", "Passw0rd-Gus!")

	cfg := directory.Config{
		URLs: []string{"ldap://127.0.0.1:389"}, Flavor: directory.ActiveDirectory,
		BindDN: "CN=gatehouse,CN=Users,DC=example,DC=test", BindPassword: "Svc-Passw0rd!", BaseDN: "DC=example,DC=test",
		GroupRoles: []directory.GroupRole{{Group: "CN=Operators,CN=Users,DC=example,DC=test", Role: "reader"},
			{Group: "CN=Domain Users,CN=Users,DC=example,DC=test", Role: "staff"}, {Group: "CN=Everyone-Staff,CN=Users,DC=example,DC=test", Role: "everyone"}},
		StatusTTL: caddy.Duration(time.Second), Timeout: caddy.Duration(10 * time.Second),
	}
	d, err := directory.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	for _, typed := range []string{"frank", `EXAMPLE\frank`, "frank@example.test"} {
		name := account.AccountName(typed, d.Domains())
		e, err := d.Bind(ctx, name, "Passw0rd-Frank!")
		if err != nil || !e.Active() || !slices.Equal(e.Roles, []string{"everyone", "reader", "staff"}) || len(e.ID) != 32 {
			t.Fatalf("%s: %+v, %v; want active, reader through the nested group (LDAP_MATCHING_RULE_IN_CHAIN), staff and everyone through the primary group (Domain Users, a member of Everyone-Staff), the objectGUID in hex as ID", typed, e, err)
		}
	}
	// An account in no group but its primary one.
	if e, err := d.Bind(ctx, "gus", "Passw0rd-Gus!"); err != nil || !e.Active() || !slices.Equal(e.Roles, []string{"everyone", "staff"}) {
		t.Fatalf("gus, in Domain Users alone: %+v, %v; want active, everyone and staff", e, err)
	}
	for _, c := range []struct{ user, pass string }{{"frank", "wrong"}, {"*)(sAMAccountName=*", "Passw0rd-Frank!"}, {"nobody", "x"}} {
		if _, err := d.Bind(ctx, c.user, c.pass); !errors.Is(err, directory.ErrWrongPassword) {
			t.Errorf("Bind(%q): %v; want ErrWrongPassword", c.user, err)
		}
	}
	checkPrimaryGroupRefresh(ctx, t, cfg, run)
	checkPrimaryGroupOutsideGroupBase(ctx, t, cfg, run)
	checkLockoutEnds(ctx, t, d, run)
	checkAccountStates(ctx, t, cfg, run)
	run("user", "disable", "frank")
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		e, err := d.Status(ctx, "frank", "", "")
		if err == nil && e.Problem == "disabled" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("frank after userAccountControl disable: %+v, %v", e, err)
		}
	}
}

// checkLockoutEnds: an account the domain locked out after wrong
// passwords is locked, and once the domain's lockout duration ends it may
// sign in again, although its lockoutTime stays set until its next logon
// (msDS-User-Account-Control-Computed decides: directory.adLocked).
func checkLockoutEnds(ctx context.Context, t *testing.T, d *directory.Directory, run func(...string)) {
	t.Helper()
	run("domain", "passwordsettings", "set", "--account-lockout-threshold=3", "--account-lockout-duration=1", "--reset-account-lockout-after=1")
	run("user", "create", "lena", "Passw0rd-Lena!")
	run("group", "addmembers", "Operators", "lena")
	for range 3 {
		if _, err := d.Bind(ctx, "lena", "wrong"); !errors.Is(err, directory.ErrWrongPassword) {
			t.Fatalf("wrong password for lena: %v", err)
		}
	}
	if e, err := d.Status(ctx, "lena", "", ""); err != nil || e.Problem != "locked" {
		t.Fatalf("lena after 3 wrong passwords (threshold 3): %+v, %v; want locked", e, err)
	}
	locked := time.Now()
	for deadline := locked.Add(3 * time.Minute); ; time.Sleep(2 * time.Second) {
		e, err := d.Status(ctx, "lena", "", "")
		if err == nil && e.Problem == "" {
			if waited := time.Since(locked); waited < 50*time.Second {
				t.Fatalf("lena active again after %v; the lockout lasts a minute", waited)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lena three minutes after a one-minute lockout: %+v, %v; want active", e, err)
		}
	}
	conn, err := ldap.DialURL("ldap://127.0.0.1:389")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Bind("CN=Administrator,CN=Users,DC=example,DC=test", "Adm1n-Passw0rd!"); err != nil {
		t.Fatal(err)
	}
	res, err := conn.Search(ldap.NewSearchRequest("DC=example,DC=test", ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 1, 10, false,
		"(sAMAccountName=lena)", []string{"lockoutTime"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("reading lena's lockoutTime: %v", err)
	}
	if v := res.Entries[0].GetAttributeValue("lockoutTime"); v == "" || v == "0" {
		t.Logf("lena's lockoutTime is %q once the lockout ended: this DC clears it, so the test shows less than it could", v)
	}
	if _, err := d.Bind(ctx, "lena", "Passw0rd-Lena!"); err != nil {
		t.Fatalf("lena's right password once the lockout ended: %v", err)
	}
}

// checkPrimaryGroupRefresh: the groups holding a primary group are cached
// for status_ttl (here an hour, on a directory of its own), but a read an
// administrator's refresh asked for (a new mark) reads them again: gus
// loses the role of Everyone-Staff once Domain Users left it.
func checkPrimaryGroupRefresh(ctx context.Context, t *testing.T, cfg directory.Config, run func(...string)) {
	t.Helper()
	cfg.StatusTTL = caddy.Duration(time.Hour)
	long, err := directory.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	if e, err := long.Status(ctx, "gus", "", ""); err != nil || !slices.Equal(e.Roles, []string{"everyone", "staff"}) {
		t.Fatalf("gus: %+v, %v", e, err)
	}
	run("group", "removemembers", "Everyone-Staff", "Domain Users")
	defer run("group", "addmembers", "Everyone-Staff", "Domain Users")
	if e, err := long.Status(ctx, "gus", "", "refresh-1"); err != nil || !slices.Equal(e.Roles, []string{"staff"}) {
		t.Fatalf("gus after Domain Users left Everyone-Staff, on a refresh: %+v, %v; want staff alone", e, err)
	}
}

// checkPrimaryGroupOutsideGroupBase: with group_base_dn OU=Groups, the
// primary group Domain Users (in CN=Users, outside it) is still gus's
// membership, as Active Directory counts it: the mapped group in OU=Groups
// that holds Domain Users gives him its role. A mapped group outside
// group_base_dn is refused by the configuration (TestGroupRoleOutsideGroupBase).
func checkPrimaryGroupOutsideGroupBase(ctx context.Context, t *testing.T, cfg directory.Config, run func(...string)) {
	t.Helper()
	run("ou", "add", "OU=Groups,DC=example,DC=test")
	run("group", "add", "Plant-Staff", "--groupou=OU=Groups")
	run("group", "addmembers", "Plant-Staff", "Domain Users")
	cfg.GroupBaseDN = "OU=Groups,DC=example,DC=test"
	cfg.GroupRoles = []directory.GroupRole{{Group: "CN=Plant-Staff,OU=Groups,DC=example,DC=test", Role: "plant"}}
	d, err := directory.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if e, err := d.Bind(ctx, "gus", "Passw0rd-Gus!"); err != nil || !e.Active() || !slices.Equal(e.Roles, []string{"plant"}) {
		t.Fatalf("gus, whose primary group Domain Users (outside group_base_dn) is in Plant-Staff (inside): %+v, %v; want active, plant", e, err)
	}
}

// checkAccountStates: what the DC says of accounts it refuses, measured
// on Samba 4.17. "Must change at next logon" (pwdLastSet 0, for which the
// DC computes UF_PASSWORD_EXPIRED too) is told as that, not as an expired
// password; the right password of a refused account is a wrong password
// to the caller, but the audit event names the state from the DC's
// diagnostic "data" code (773, 533, 701); and an account renamed in the
// directory (a new sAMAccountName) is found by its objectGUID under the
// new name, not taken for deleted.
func checkAccountStates(ctx context.Context, t *testing.T, cfg directory.Config, run func(...string)) {
	t.Helper()
	rec := &recorder{}
	d, err := directory.New(cfg, nil, rec.add)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	run("user", "create", "mike", "Passw0rd-Mike!", "--must-change-at-next-login")
	run("user", "create", "bob", "Passw0rd-Bob!")
	run("user", "disable", "bob")
	run("user", "create", "dora", "Passw0rd-Dora!")
	run("user", "setexpiry", "dora", "--days=0")
	for _, c := range []struct{ user, password, problem, event string }{
		{"mike", "Passw0rd-Mike!", "must change its password", "the password must be changed at the next logon (Active Directory refused the bind: data 773)"},
		{"bob", "Passw0rd-Bob!", "disabled", "the account is disabled (Active Directory refused the bind: data 533)"},
		{"dora", "Passw0rd-Dora!", "expired", "the account expired (accountExpires) (Active Directory refused the bind: data 701)"},
	} {
		if e, err := d.Refresh(ctx, c.user); err != nil || e.Problem != c.problem {
			t.Errorf("%s: %+v, %v; want %q", c.user, e, err, c.problem)
		}
		if _, err := d.Bind(ctx, c.user, c.password); !errors.Is(err, directory.ErrWrongPassword) || !rec.has(c.user, c.event) {
			t.Errorf("%s's right password: %v, events %+v; want refused, audited as %q", c.user, err, rec.events, c.event)
		}
	}
	if _, err := d.Bind(ctx, "mike", "wrong"); !errors.Is(err, directory.ErrWrongPassword) || !rec.has("mike", "directory bind failed: wrong password") {
		t.Errorf("mike's wrong password: %v, %+v; want a wrong password", err, rec.events)
	}

	run("user", "create", "ivan", "Passw0rd-Ivan!")
	run("group", "addmembers", "Operators", "ivan")
	before, err := d.Bind(ctx, "ivan", "Passw0rd-Ivan!")
	if err != nil || !before.Active() {
		t.Fatalf("ivan: %+v, %v", before, err)
	}
	run("user", "rename", "ivan", "--samaccountname=ivan.new")
	if e, err := d.Status(ctx, "ivan", before.ID, "renamed"); err != nil || !e.Active() || e.Name != "ivan.new" || e.ID != before.ID {
		t.Fatalf("ivan renamed to ivan.new, read by its objectGUID: %+v, %v; want active, named ivan.new", e, err)
	}
	if !rec.has("ivan", `named "ivan.new" now`) {
		t.Errorf("the rename was not reported: %+v", rec.events)
	}
}
