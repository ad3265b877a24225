package main

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"testing"

	"github.com/gatehouse-auth/gatehouse/directory/slapdtest"
)

// basicDirectoryKind is the basic_directory row: HTTP Basic as a user of
// a directory (`directory ldap`, a private OpenLDAP slapd over LDAPS with
// a test CA, started by directory/slapdtest), cache-hot, on the main
// Caddy beside the local basic row and compared to the same baseline. Its
// status_ttl (an hour) outlasts the run, so that every request is served
// from the status cache and the verified-password cache, as in
// production between two refreshes; no request waits for slapd. With the
// row, the main Caddy's gatehouse block holds the directory option, so the
// basic row (a local user) is measured with a directory configured too.
var basicDirectoryKind = kind{
	name:     "basic_directory",
	baseline: "plain",
	fullSet:  true,
	site:     gatehouseSite("basic_directory", "basic", ""),
	prepare:  startSlapd,
	setup:    setupBasicDirectory,
}

// benchDirectoryUser is the directory user the basic_directory row signs
// in as; its group maps to the bench role.
const benchDirectoryUser = "benchdir"

// startSlapd runs slapd with the bench's directory user and sets the main
// Caddy's directory option; without slapd (or ldapmodify) the row is
// skipped.
func startSlapd(e *env) (err error) {
	t := &slapdRun{env: e}
	defer func() {
		switch f := recover().(type) {
		case nil:
		case slapdFailure:
			err = f
		default:
			panic(f)
		}
	}()
	s := slapdtest.Start(t)
	s.AddUser(benchDirectoryUser, benchPassword, "", slapdtest.OperatorsDN)
	e.gatehouseOptions += fmt.Sprintf(`		directory ldap {
			url           %s
			ca_file       %s
			bind_dn       "%s"
			bind_password "%s"
			base_dn       "%s"
			group_role    "%s" bench
			status_ttl    1h
			flavor        openldap
		}
`, s.TLSURL, s.CAFile, slapdtest.ServiceDN, slapdtest.ServicePassword, slapdtest.BaseDN, slapdtest.OperatorsDN)
	return nil
}

// setupBasicDirectory seeds the bench role (the local bench user with it)
// and returns the row, sending the directory user's password with HTTP
// Basic; one request checks that it signs in.
func setupBasicDirectory(e *env) (row, error) {
	if err := seedBenchUser(e); err != nil {
		return row{}, err
	}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(benchDirectoryUser+":"+benchPassword))
	t := e.get("http://127.0.0.1:%d/", "basic_directory", http.Header{"Authorization": {auth}}, nil)
	resp, err := http.DefaultClient.Do(t.next(0))
	if err != nil {
		return row{}, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return row{}, fmt.Errorf("the directory user %s was answered %d", benchDirectoryUser, resp.StatusCode)
	}
	return row{name: "basic_directory", baseline: "plain", target: t}, nil
}

// slapdRun is the testing.TB that slapdtest needs, for a program that is
// no test: a failure or a skip (slapd not installed) ends startSlapd with
// its message, temporary directories lie under the bench's, and cleanups
// run when the bench stops. slapdtest calls no other method (the embedded
// nil TB would panic if it did).
type slapdRun struct {
	testing.TB
	env *env
	n   int
}

// slapdFailure is a failure or skip reported to slapdRun.
type slapdFailure string

func (f slapdFailure) Error() string { return string(f) }

func (*slapdRun) Helper() {}

func (r *slapdRun) TempDir() string {
	r.n++
	dir := fmt.Sprintf("%s/slapd-%d", r.env.dir, r.n)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		panic(slapdFailure(err.Error()))
	}
	return dir
}

func (r *slapdRun) Cleanup(f func()) { r.env.cleanups = append(r.env.cleanups, f) }
func (*slapdRun) Fatal(args ...any)  { panic(slapdFailure(fmt.Sprint(args...))) }
func (*slapdRun) Fatalf(format string, args ...any) {
	panic(slapdFailure(fmt.Sprintf(format, args...)))
}
func (*slapdRun) Skipf(format string, args ...any) {
	panic(slapdFailure(fmt.Sprintf(format, args...) + " (`make tools` installs it; or leave this row out with -kinds)"))
}
