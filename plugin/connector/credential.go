package connector

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unsafe"

	"github.com/gatehouse-auth/gatehouse/guard"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/plugin"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

// Refusals of the data plane. They never say more than the client needs.
var (
	errMalformedToken = identity.Unauthenticated("malformed bearer token")
	errUnknownToken   = identity.Unauthenticated("the bearer token is unknown, expired or revoked")
	errNoCertificate  = identity.Unauthenticated("the bearer token is bound to a client certificate; present it on this connection")
	errWrongCert      = identity.Unauthenticated("the bearer token is bound to another client certificate")
	errCertOutOfDate  = identity.Unauthenticated("the client certificate is expired or not yet valid")
	errRevoked        = identity.Unauthenticated("the connector is revoked")
)

// Method implements plugin.Credential.
func (*Plugin) Method() identity.Method { return identity.MethodConnector }

// Present implements plugin.Credential: an "Authorization: Bearer" header.
func (*Plugin) Present(r *http.Request) bool {
	_, ok := bearerPayload(guard.HeaderValue(r.Header, "Authorization"))
	return ok
}

// Strip implements plugin.Credential.
func (*Plugin) Strip(r *http.Request) { delete(r.Header, "Authorization") }

// Challenge implements plugin.Challenger.
func (*Plugin) Challenge() string { return `Bearer realm="gatehouse"` }

// Endpoints implements plugin.EndpointProvider: the token and
// introspection endpoints.
func (p *Plugin) Endpoints() []plugin.Endpoint {
	return []plugin.Endpoint{{Path: TokenPath, Handler: http.HandlerFunc(p.serveToken)},
		{Path: IntrospectPath, Handler: http.HandlerFunc(p.serveIntrospect)}}
}

// Authenticate implements plugin.Credential. The token must exist, be an
// access token, be unexpired, belong to a live connector, and the
// connection must present that connector's current certificate, whose
// thumbprint the token is bound to.
//
// Comparing the presented certificate's DER with the connector's current
// certificate, and the token's bound thumbprint with that certificate's
// thumbprint, is the RFC 8705 check (thumbprint of the presented
// certificate equals the token's x5t#S256) without hashing on every
// request; it also refuses tokens bound to a superseded certificate.
func (p *Plugin) Authenticate(r *http.Request) (identity.Identity, error) {
	token, ok := bearerToken(guard.HeaderValue(r.Header, "Authorization"))
	if !ok {
		return identity.Identity{}, errMalformedToken
	}
	rec, err := p.boundAccessToken(r.Context(), token, peerCertificate(r))
	if err != nil {
		return identity.Identity{}, err
	}
	// Request events name the connector (credential "connector:<name>"), as
	// the token endpoint's do: the token pair's id means nothing to a reader.
	return identity.Identity{Username: rec.Username, UserID: rec.UserID, Method: identity.MethodConnector,
		Connector: rec.Connector, TokenEpoch: rec.TokenEpoch, CredentialID: rec.Connector}, nil
}

// boundAccessToken returns the record of a live access token presented
// with leaf, the client certificate of its connection (nil when none):
// the checks Authenticate documents.
func (p *Plugin) boundAccessToken(ctx context.Context, token string, leaf *x509.Certificate) (*tokenRecord, error) {
	// The key is put together on the stack: a hit allocates nothing.
	var digest [2 * sha256.Size]byte
	tokenDigestInto(&digest, token)
	rec, err := cache.LoadJoined(p.engine.Store, ctx, tokenPrefix, unsafe.String(&digest[0], len(digest)), decodeTokenRecord) //nolint:gosec // G103: digest is not written while the view is used, and LoadJoined does not keep it
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errUnknownToken
	}
	if err != nil {
		return nil, err
	}
	now := p.now() // one clock read for both checks
	if rec.Kind != kindAccess || !now.Before(rec.ExpiresAt) {
		return nil, errUnknownToken.For(rec.Username)
	}
	if leaf == nil {
		return nil, errNoCertificate.For(rec.Username)
	}
	if !validAt(leaf, now) {
		// A connection set up before the certificate expired stays open,
		// and client_auth modes that skip verification never check it.
		return nil, errCertOutOfDate.For(rec.Username)
	}
	conn, err := p.liveConnector(ctx, rec.Connector)
	if err != nil {
		return nil, withUser(err, rec.Username)
	}
	if conn.thumbprint != rec.X5tS256 || !bytes.Equal(leaf.Raw, conn.certDER) {
		return nil, errWrongCert.For(rec.Username)
	}
	return rec, nil
}

// liveConnector returns the cached connector record, refusing a missing or
// revoked connector.
func (p *Plugin) liveConnector(ctx context.Context, name string) (*Connector, error) {
	conn, err := cache.Load(p.engine.Store, ctx, connectorKey(name), decodeConnector)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errRevoked
	}
	if err != nil {
		return nil, fmt.Errorf("loading connector %q: %w", name, err)
	}
	if conn.Revoked {
		return nil, errRevoked
	}
	return conn, nil
}

// withUser names the claimed account in a refusal, for the audit log.
func withUser(err error, username string) error {
	if refusal, ok := identity.AsRefusal(err); ok {
		return refusal.For(username)
	}
	return err
}

// peerCertificate is the client certificate of r's TLS connection.
func peerCertificate(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates[0]
}

// validAt reports whether now is within the certificate's validity period.
func validAt(cert *x509.Certificate, now time.Time) bool {
	return !now.Before(cert.NotBefore) && !now.After(cert.NotAfter)
}
