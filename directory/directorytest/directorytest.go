// Package directorytest connects the tests of the packages above the
// directory to an OpenLDAP server of directory/slapdtest.
package directorytest

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse-auth/gatehouse/directory"
	"github.com/gatehouse-auth/gatehouse/directory/slapdtest"
)

// Config is the configuration of a directory on srv: its LDAPS URL and
// CA, its service account and base DN, OpenLDAP's flavor, an hour's
// status_ttl and a timeout of 10 s.
func Config(srv *slapdtest.Server) directory.Config {
	return directory.Config{
		URLs: []string{srv.TLSURL}, CAFile: srv.CAFile, Flavor: directory.OpenLDAP,
		BindDN: slapdtest.ServiceDN, BindPassword: slapdtest.ServicePassword, BaseDN: slapdtest.BaseDN,
		StatusTTL: caddy.Duration(time.Hour), Timeout: caddy.Duration(10 * time.Second),
	}
}

// New is a directory on srv configured by Config, changed by adjust
// (nil: unchanged), and closed when the test ends.
func New(t testing.TB, srv *slapdtest.Server, adjust func(*directory.Config)) *directory.Directory {
	t.Helper()
	cfg := Config(srv)
	if adjust != nil {
		adjust(&cfg)
	}
	d, err := directory.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
