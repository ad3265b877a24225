// Package connector is the "connector" credential kind: Gatehouse as the
// CA of connector client certificates (one per connector, bound to a user
// account), the OAuth 2 token endpoint that exchanges a connector's
// certificate for a 10-hour bearer token, and the check that such a token
// is only accepted on a TLS connection presenting the certificate it was
// issued to (RFC 8705 certificate-bound tokens).
//
// On the data plane a request carries "Authorization: Bearer <token>". Its
// record (found by the token's SHA-256, through the cache: no store read on
// a hit) names the connector and the bound certificate's thumbprint; the
// connector record (also cached) must be live and its current certificate
// must be the one the connection presented. Re-issuing a connector's
// certificate or revoking it therefore takes effect on the next request,
// without a configuration reload.
package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// TokenPath is the token endpoint, served on every route that accepts the
// connector kind.
const TokenPath = "/gatehouse/v1/token"

// IntrospectPath is the token introspection endpoint (RFC 7662), served
// next to TokenPath.
const IntrospectPath = "/gatehouse/v1/introspect"

// DefaultCertValidity is the validity of a connector certificate unless
// configured otherwise.
const DefaultCertValidity = 365 * 24 * time.Hour

// Options configure the connector kind.
type Options struct {
	// CA is the connector CA, loaded with its key.
	CA *CA
	// CertValidity is the validity of new connector certificates
	// (default DefaultCertValidity).
	CertValidity time.Duration
	// Servers returns the base URLs (https://host:port) connectors use,
	// written into the metadata.json of a connector package.
	Servers func() []string
}

// Plugin is the connector credential kind, its token endpoint and its
// admin API.
type Plugin struct {
	engine   *engine.Engine
	ca       *CA
	validity time.Duration
	servers  func() []string
	now      func() time.Time
}

// New returns the connector kind of e. It records the CA's fingerprint in
// the store on first use and refuses to start when the store (shared with
// other instances) names another CA: connectors issued by one instance
// would be refused by the TLS layer of the other.
func New(ctx context.Context, e *engine.Engine, opts Options) (*Plugin, error) {
	if opts.CA == nil || opts.CA.key == nil {
		return nil, errors.New("connector: the CA must be loaded with its key")
	}
	if opts.CertValidity <= 0 {
		opts.CertValidity = DefaultCertValidity
	}
	if opts.Servers == nil {
		opts.Servers = func() []string { return nil }
	}
	if err := checkSharedCA(ctx, e.Store, opts.CA); err != nil {
		return nil, err
	}
	p := &Plugin{engine: e, ca: opts.CA, validity: opts.CertValidity, servers: opts.Servers, now: time.Now}
	e.Accounts.OnDelete(p.revokeUser)
	return p, nil
}

func checkSharedCA(ctx context.Context, st storage.Store, ca *CA) error {
	sum := fingerprint(ca.cert.Raw)
	want, _ := json.Marshal(caRecord{Fingerprint: sum, Subject: ca.cert.Subject.CommonName})
	if _, err := st.CompareAndSwap(ctx, caRecordKey, nil, want, 0); err != nil {
		return fmt.Errorf("recording the connector CA: %w", err)
	}
	have, _, err := storeCA(ctx, st)
	if err != nil {
		return err
	}
	if have.Fingerprint != sum {
		return anotherCA(have, ca)
	}
	return nil
}

// storeCA reads the connector CA the store names; known is false when it
// names none yet.
func storeCA(ctx context.Context, st storage.Store) (have caRecord, known bool, err error) {
	raw, err := st.Get(ctx, caRecordKey)
	if errors.Is(err, storage.ErrNotFound) {
		return caRecord{}, false, nil
	}
	if err != nil {
		return caRecord{}, false, fmt.Errorf("reading the connector CA record: %w", err)
	}
	if err := json.Unmarshal(raw, &have); err != nil {
		return caRecord{}, false, fmt.Errorf("the connector CA record is corrupt: %v", err)
	}
	return have, true, nil
}

// anotherCA is the refusal of a CA other than the one the store names.
func anotherCA(have caRecord, ca *CA) error {
	return fmt.Errorf("the store belongs to connector CA %q (SHA-256 %s) but this instance's %s directory holds %q (SHA-256 %s): "+
		"instances sharing a store must share the connector-ca directory and the keystore; copy them from the first instance "+
		"(after a restore: the %s directory backed up with the store)",
		have.Subject, have.Fingerprint, CADir, ca.cert.Subject.CommonName, fingerprint(ca.cert.Raw), CADir)
}

// OpenForStore opens the connector CA of dataDir for the store st (see
// OpenCA), first checking its certificate against the CA the store names,
// so that a connector-ca directory of another instance, whose key is
// sealed with that instance's keystore, is refused as another CA rather
// than as a key this keystore does not open (which sent operators after
// the keystore), and so that a missing directory beside a store that names
// a CA is refused without making a new CA in its place.
func OpenForStore(ctx context.Context, st storage.Store, dataDir string, ks *keystore.Keystore) (*CA, error) {
	have, known, err := storeCA(ctx, st)
	if err != nil {
		return nil, err
	}
	if known {
		ca, err := LoadCACertificate(dataDir)
		switch {
		case errors.Is(err, ErrNoCA):
			return nil, fmt.Errorf("the store belongs to connector CA %q (SHA-256 %s) but %s does not exist: restore it from the backup taken with the store, "+
				"or copy it from an instance sharing the store (a new CA would not verify the connectors' certificates)",
				have.Subject, have.Fingerprint, filepath.Join(dataDir, CADir))
		case err != nil:
			return nil, err
		case fingerprint(ca.cert.Raw) != have.Fingerprint:
			return nil, anotherCA(have, ca)
		}
	}
	return OpenCA(dataDir, ks)
}
