package connector

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/keystore"
)

// The connector CA lives in files, not in the state store: the TLS stack
// needs its certificate when the configuration is loaded — in Provision,
// before the gatehouse app opens the store in Start, and also in a `caddy
// validate` process while another Caddy holds the embedded database's lock.
// The directory <data_dir>/connector-ca holds:
//
//   - ca.pem: the CA certificate (public), what the TLS trust pool loads;
//   - ca-key.sealed: its private key, sealed with the keystore (AES-256-GCM),
//     mode 0600, so the file alone is useless without keystore.key.
//
// Instances sharing a Redis store must share this directory (like the
// keystore file); Verify in the plugin refuses to start an instance whose
// CA differs from the one recorded in the shared store.
const (
	// CADir is the CA's directory inside the data directory.
	CADir        = "connector-ca"
	caCertFile   = "ca.pem"
	caKeyFile    = "ca-key.sealed"
	caKeyContext = "connector-ca/key"
	caKeyPEMType = "GATEHOUSE SEALED PRIVATE KEY"
	caValidity   = 20 * 365 * 24 * time.Hour
)

// ErrNoCA reports that the connector CA has not been created yet.
var ErrNoCA = errors.New("the connector CA does not exist yet")

// CA is the connector certificate authority: a self-signed ECDSA P-256 root
// that may only sign client-authentication certificates (its own extended
// key usage is client auth, path length zero).
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer // nil when loaded without the keystore
}

// Certificate is the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertificatePEM is the CA certificate in PEM form.
func (ca *CA) CertificatePEM() []byte { return ca.certPEM }

// LoadCACertificate loads the CA certificate from dataDir without its key
// (what a TLS trust pool needs). It returns ErrNoCA when the CA was never
// created there.
func LoadCACertificate(dataDir string) (*CA, error) {
	path := filepath.Join(dataDir, CADir, caCertFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if _, statErr := os.Stat(filepath.Join(dataDir, CADir)); errors.Is(statErr, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w in %s", ErrNoCA, dataDir)
		}
		return nil, fmt.Errorf("connector CA certificate %s is missing (the directory exists): restore it from your backup", path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading connector CA certificate: %v", err)
	}
	block, rest := pem.Decode(raw)
	if block == nil || block.Type != "CERTIFICATE" || len(strings.TrimSpace(string(rest))) != 0 {
		return nil, fmt.Errorf("connector CA certificate %s must hold exactly one PEM CERTIFICATE", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("connector CA certificate %s: %v", path, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("connector CA certificate %s is not a CA certificate", path)
	}
	return &CA{cert: cert, certPEM: pem.EncodeToMemory(block)}, nil
}

// OpenCA loads the CA with its private key from dataDir, creating both on
// first use. Two processes creating it at once agree on one CA: the files
// are written into a temporary directory that is renamed into place, and
// the loser of the rename loads the winner's CA.
func OpenCA(dataDir string, ks *keystore.Keystore) (*CA, error) {
	ca, err := LoadCACertificate(dataDir)
	if errors.Is(err, ErrNoCA) {
		if err := createCA(dataDir, ks); err != nil {
			return nil, err
		}
		ca, err = LoadCACertificate(dataDir)
	}
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dataDir, CADir, caKeyFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading connector CA key: %v", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != caKeyPEMType {
		return nil, fmt.Errorf("connector CA key %s is corrupt", path)
	}
	der, err := ks.Open(block.Bytes, caKeyContext)
	if err != nil {
		return nil, fmt.Errorf("connector CA key %s: %v (was the keystore %s replaced?)", path, err, ks.Path())
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("connector CA key %s is invalid: %v", path, err)
	}
	signer, ok := key.(*ecdsa.PrivateKey)
	if !ok || !signer.PublicKey.Equal(ca.cert.PublicKey) {
		return nil, fmt.Errorf("connector CA key %s does not belong to the certificate %s", path, filepath.Join(dataDir, CADir, caCertFile))
	}
	ca.key = signer
	return ca, nil
}

func createCA(dataDir string, ks *keystore.Keystore) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	var tag [4]byte
	if _, err := rand.Read(tag[:]); err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		Subject: pkix.Name{
			Organization: []string{"Gatehouse"},
			CommonName:   "Gatehouse Connector CA " + hex.EncodeToString(tag[:]),
		},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("creating the connector CA certificate: %v", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %v", err)
	}
	tmp, err := os.MkdirTemp(dataDir, ".connector-ca-")
	if err != nil {
		return fmt.Errorf("creating the connector CA: %v", err)
	}
	defer os.RemoveAll(tmp) // a no-op after a successful rename
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: caKeyPEMType, Bytes: ks.Seal(pkcs8, caKeyContext)})
	if err := writeSynced(filepath.Join(tmp, caKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeSynced(filepath.Join(tmp, caCertFile), certPEM, 0o644); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dataDir, CADir)); err != nil {
		if _, statErr := os.Stat(filepath.Join(dataDir, CADir, caCertFile)); statErr == nil {
			return nil // another process created it first; use theirs
		}
		return fmt.Errorf("installing the connector CA: %v", err)
	}
	return syncDir(dataDir)
}

func writeSynced(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("writing %s: %v", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %v", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %v", dir, err)
	}
	return nil
}

// newSerial returns a random 127-bit serial number whose top bit is set, so
// every serial has the same length (16 bytes, 32 hex digits) and is positive.
func newSerial() *big.Int {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("connector: crypto/rand failed: " + err.Error())
	}
	b[0] = b[0]&0x7f | 0x40
	return new(big.Int).SetBytes(b[:])
}

// formatSerial writes a serial number as `openssl x509 -serial` does:
// upper-case hex.
func formatSerial(s *big.Int) string { return strings.ToUpper(s.Text(16)) }

// certBackdate is how long before its issue a connector certificate is
// valid from (not before its CA): an instance of the cluster whose clock
// lags the issuer's, or a client choosing its certificate by its own
// clock, takes a fresh certificate for up to that skew. It admits nothing
// more: a connector's certificates before its current one are refused by
// their thumbprint, not by their dates.
const certBackdate = time.Hour

// issue signs a connector client certificate for pub, valid from
// certBackdate before now for validity (at most until the CA itself
// expires).
func (ca *CA) issue(pub crypto.PublicKey, name string, validity time.Duration, now time.Time) (*x509.Certificate, error) {
	if ca.key == nil {
		return nil, errors.New("the connector CA was loaded without its key")
	}
	if !ca.cert.NotAfter.After(now.Add(time.Hour)) {
		return nil, fmt.Errorf("the connector CA expires at %s; create a new CA and re-issue every connector", ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	notBefore := now.Add(-certBackdate)
	if notBefore.Before(ca.cert.NotBefore) {
		notBefore = ca.cert.NotBefore
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{Organization: []string{"Gatehouse connector"}, CommonName: name},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{connectorURI(name)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("signing the connector certificate: %v", err)
	}
	return x509.ParseCertificate(der)
}
