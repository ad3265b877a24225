// Package slapdtest runs a real, private OpenLDAP slapd for tests: on free
// loopback ports (ldap:// and ldaps:// with a certificate of a test CA),
// an mdb database and the ppolicy overlay, its configuration and data in
// the test's temporary directory. Changes go through the real ldapmodify.
// The service account's hard size limit is lifted, as an operator lifts it
// where accounts are in many groups; its soft limit stays slapd's default
// (500), which a search that does not page meets.
//
// When slapd is not installed the test is skipped, or fails when
// GATEHOUSE_REQUIRE_TOOLS=1 (make test sets it and installs slapd).
package slapdtest

import (
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/testca"
	"github.com/gatehouse-auth/gatehouse/internal/testport"
	"github.com/gatehouse-auth/gatehouse/internal/testtool"
)

// The test tree's fixed names.
const (
	// BaseDN is the suffix of the test tree.
	BaseDN = "dc=example,dc=test"
	// AdminDN and AdminPassword are slapd's root account.
	AdminDN       = "cn=admin," + BaseDN
	AdminPassword = "admin secret"
	// ServiceDN and ServicePassword are the account Gatehouse binds as.
	ServiceDN       = "cn=gatehouse,ou=service," + BaseDN
	ServicePassword = "service secret 7"
	// OperatorsDN is a group whose members include the group ShiftDN.
	OperatorsDN = "cn=operators,ou=groups," + BaseDN
	// ShiftDN is a group nested in OperatorsDN.
	ShiftDN = "cn=shift-a,ou=groups," + BaseDN
	// PeopleDN holds the users.
	PeopleDN = "ou=people," + BaseDN
	// DefaultPolicyDN is the server's default password policy
	// (ppolicy_default): the entry applies to accounts without a
	// pwdPolicySubentry once a test adds it.
	DefaultPolicyDN = "cn=default,ou=policies," + BaseDN
)

// Server is a running slapd.
type Server struct {
	// URL is the ldap:// address (loopback, no TLS).
	URL string
	// TLSURL is the ldaps:// address, its certificate valid for 127.0.0.1.
	TLSURL string
	// CAFile is the PEM file of the CA that signed the server's certificate.
	CAFile string
	// CAPool holds that CA.
	CAPool *x509.CertPool

	t      testing.TB
	dir    string
	args   []string
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// Start launches slapd with the test tree (see Users) loaded; it is stopped
// when the test ends. Each of lines is a line of slapd.conf for the
// database, put before the service account's default limits: a limits
// line for ServiceDN among them, or a sizelimit, is the one that holds.
func Start(t testing.TB, lines ...string) *Server {
	t.Helper()
	bin := testtool.Require(t, "slapd")
	testtool.Require(t, "ldapmodify")
	dir := t.TempDir()
	ca := testca.New(t, dir)
	ca.Issue("server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, "127.0.0.1")
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile %[1]s/slapd.pid
TLSCACertificateFile %[1]s/ca.pem
TLSCertificateFile %[1]s/server.pem
TLSCertificateKeyFile %[1]s/server-key.pem
database mdb
maxsize 67108864
suffix "%[2]s"
rootdn "%[3]s"
rootpw "%[4]s"
directory %[1]s/db
overlay ppolicy
ppolicy_default "%[6]s"
%[7]s
limits dn.exact="%[5]s" size.soft=500 size.hard=unlimited
access to attrs=userPassword by self write by anonymous auth by * none
access to * by dn.exact="%[5]s" read by * none
`, dir, BaseDN, AdminDN, AdminPassword, ServiceDN, DefaultPolicyDN, strings.Join(lines, "\n"))
	confFile := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ldapPort, ldapsPort := testport.Free(t), testport.Free(t)
	s := &Server{
		URL: fmt.Sprintf("ldap://127.0.0.1:%d", ldapPort), TLSURL: fmt.Sprintf("ldaps://127.0.0.1:%d", ldapsPort),
		CAFile: ca.File("ca.pem"), CAPool: ca.Pool, t: t, dir: dir,
	}
	// -d 0 keeps slapd in the foreground, so the test owns the process.
	s.args = []string{bin, "-f", confFile, "-h", s.URL + "/ " + s.TLSURL + "/", "-d", "0"}
	s.Restart()
	t.Cleanup(s.Stop)
	s.Modify(baseTree)
	return s
}

// Stop stops slapd (it keeps its data for Restart).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Restart starts slapd again on the same ports, with the same data, and
// waits until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("slapdtest: Restart of a running server")
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if s.start(deadline) {
			return
		}
		time.Sleep(200 * time.Millisecond) // a port still held by the last run: try again
	}
	log, _ := os.ReadFile(filepath.Join(s.dir, "slapd.log"))
	s.t.Fatalf("slapdtest: slapd did not start within a minute:\n%s", log)
}

// start runs slapd once and waits until it answers (true) or exits
// (false).
func (s *Server) start(deadline time.Time) bool {
	cmd := exec.Command(s.args[0], s.args[1:]...)
	out, err := os.Create(filepath.Join(s.dir, "slapd.log"))
	if err != nil {
		s.t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.URL, "ldap://"), time.Second); err == nil {
			c.Close()
			s.cmd, s.exited = cmd, exited
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-exited
	return false
}

// Modify applies LDIF changes as the root account, with ldapmodify
// (records without a changetype are added).
func (s *Server) Modify(ldif string) {
	s.t.Helper()
	cmd := exec.Command("ldapmodify", "-a", "-x", "-H", s.URL, "-D", AdminDN, "-w", AdminPassword)
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("slapdtest: ldapmodify: %v\n%s\n%s", err, out, ldif)
	}
}

// AddUser adds uid=name under PeopleDN with a password, member of the
// given groups' DNs.
func (s *Server) AddUser(name, password, mobile string, groups ...string) string {
	s.t.Helper()
	dn := "uid=" + name + "," + PeopleDN
	ldif := fmt.Sprintf("dn: %s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: %s\nuserPassword: %s\n", dn, name, name, name, password)
	if mobile != "" {
		ldif += "mobile: " + mobile + "\n"
	}
	for _, g := range groups {
		ldif += fmt.Sprintf("\ndn: %s\nchangetype: modify\nadd: member\nmember: %s\n", g, dn)
	}
	s.Modify(ldif)
	return dn
}

// baseTree is the suffix, the service account, and two groups: shift-a
// nested in operators (a groupOfNames needs a member: the admin).
const baseTree = `dn: ` + BaseDN + `
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,` + BaseDN + `
objectClass: organizationalUnit
ou: people

dn: ou=groups,` + BaseDN + `
objectClass: organizationalUnit
ou: groups

dn: ou=service,` + BaseDN + `
objectClass: organizationalUnit
ou: service

dn: ` + ServiceDN + `
objectClass: person
cn: gatehouse
sn: service
userPassword: ` + ServicePassword + `

dn: ` + ShiftDN + `
objectClass: groupOfNames
cn: shift-a
member: ` + AdminDN + `

dn: ` + OperatorsDN + `
objectClass: groupOfNames
cn: operators
member: ` + ShiftDN + `
`

// HungServer starts a server that takes connections and never answers, as
// a hung domain controller does (or a firewall that lets the handshake
// through), and returns its address (host:port); it stops when t ends.
func HungServer(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", testport.Free(t)))
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 256)
	t.Cleanup(func() {
		l.Close()
		close(held)
		for c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			select {
			case held <- c: // read by nobody, answered never
			default:
				c.Close()
			}
		}
	}()
	return l.Addr().String()
}
