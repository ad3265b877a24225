package connector

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// CreateRequest is the body of POST /gatehouse/connectors.
type CreateRequest struct {
	// Name identifies the connector: 1 to 64 of A-Z a-z 0-9 - _ .
	Name string `json:"name"`
	// Username is the account the connector acts as.
	Username string `json:"username"`
	// CSRPEM is an optional PEM certificate request: the key stays with
	// the client and no private key is returned.
	CSRPEM string `json:"csr_pem,omitempty"`
}

// View is what the admin API shows of a connector.
type View struct {
	// Name identifies the connector.
	Name string `json:"name"`
	// Username is the account it acts as.
	Username string `json:"username"`
	// Serial is the current certificate's serial number (upper-case hex).
	Serial string `json:"serial"`
	// Fingerprint is the current certificate's SHA-256 (lower-case hex).
	Fingerprint string `json:"fingerprint_sha256"`
	// NotAfter is when the current certificate expires.
	NotAfter time.Time `json:"not_after"`
	// CertificatePEM is the current certificate.
	CertificatePEM string `json:"certificate_pem"`
	// Revoked tells that the connector was deleted.
	Revoked bool `json:"revoked"`
	// RevokedAt is when the connector was revoked (deleted, or its
	// account deleted); absent while Revoked is false.
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// CreatedAt is when the connector was created.
	CreatedAt time.Time `json:"created_at"`
	// UpdatedAt is when it last changed.
	UpdatedAt time.Time `json:"updated_at"`
}

// Issued answers the creation of a connector or a new certificate.
type Issued struct {
	View
	// PrivateKeyPEM is the new key (PKCS#8), returned once and never
	// stored; absent when the request carried a CSR.
	PrivateKeyPEM string `json:"private_key_pem,omitempty"`
	// CAPEM is the connector CA certificate.
	CAPEM string `json:"ca_pem"`
}

func (c *Connector) view() View {
	return c.View
}

// setCertificate makes cert the connector's current certificate.
func (c *Connector) setCertificate(cert *x509.Certificate, now time.Time) {
	c.Serial = formatSerial(cert.SerialNumber)
	c.Fingerprint = fingerprint(cert.Raw)
	c.NotAfter = cert.NotAfter.UTC()
	c.CertificatePEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	c.UpdatedAt = now.UTC()
	c.certDER, c.thumbprint = cert.Raw, thumbprintOf(cert.Raw)
}

func (p *Plugin) issued(c *Connector, keyPEM []byte) *Issued {
	return &Issued{View: c.view(), PrivateKeyPEM: string(keyPEM), CAPEM: string(p.ca.certPEM)}
}

// keyFor returns the public key to certify: the CSR's, or a new key pair
// whose private half is returned in PEM form.
func keyFor(csrPEM string) (crypto.PublicKey, []byte, error) {
	if csrPEM != "" {
		pub, err := PublicKeyFromCSR(csrPEM)
		return pub, nil, err
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	return &key.PublicKey, keyPEM, nil
}

// Create makes a connector for an existing user and issues its first
// certificate. A revoked connector's name may be used again; a live one is
// a 409.
func (p *Plugin) Create(ctx context.Context, in CreateRequest) (*Issued, error) {
	if err := account.ValidateName("connector", in.Name); err != nil {
		return nil, err
	}
	u, err := p.engine.Accounts.User(ctx, in.Username)
	if errors.Is(err, failure.ErrNotFound) {
		return nil, failure.Invalid("user %q does not exist; create it first", in.Username)
	}
	if err != nil {
		return nil, err
	}
	pub, keyPEM, err := keyFor(in.CSRPEM)
	if err != nil {
		return nil, err
	}
	now := p.now()
	cert, err := p.ca.issue(pub, in.Name, p.validity, now)
	if err != nil {
		return nil, err
	}
	rec := &Connector{View: View{Name: in.Name, Username: u.Username, CreatedAt: now.UTC()}, UserID: u.ID}
	rec.setCertificate(cert, now)
	err = p.update(ctx, in.Name, func(prev *Connector) (*Connector, error) {
		if prev != nil && !prev.Revoked {
			return nil, failure.Conflict("connector %q already exists; give it a new certificate instead (admin API: POST /gatehouse/connectors/%s/certificate; console: the connector's New certificate or Download package)", in.Name, in.Name)
		}
		return rec, nil
	})
	if err != nil {
		return nil, err
	}
	return p.issued(rec, keyPEM), nil
}

// Reissue gives the connector a new certificate for pub; the previous one
// stops working at once and the tokens bound to it are revoked. prepare,
// when set, runs with the new certificate before anything is stored, so a
// failure there changes nothing.
func (p *Plugin) Reissue(ctx context.Context, name string, pub crypto.PublicKey, prepare func(*Connector, *x509.Certificate) error) (*Connector, error) {
	var reissued *Connector
	err := p.update(ctx, name, func(rec *Connector) (*Connector, error) {
		switch {
		case rec == nil:
			return nil, errNotFound(name)
		case rec.Revoked:
			return nil, failure.Conflict("connector %q is revoked; create it again (admin API: POST /gatehouse/connectors; console: Issue a connector)", name)
		}
		u, err := p.engine.Accounts.User(ctx, rec.Username)
		if err != nil && !errors.Is(err, failure.ErrNotFound) {
			return nil, err
		}
		if u == nil || u.ID != rec.UserID {
			return nil, failure.Conflict("the account %q of connector %q no longer exists; delete the connector", rec.Username, name)
		}
		now := p.now()
		cert, err := p.ca.issue(pub, name, p.validity, now)
		if err != nil {
			return nil, err
		}
		rec.setCertificate(cert, now)
		if prepare != nil {
			if err := prepare(rec, cert); err != nil {
				return nil, err
			}
		}
		reissued = rec
		return rec, nil
	})
	if err != nil {
		return nil, err
	}
	if _, err := p.revokeConnectorTokens(ctx, name, reissued.thumbprint); err != nil {
		return nil, fmt.Errorf("the certificate was re-issued but revoking the old tokens failed: %w", err)
	}
	return reissued, nil
}

// Revoke marks the connector revoked and revokes every token issued
// through it; it returns how many token pairs were revoked. Revoking a
// revoked connector again only sweeps its tokens.
func (p *Plugin) Revoke(ctx context.Context, name string) (*Connector, int, error) {
	return p.revoke(ctx, name, "")
}

// revoke is Revoke, of the connector only if it is bound to the account
// userID (any, when empty); another's is returned untouched.
func (p *Plugin) revoke(ctx context.Context, name, userID string) (*Connector, int, error) {
	var rec *Connector
	err := p.update(ctx, name, func(cur *Connector) (*Connector, error) {
		if rec = cur; cur == nil {
			return nil, errNotFound(name)
		}
		if (userID != "" && cur.UserID != userID) || cur.Revoked {
			return nil, storage.ErrNoChange
		}
		now := p.now().UTC()
		cur.Revoked, cur.RevokedAt, cur.UpdatedAt = true, &now, now
		return cur, nil
	})
	if err != nil {
		return nil, 0, err
	}
	if userID != "" && rec.UserID != userID {
		return rec, 0, nil // another account's: left alone
	}
	n, err := p.revokeConnectorTokens(ctx, name, "")
	return rec, n, err
}

// revokeUser revokes, with their tokens, the connectors of an account that
// is being deleted (an account.DeleteHook): a revoked connector stays
// listed, as DELETE /gatehouse/connectors/{name} leaves it.
func (p *Plugin) revokeUser(ctx context.Context, u *account.User) error {
	var names []string
	err := p.engine.Store.Scan(ctx, connectorPrefix, func(e storage.Entry) error {
		rec, err := decodeConnector(e.Value)
		if err != nil {
			p.engine.Logger.Error("skipping a corrupt connector record", zap.String("key", e.Key), zap.Error(err))
			return nil
		}
		if rec.UserID == u.ID && !rec.Revoked {
			names = append(names, rec.Name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range names {
		rec, n, err := p.revoke(ctx, name, u.ID)
		if errors.Is(err, failure.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if rec.UserID != u.ID {
			continue // re-created meanwhile for another account: left alone
		}
		p.engine.Audit.Record(audit.Event{Kind: audit.KindConnector, Username: u.Username, Actor: audit.ActorOf(ctx),
			Credential: audit.Credential(string(identity.MethodConnector), name),
			Outcome:    audit.OutcomeSuccess, Reason: fmt.Sprintf("connector revoked with its user; %d token pair(s) revoked", n)})
	}
	return nil
}

// Get returns the connector record, or a 404 failure.
func (p *Plugin) Get(ctx context.Context, name string) (*Connector, error) {
	if account.ValidateName("connector", name) != nil {
		return nil, errNotFound(name)
	}
	raw, err := p.engine.Store.Get(ctx, connectorKey(name))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errNotFound(name)
	}
	if err != nil {
		return nil, err
	}
	return decodeNamed(name, raw)
}

// update changes the record of connector name with storage.Update: change
// gets the record read, nil when there is none, and returns the record to
// store (or storage.ErrNoChange, or an error that changes nothing). A name
// that cannot be a connector's is a 404.
func (p *Plugin) update(ctx context.Context, name string, change func(cur *Connector) (*Connector, error)) error {
	if account.ValidateName("connector", name) != nil {
		return errNotFound(name)
	}
	err := storage.Update(ctx, p.engine.Store, connectorKey(name), 0, func(old []byte) ([]byte, error) {
		var cur *Connector
		if old != nil {
			var err error
			if cur, err = decodeNamed(name, old); err != nil {
				return nil, err
			}
		}
		next, err := change(cur)
		if err != nil {
			return nil, err
		}
		return json.Marshal(next)
	})
	if errors.Is(err, storage.ErrConflict) {
		return failure.Conflict("connector %q is being changed concurrently; try again", name)
	}
	return err
}

// decodeNamed decodes the stored record of connector name.
func decodeNamed(name string, raw []byte) (*Connector, error) {
	rec, err := decodeConnector(raw)
	if err != nil {
		return nil, fmt.Errorf("decoding connector %q: %w", name, err)
	}
	return rec, nil
}

// errNotFound is the 404 of connector name.
func errNotFound(name string) error { return failure.NotFound("connector %q not found", name) }

// List returns every connector (revoked ones too) in name order.
func (p *Plugin) List(ctx context.Context) ([]View, error) {
	out, _, err := p.ListPage(ctx, "", 0)
	return out, err
}

// ListPage is List from the connector after the name after on (all
// when it is empty), at most limit of them (0: no bound), and whether
// more follow the last one returned. The store is read from after on,
// and only until the page is full.
func (p *Plugin) ListPage(ctx context.Context, after string, limit int) ([]View, bool, error) {
	out, more := []View{}, false
	err := storage.ScanFrom(ctx, p.engine.Store, connectorPrefix, storage.KeyAfter(connectorPrefix, after), func(e storage.Entry) error {
		if limit > 0 && len(out) == limit {
			more = true
			return storage.ErrStopScan
		}
		rec, err := decodeConnector(e.Value)
		if err != nil {
			return fmt.Errorf("decoding %s: %w", e.Key, err)
		}
		out = append(out, rec.view())
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return out, more, nil
}
