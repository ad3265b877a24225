// Package testca is a certificate authority for tests: a CA and the
// server and client certificates it issues, written as PEM files.
package testca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority made for one test, its certificate in
// dir/ca.pem.
type CA struct {
	// Pool holds the CA's certificate.
	Pool   *x509.CertPool
	t      testing.TB
	dir    string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	serial int64
}

// New makes a CA that writes its files into dir.
func New(t testing.TB, dir string) *CA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{t: t, dir: dir, cert: cert, key: key, Pool: x509.NewCertPool(), serial: 1}
	ca.Pool.AddCert(cert)
	ca.write("ca.pem", &pem.Block{Type: "CERTIFICATE", Bytes: der})
	return ca
}

// File is the path of a file the CA wrote into its directory.
func (ca *CA) File(name string) string { return filepath.Join(ca.dir, name) }

func (ca *CA) write(name string, block *pem.Block) {
	if err := os.WriteFile(ca.File(name), pem.EncodeToMemory(block), 0o600); err != nil {
		ca.t.Fatal(err)
	}
}

// Issue writes name.pem and name-key.pem: a certificate for the given
// uses and names (IP addresses or DNS names), signed by the CA.
func (ca *CA) Issue(name string, usage []x509.ExtKeyUsage, names ...string) {
	ca.t.Helper()
	ca.serial++
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	ca.write(name+".pem", &pem.Block{Type: "CERTIFICATE", Bytes: der})
	ca.write(name+"-key.pem", &pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}
