package caddymodule

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/plugin"
	"github.com/gatehouse-auth/gatehouse/plugin/connector"
	"github.com/gatehouse-auth/gatehouse/storage/redis"
)

func init() {
	caddy.RegisterModule(ConnectorCAPool{})
}

// buildConnectors makes the connector kind over the connector CA in the
// data directory; it serves the admin routes of connectors.
func buildConnectors(d kindDeps) (plugin.Credential, adminapi.Provider, error) {
	a := d.app
	ca, err := connector.OpenForStore(d.ctx, d.engine.Store, a.DataDir, d.engine.Keystore)
	if err != nil {
		return nil, nil, fmt.Errorf("connector CA: %w", err)
	}
	// The servers are found once, at the first package (or console page
	// of connectors), when the HTTP app they are read from is running: a
	// config load does not change them, and a reload makes a new App.
	servers := sync.OnceValue(func() []string { return a.connectorServers(ca.Certificate()) })
	p, err := connector.New(d.ctx, d.engine, connector.Options{CA: ca,
		CertValidity: time.Duration(a.ConnectorCertValidity), Servers: servers})
	if err != nil {
		return nil, nil, err
	}
	return p, p, nil
}

// validateConnectorOptions checks the connector options of the app.
func (a *App) validateConnectorOptions() error {
	if a.ConnectorCertValidity != 0 && time.Duration(a.ConnectorCertValidity) < time.Hour {
		return fmt.Errorf("connector_cert_validity %v: a connector certificate must be valid for at least 1h", time.Duration(a.ConnectorCertValidity))
	}
	for _, s := range a.ConnectorServers {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("connector_servers: %q must be a base URL like https://gatehouse.example.com:8443", s)
		}
	}
	return nil
}

// connectorServers returns the base URLs written into connector packages:
// the configured ones, or else those of the HTTPS sites whose gatehouse
// handler accepts connector credentials and whose TLS asks for a client
// certificate of the connector CA ca (one per host name and port; sites
// without a host name or with a wildcard cannot be named and are skipped).
// A site accepting connectors whose TLS does not ask for their
// certificate, where no connector could work, is left out with a warning.
func (a *App) connectorServers(ca *x509.Certificate) []string {
	if len(a.ConnectorServers) > 0 {
		return slices.Clone(a.ConnectorServers)
	}
	servers, _ := a.siteURLs(identity.MethodConnector, func(handshake *tls.Config, host string) bool {
		if handshake == nil {
			return false // plain HTTP: no certificate at all
		}
		if !asksForCertificateOf(handshake, host, ca) {
			a.logger.Warn("a site accepts connector credentials, but its TLS does not ask for the connector certificate (client_auth with trust_pool gatehouse_connectors): no connector can use it, and connector packages leave it out",
				zap.String("host", host))
			return false
		}
		return true
	})
	return servers
}

// siteURLs returns, sorted, the base URLs (scheme://host[:port], the
// scheme's default port left out) of the sites whose gatehouse handler
// accepts kind: one per host name the routes match and listener of their
// server. keep, when set, decides for each host name of a server, told the
// server's TLS (nil for plain HTTP). named is false when such a handler
// serves a route without a host name to name (a site answering any host,
// a wildcard or a placeholder), which no URL can stand for.
func (a *App) siteURLs(kind identity.Method, keep func(handshake *tls.Config, host string) bool) (urls []string, named bool) {
	httpApp, err := a.ctx.AppIfConfigured("http")
	if err != nil {
		return nil, true
	}
	named = true
	for _, srv := range httpApp.(*caddyhttp.App).Servers {
		var handshake *tls.Config
		scheme, defaultPort := "http", uint(80)
		if len(srv.TLSConnPolicies) > 0 {
			handshake = srv.TLSConnPolicies.TLSConfig(a.ctx)
			scheme, defaultPort = "https", 443
		}
		hosts, unnamed := handlerHosts(srv.Routes, func(h *Handler) bool { return slices.Contains(h.Accept, string(kind)) }, nil)
		named = named && !unnamed
		for _, host := range hosts {
			if keep != nil && !keep(handshake, host) {
				continue
			}
			for _, listen := range srv.Listen {
				addr, err := caddy.ParseNetworkAddress(listen)
				if err != nil || addr.IsUnixNetwork() {
					continue
				}
				base := scheme + "://" + host
				if addr.StartPort != defaultPort {
					base = scheme + "://" + net.JoinHostPort(host, strconv.FormatUint(uint64(addr.StartPort), 10))
				}
				urls = append(urls, base)
			}
		}
	}
	slices.Sort(urls)
	return slices.Compact(urls), named
}

// asksForCertificateOf reports whether a TLS handshake for host under
// handshake (a server's connection policies) verifies a client certificate
// against ca, as a connector's needs. A policy chosen by more than the
// host name (the client's address) cannot be found without a connection:
// such a host is taken to ask.
func asksForCertificateOf(handshake *tls.Config, host string, ca *x509.Certificate) (asks bool) {
	defer func() {
		if recover() != nil {
			asks = true
		}
	}()
	cfg, err := handshake.GetConfigForClient(&tls.ClientHelloInfo{ServerName: host})
	if err != nil || cfg == nil {
		return false
	}
	if cfg.ClientAuth != tls.VerifyClientCertIfGiven && cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil {
		return false
	}
	_, err = ca.Verify(x509.VerifyOptions{Roots: cfg.ClientCAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

// ConnectorCAPool is tls.ca_pool.source.gatehouse_connectors: the trust
// pool of the connector CA, for a site's TLS client authentication. In a
// Caddyfile:
//
//	tls internal {
//		client_auth {
//			mode       verify_if_given
//			trust_pool gatehouse_connectors
//		}
//	}
//
// It loads the CA certificate from the gatehouse app's data directory,
// creating the CA on the very first start (the app opens its store only
// later, in Start). A CA that cannot be loaded fails the configuration:
// there is no fallback that would accept any certificate. The TLS layer
// only proves that a certificate comes from this CA; the gatehouse handler
// checks on every request that it is the current certificate of a live
// connector.
type ConnectorCAPool struct {
	pool  *x509.CertPool
	certs []*x509.Certificate
}

// CaddyModule returns the Caddy module information.
func (ConnectorCAPool) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "tls.ca_pool.source.gatehouse_connectors", New: func() caddy.Module { return new(ConnectorCAPool) }}
}

// Provision implements caddy.Provisioner.
func (p *ConnectorCAPool) Provision(ctx caddy.Context) error {
	app, err := ctx.App("gatehouse")
	if err != nil {
		return fmt.Errorf("gatehouse_connectors trust pool: %v", err)
	}
	ca, err := app.(*App).connectorCACertificate()
	if err != nil {
		return fmt.Errorf("gatehouse_connectors trust pool: %w", err)
	}
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca.Certificate())
	p.certs = []*x509.Certificate{ca.Certificate()}
	return nil
}

// connectorCACertificate loads the connector CA certificate, creating the
// CA when it does not exist yet. Creating it needs the keystore to seal the
// CA key. The keystore is only created here when the embedded database
// does not exist yet either — on a fresh install; otherwise a missing
// keystore is left to the app's Start, which refuses to replace a keystore
// the store's secrets are sealed with.
func (a *App) connectorCACertificate() (*connector.CA, error) {
	ca, err := connector.LoadCACertificate(a.DataDir)
	if !errors.Is(err, connector.ErrNoCA) {
		return ca, err
	}
	ks, err := keystore.Open(a.Keystore, false)
	if errors.Is(err, keystore.ErrMissing) {
		fresh, probeErr := a.freshStore()
		if probeErr != nil {
			return nil, probeErr
		}
		if !fresh {
			return nil, fmt.Errorf("the connector CA does not exist yet and the keystore %s is missing: "+
				"restore the keystore (and %s) from your backup or copy them from an instance sharing this store; "+
				"on a new install, start once without `trust_pool gatehouse_connectors` to create both", a.Keystore, filepath.Join(a.DataDir, connector.CADir))
		}
		ks, err = keystore.Open(a.Keystore, true)
	}
	if err != nil {
		return nil, err
	}
	return connector.OpenCA(a.DataDir, ks)
}

// freshStore reports whether the store certainly holds no sealed secret:
// the embedded database was never created, or the Redis server holds none.
func (a *App) freshStore() (bool, error) {
	if !isRedisURL(a.Storage) {
		_, err := os.Stat(filepath.Join(a.DataDir, "badger"))
		return errors.Is(err, fs.ErrNotExist), nil
	}
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	st, err := redis.Open(ctx, a.Storage, redis.Options{Logger: a.logger.Named("redis")})
	if err != nil {
		return false, err
	}
	defer st.Close()
	sealed, err := holdsSealedSecrets(ctx, st)
	return !sealed && err == nil, err
}

// CertPool implements caddytls.CA.
func (p ConnectorCAPool) CertPool() *x509.CertPool { return p.pool }

// Certificates implements caddytls.CertificateProvider, so the pool can be
// combined with others.
func (p ConnectorCAPool) Certificates() []*x509.Certificate { return p.certs }

// UnmarshalCaddyfile implements caddyfile.Unmarshaler. Syntax:
//
//	trust_pool gatehouse_connectors
func (p *ConnectorCAPool) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Err("gatehouse_connectors takes no options: the CA lives in the gatehouse app's data_dir")
	}
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner            = (*ConnectorCAPool)(nil)
	_ caddytls.CA                  = ConnectorCAPool{}
	_ caddytls.CertificateProvider = ConnectorCAPool{}
	_ caddyfile.Unmarshaler        = (*ConnectorCAPool)(nil)
)
