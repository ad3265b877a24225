package directory

import (
	"context"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse-auth/gatehouse/directory/slapdtest"
)

// TestCoverWaitsNotForADirectoryThatDoesNotAnswer: a local account's
// sign-in does the directory's work a directory name's costs (Cover),
// but not while the directory does not answer: an outside review's
// break-glass local account took 4 s to sign in over HTTP Basic with a
// directory that hung (timeout 2s, a read and a bind), at every sign-in,
// while the docs promise local accounts keep working to fix it.
func TestCoverWaitsNotForADirectoryThatDoesNotAnswer(t *testing.T) {
	const timeout = 400 * time.Millisecond
	d, err := New(Config{URLs: []string{"ldap://" + slapdtest.HungServer(t)}, Flavor: OpenLDAP, BindDN: "cn=svc,dc=x", BindPassword: "p",
		BaseDN: "dc=x", Timeout: caddy.Duration(timeout)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Cover(context.Background(), "root", "a password") // finds the directory hanging
	began := time.Now()
	d.Cover(context.Background(), "root", "a password")
	if took := time.Since(began); took >= timeout/2 {
		t.Errorf("a cover once the directory was found not to answer took %v; want no wait for its %v timeout", took, timeout)
	}
}
