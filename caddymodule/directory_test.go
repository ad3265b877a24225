package caddymodule

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatehouse-auth/gatehouse/directory"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/internal/testca"
)

func TestParseDirectoryOption(t *testing.T) {
	a := new(App)
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`gatehouse {
		directory ldap {
			url           ldaps://dc1.example.test:636 ldaps://dc2.example.test:636
			ca_file       /etc/gatehouse/ad-ca.pem
			bind_dn       "CN=gatehouse,OU=Service,DC=example,DC=test"
			bind_password {env.GATEHOUSE_LDAP_PASSWORD}
			base_dn       "DC=example,DC=test"
			user_filter   "(&(objectClass=user)(|(sAMAccountName={username})(mail={username})))"
			name_attribute sAMAccountName
			group_base_dn "OU=Groups,DC=example,DC=test"
			group_filter  "(member={dn})"
			group_role    "CN=Plant Operators,OU=Groups,DC=example,DC=test" reader
			group_role    "CN=Admins,OU=Groups,DC=example,DC=test" admin
			status_ttl    30s
			timeout       3s
			failed_binds  3 30m
			flavor        active_directory
			starttls      off
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	c := a.Directory
	if c == nil || len(c.URLs) != 2 || c.BindPassword != "{env.GATEHOUSE_LDAP_PASSWORD}" || len(c.GroupRoles) != 2 ||
		c.GroupRoles[0] != (directory.GroupRole{Group: "CN=Plant Operators,OU=Groups,DC=example,DC=test", Role: "reader"}) ||
		c.StatusTTL != caddy.Duration(30*time.Second) || c.Flavor != directory.ActiveDirectory || c.StartTLS ||
		c.FailedBinds != 3 || c.FailedBindsWindow != caddy.Duration(30*time.Minute) || c.NameAttribute != "sAMAccountName" {
		t.Fatalf("parsed %+v", c)
	}
	if c.CAFile != "/etc/gatehouse/ad-ca.pem" {
		t.Fatalf("ca_file parsed as %q", c.CAFile)
	}
	c.CAFile = testca.New(t, t.TempDir()).File("ca.pem") // read by Validate: a file that is there
	if err := c.Validate(); err != nil {
		t.Fatalf("valid options refused: %v", err)
	}
	for _, bad := range []string{
		"directory ad {\nurl ldaps://x\n}",
		"directory ldap {\nuri ldaps://x\n}",
		"directory ldap {\ngroup_role \"CN=x\"\n}",
		"directory ldap {\nstatus_ttl soon\n}",
		"directory ldap {\nfailed_binds 0\n}",
		"directory ldap {\ndefault_password_policy\n}",
		"directory ldap {\nfailed_binds 3 soon\n}",
		"directory ldap {\nfailed_binds\n}",
	} {
		if err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n" + bad + "\n}")); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestValidateDirectoryOption(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := directory.Config{URLs: []string{"ldaps://dc1:636"}, BindDN: "CN=svc,DC=example,DC=test", BindPassword: "secret pw",
		BaseDN: "DC=example,DC=test"}
	for name, change := range map[string]func(*directory.Config){
		"no url":     func(c *directory.Config) { c.URLs = nil },
		"clear text": func(c *directory.Config) { c.URLs = []string{"ldap://dc1.example.test"} },
		// Not this machine, though each starts like one.
		"clear text, user part":      func(c *directory.Config) { c.URLs = []string{"ldap://127.0.0.1@192.0.2.2:389"} },
		"clear text, localhost.":     func(c *directory.Config) { c.URLs = []string{"ldap://localhost.attacker.example"} },
		"clear text, 127. subdomain": func(c *directory.Config) { c.URLs = []string{"ldap://127.0.0.1.nip.io"} },
		"no placeholder":             func(c *directory.Config) { c.UserFilter = "(uid=alice)" },
		"not a filter":               func(c *directory.Config) { c.UserFilter = "(uid={username}" },
		"bad base":                   func(c *directory.Config) { c.BaseDN = "example" },
		"bad name attribute":         func(c *directory.Config) { c.NameAttribute = "uid)(x" },
		"unknown flavor":             func(c *directory.Config) { c.Flavor = "novell" },
		"no group_filter dn":         func(c *directory.Config) { c.GroupFilter = "(member=x)" },
		"group role, no role":        func(c *directory.Config) { c.GroupRoles = []directory.GroupRole{{Group: "CN=g,DC=x"}} },
		"ca_file missing":            func(c *directory.Config) { c.CAFile = filepath.Join(t.TempDir(), "absent.pem") },
		"ca_file without PEM":        func(c *directory.Config) { c.CAFile = notPEM },
	} {
		c := good
		change(&c)
		err := c.Validate()
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "secret pw") {
			t.Errorf("%s: the bind password is in %v", name, err)
		}
	}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, local := range []string{"ldap://127.0.0.1:389", "ldap://localhost", "ldap://LOCALHOST:3389", "ldap://[::1]:389", "ldap://127.2.3.4"} {
		c := good
		c.URLs = []string{local}
		if err := c.Validate(); err != nil {
			t.Errorf("%s, on this machine: %v", local, err)
		}
	}
}

// TestAnUnsetBindPasswordVariableIsNamed: bind_password {env.NAME} with
// NAME unset in Caddy's environment (a systemd unit without it) fails the
// start naming the placeholder, not "bind_dn and bind_password are
// required" of a config that has both. caddy validate, often run from a
// shell without the service's environment, still passes it.
func TestAnUnsetBindPasswordVariableIsNamed(t *testing.T) {
	const placeholder = "{env.GATEHOUSE_TEST_UNSET_LDAP_PASSWORD}"
	t.Setenv("GATEHOUSE_TEST_UNSET_LDAP_PASSWORD", "")
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	a := &App{DataDir: t.TempDir(), Directory: &directory.Config{URLs: []string{"ldaps://127.0.0.1:1"}, BindDN: "cn=svc,dc=example,dc=test",
		BindPassword: placeholder, BaseDN: "dc=example,dc=test", Flavor: directory.OpenLDAP}}
	if err := a.Provision(ctx); err != nil {
		t.Fatalf("Provision (caddy validate) with %s unset: %v; want it to pass", placeholder, err)
	}
	err := a.Start()
	if err == nil {
		_ = a.Stop() // the test fails anyway
		t.Fatalf("started with %s empty", placeholder)
	}
	if !strings.Contains(err.Error(), placeholder) || !strings.Contains(err.Error(), "environment") {
		t.Errorf("start with %s unset: %v; want the placeholder and Caddy's environment named", placeholder, err)
	}
}

// TestUnknownGroupRolesAreWarnedOf: a group_role naming a role that does
// not exist is warned of at start, naming the group and the role; one
// that exists, or a store that does not answer, says nothing.
func TestUnknownGroupRolesAreWarnedOf(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	roles := map[string]error{"reader": nil, "nosuchrole": failure.NotFound("role %q not found", "nosuchrole"), "later": errors.New("store down")}
	warnOfUnknownRoles(context.Background(), func(_ context.Context, name string) error { return roles[name] }, zap.New(core), []directory.GroupRole{
		{Group: "cn=staff,dc=x", Role: "reader"}, {Group: "cn=ops,dc=x", Role: "nosuchrole"}, {Group: "cn=dev,dc=x", Role: "later"}})
	if logs.Len() != 1 || logs.All()[0].ContextMap()["role"] != "nosuchrole" || logs.All()[0].ContextMap()["group"] != "cn=ops,dc=x" {
		t.Fatalf("warnings %v; want one, of cn=ops,dc=x → nosuchrole", logs.All())
	}
}
