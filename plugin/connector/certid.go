package connector

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"

	"github.com/gatehouse-auth/gatehouse/account"
)

// URIPrefix starts the URI SAN that marks a certificate as the client
// certificate of one connector: "urn:gatehouse:connector:<name>".
const URIPrefix = "urn:gatehouse:connector:"

// uriOpaquePrefix is URIPrefix without the "urn:" scheme, as url.URL
// holds it in Opaque.
const uriOpaquePrefix = "gatehouse:connector:"

// ErrNotConnectorCertificate reports a certificate that does not carry the
// connector marks (client-auth-only key usage and exactly one connector URI).
var ErrNotConnectorCertificate = errors.New("the certificate was not issued for connector use")

// connectorURI returns the URI SAN of connector name.
func connectorURI(name string) *url.URL {
	return &url.URL{Scheme: "urn", Opaque: uriOpaquePrefix + name}
}

// ParseConnectorURI returns the connector name a connector URI SAN names.
// It accepts exactly "urn:gatehouse:connector:<name>" (scheme and prefix
// in lower case, as Gatehouse writes them) with a valid connector name.
func ParseConnectorURI(u *url.URL) (string, bool) {
	if u == nil || u.Scheme != "urn" || u.User != nil || u.Host != "" || u.Path != "" ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawFragment != "" {
		return "", false
	}
	name, ok := strings.CutPrefix(u.Opaque, uriOpaquePrefix)
	if !ok || account.ValidateName("connector", name) != nil {
		return "", false
	}
	return name, true
}

// CertificateConnector returns the name of the connector cert was issued
// to. It checks only the marks Gatehouse puts in every connector
// certificate — not a CA, client authentication as the only extended key
// usage, exactly one subject alternative name, the connector URI — and
// refuses anything else with ErrNotConnectorCertificate. Whether the
// certificate is the connector's current one is the caller's check
// against the connector record.
func CertificateConnector(cert *x509.Certificate) (string, error) {
	if cert == nil || cert.IsCA || len(cert.UnknownExtKeyUsage) != 0 ||
		len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth ||
		len(cert.URIs) != 1 || len(cert.DNSNames) != 0 || len(cert.EmailAddresses) != 0 || len(cert.IPAddresses) != 0 {
		return "", ErrNotConnectorCertificate
	}
	name, ok := ParseConnectorURI(cert.URIs[0])
	if !ok {
		return "", ErrNotConnectorCertificate
	}
	return name, nil
}

// thumbprintOf is the RFC 8705 "x5t#S256" confirmation of a certificate: the
// base64url (unpadded) SHA-256 of its DER encoding.
func thumbprintOf(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// fingerprint is the lower-case hex SHA-256 of a certificate's DER, as
// the admin API shows it (fingerprint_sha256).
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}
