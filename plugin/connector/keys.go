package connector

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"

	"github.com/gatehouse-auth/gatehouse/failure"
)

// maxCSRBytes bounds the PEM certificate request an admin may send.
const maxCSRBytes = 16 << 10

// PublicKeyFromCSR parses a PEM certificate signing request, checks that
// it is signed by the key it carries (proof of possession) and returns that
// public key — and nothing else: the subject, SANs and extensions the
// request asks for are ignored, Gatehouse decides what a connector
// certificate says. Errors are 400 failures.
func PublicKeyFromCSR(csrPEM string) (crypto.PublicKey, error) {
	if len(csrPEM) > maxCSRBytes {
		return nil, failure.Invalid("csr_pem is larger than %d bytes", maxCSRBytes)
	}
	block, rest := pem.Decode([]byte(csrPEM))
	if block == nil || (block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST") {
		return nil, failure.Invalid("csr_pem must be a PEM \"CERTIFICATE REQUEST\" block")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, failure.Invalid("csr_pem must hold exactly one PEM block")
	}
	// The parser's and the verifier's own errors ("asn1: structure
	// error: tags don't match …") tell an operator nothing: not shown.
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, failure.Invalid("csr_pem is not a valid certificate request: its PEM block holds no PKCS #10 request " +
			"(damaged or cut short in copying?); make a new one, e.g. openssl req -new -key connector.key")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, failure.Invalid("csr_pem is not signed by the key it carries (or with an algorithm Gatehouse does not take): " +
			"make it with the connector's own key")
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, err
	}
	return csr.PublicKey, nil
}

// checkPublicKey accepts the key types TLS clients use for client
// certificates, at sound sizes: ECDSA P-256/P-384/P-521, RSA 2048 to 8192
// bits, Ed25519.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return failure.Invalid("csr_pem: ECDSA keys must use P-256, P-384 or P-521")
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 8192 {
			return failure.Invalid("csr_pem: RSA keys must have 2048 to 8192 bits, not %d", n)
		}
		return nil
	case ed25519.PublicKey:
		return nil
	}
	return failure.Invalid("csr_pem: unsupported key type; use ECDSA (P-256, P-384, P-521), RSA or Ed25519")
}

// newKey generates a connector key pair (ECDSA P-256) and its PKCS#8 PEM.
func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
