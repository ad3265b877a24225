package connector

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/reccodec"
)

// Store layout. Every token key expires with the token (store TTL).
//
//	connector/<name>                 Connector
//	token/<hex sha256 of token>      tokenRecord (access, refresh, or a used refresh token)
//	tokenid/<id>                     the connector name of token pair <id>
//	conntoken/<connector>/<id>       tokenMeta of pair <id>: listing and revocation per connector
//	connectorca                      caRecord: the CA every instance of a shared store must use
const (
	connectorPrefix = "connector/"
	tokenPrefix     = "token/"
	tokenIDPrefix   = "tokenid/"
	connTokenPrefix = "conntoken/"
	caRecordKey     = "connectorca"
)

func connectorKey(name string) string        { return connectorPrefix + name }
func tokenKey(digest string) string          { return tokenPrefix + digest }
func tokenIDKey(id string) string            { return tokenIDPrefix + id }
func connTokenKey(conn, id string) string    { return connTokenPrefix + conn + "/" + id }
func connTokenScanPrefix(conn string) string { return connTokenPrefix + conn + "/" }

// Connector is a connector record: one client certificate bound to one
// user account. Only the current certificate works; revoked connectors are
// kept (revoked: true) so the listing shows what happened to them.
type Connector struct {
	// View holds the fields the admin API shows (stored flattened).
	View
	// UserID binds the connector to that account, not to its name.
	UserID string `json:"user_id"`

	certDER    []byte // decoded CertificatePEM
	thumbprint string // x5t#S256 of certDER
}

func decodeConnector(raw []byte) (*Connector, error) {
	c := new(Connector)
	if err := json.Unmarshal(raw, c); err != nil {
		return nil, err
	}
	block, _ := pem.Decode([]byte(c.CertificatePEM))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("connector record holds no certificate")
	}
	c.certDER = block.Bytes
	c.thumbprint = thumbprintOf(block.Bytes)
	return c, nil
}

// Token kinds in a tokenRecord.
const (
	kindAccess  = "access"
	kindRefresh = "refresh"
	// kindUsed marks a refresh token that was exchanged: presenting it
	// again is reuse, and revokes what was issued in exchange for it.
	kindUsed = "used"
)

// tokenRecord is what the store keeps under the digest of a token.
type tokenRecord struct {
	Kind      string    `json:"kind"`
	ID        string    `json:"id"`
	Connector string    `json:"connector"`
	Username  string    `json:"username"`
	UserID    string    `json:"user_id"`
	X5tS256   string    `json:"x5t#S256"` // RFC 8705 confirmation: the bound certificate
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// AccessDigest is the access token's digest (refresh records).
	AccessDigest string `json:"access,omitempty"`
	// Successor is the digest of the refresh token issued in exchange
	// (used records).
	Successor string `json:"successor,omitempty"`
	// TokenEpoch is the account's token epoch at issue
	// (account.User.TokenEpoch): a block of the account ends the pair.
	TokenEpoch uint64 `json:"token_epoch,omitempty"`
}

// tokenCodecVersion starts a token record in internal/reccodec's binary
// form, which the data plane decodes on every cache miss far faster than
// JSON. Records of version 1 (without TokenEpoch) and records starting
// with '{' (the JSON that earlier versions wrote) are still read, with a
// TokenEpoch of 0 (such a token lives until its expiry or a block).
const (
	tokenCodecVersion   = 2
	tokenCodecVersionV1 = 1
)

// errCorruptToken is a token record that is neither form.
var errCorruptToken = errors.New("token record is corrupt")

// fields visits every field of r in storage order. Append new fields at
// the end only (and bump tokenCodecVersion).
func (r *tokenRecord) fields(c reccodec.Fields) {
	r.fieldsV1(c)
	c.Uint(&r.TokenEpoch)
}

// fieldsV1 visits the fields of a version 1 record.
func (r *tokenRecord) fieldsV1(c reccodec.Fields) {
	c.String(&r.Kind)
	c.String(&r.ID)
	c.String(&r.Connector)
	c.String(&r.Username)
	c.String(&r.UserID)
	c.String(&r.X5tS256)
	c.Time(&r.IssuedAt)
	c.Time(&r.ExpiresAt)
	c.String(&r.AccessDigest)
	c.String(&r.Successor)
}

func (r *tokenRecord) encode() []byte { return reccodec.Encode(tokenCodecVersion, r.fields) }

func decodeTokenRecord(raw []byte) (*tokenRecord, error) {
	t := new(tokenRecord)
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, t); err != nil {
			return nil, errCorruptToken
		}
		return t, nil
	}
	version, fields := byte(tokenCodecVersion), t.fields
	if len(raw) > 0 && raw[0] == tokenCodecVersionV1 {
		version, fields = tokenCodecVersionV1, t.fieldsV1
	}
	if reccodec.Decode(raw, version, fields) != nil {
		return nil, errCorruptToken
	}
	return t, nil
}

// tokenMeta describes one issued token pair (access + refresh), for the
// admin API's token list and revocation by ID.
type tokenMeta struct {
	// ID names the pair in the admin API (GET/DELETE /gatehouse/tokens).
	ID string `json:"id"`
	// Connector and Username are whom the pair was issued to.
	Connector string `json:"connector"`
	Username  string `json:"username"`
	// Grant is how the pair was obtained: certificate or refresh_token.
	Grant string `json:"grant"`
	// X5tS256 is the bound certificate's thumbprint (RFC 8705).
	X5tS256   string    `json:"x5t#S256"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// AccessDigest and RefreshDigest are the tokens' SHA-256 digests
	// (tokenDigest), the keys of their records; never the tokens.
	AccessDigest  string `json:"access"`
	RefreshDigest string `json:"refresh"`
}

// caRecord names the CA of a store, so instances sharing it notice when
// they were given different CA files.
type caRecord struct {
	// Fingerprint is the SHA-256 of the CA certificate (hex).
	Fingerprint string `json:"fingerprint_sha256"`
	// Subject is the CA certificate's subject, for the message.
	Subject string `json:"subject"`
}
