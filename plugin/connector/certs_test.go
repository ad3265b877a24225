package connector

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/keystore/keystoretest"
)

func TestCAIsCreatedOnceAndSealed(t *testing.T) {
	dir := t.TempDir()
	ks, _ := keystore.Open(filepath.Join(dir, "keystore.key"), true)
	if _, err := LoadCACertificate(dir); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("LoadCACertificate before creation = %v; want ErrNoCA", err)
	}
	// Several processes' worth of concurrent first starts agree on one CA.
	cas := make([]*CA, 4)
	var wg sync.WaitGroup
	for i := range cas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if cas[i], err = OpenCA(dir, ks); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, ca := range cas[1:] {
		if ca == nil || !ca.cert.Equal(cas[0].cert) {
			t.Fatal("concurrent creation produced different CAs")
		}
	}
	pub, err := LoadCACertificate(dir)
	if err != nil || !pub.cert.Equal(cas[0].cert) || pub.key != nil {
		t.Fatalf("LoadCACertificate = %v; want the same certificate, without key", err)
	}
	ca := cas[0].cert
	if !ca.IsCA || !ca.MaxPathLenZero || len(ca.ExtKeyUsage) != 1 || ca.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Error("the CA is not restricted to client-auth leaf certificates")
	}
	keyFile := filepath.Join(dir, CADir, caKeyFile)
	st, err := os.Stat(keyFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("CA key file mode = %v, %v; want 0600", st.Mode(), err)
	}
	raw, _ := os.ReadFile(keyFile)
	if bytes.Contains(raw, []byte("PRIVATE KEY-----")) && !bytes.Contains(raw, []byte(caKeyPEMType)) {
		t.Error("the CA key is stored in clear")
	}
	other := keystoretest.New(t)
	if _, err := OpenCA(dir, other); err == nil || !strings.Contains(err.Error(), "keystore") {
		t.Errorf("OpenCA with another keystore = %v; want a keystore error", err)
	}
	if err := os.WriteFile(filepath.Join(dir, CADir, caCertFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCACertificate(dir); err == nil || errorsIsNoCA(err) {
		t.Errorf("a broken CA file = %v; want an error that is not 'does not exist'", err)
	}
	os.Remove(filepath.Join(dir, CADir, caCertFile))
	if _, err := LoadCACertificate(dir); err == nil || errorsIsNoCA(err) {
		t.Errorf("a missing CA certificate next to its key = %v; want an error, never a new CA", err)
	}
}

func errorsIsNoCA(err error) bool {
	return err != nil && strings.Contains(err.Error(), ErrNoCA.Error())
}

func TestSharedStoreRefusesAnotherCA(t *testing.T) {
	f := newFixture(t, engine.Config{})
	otherDir := t.TempDir()
	ca, err := OpenCA(otherDir, f.ks)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), f.engine, Options{CA: ca}); err == nil || !strings.Contains(err.Error(), "share the connector-ca directory") {
		t.Fatalf("New with a second CA on the same store = %v; want refused", err)
	}
}

func TestIssuedCertificateCarriesTheConnectorMarks(t *testing.T) {
	f := newFixture(t, engine.Config{})
	f.user("alice")
	c := f.connector("edge-01", "alice")
	name, err := CertificateConnector(c.cert)
	if err != nil || name != "edge-01" {
		t.Fatalf("CertificateConnector = %q, %v", name, err)
	}
	if _, err := c.cert.Verify(x509.VerifyOptions{Roots: poolOf(f.p.ca.cert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the connector certificate does not verify for client auth: %v", err)
	}
	if _, err := c.cert.Verify(x509.VerifyOptions{Roots: poolOf(f.p.ca.cert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("the connector certificate verifies as a server certificate")
	}
	if got := time.Until(c.cert.NotAfter); got < DefaultCertValidity-time.Hour || got > DefaultCertValidity+time.Hour {
		t.Errorf("validity = %v; want about %v", got, DefaultCertValidity)
	}
	rec, _ := f.p.Get(context.Background(), "edge-01")
	if rec.Serial != formatSerial(c.cert.SerialNumber) || rec.Fingerprint != fingerprint(c.cert.Raw) || len(rec.Serial) != 32 {
		t.Errorf("record %s/%s does not describe the certificate", rec.Serial, rec.Fingerprint)
	}
}

func poolOf(c *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}

func TestCertificateConnectorRefusesOtherPurposes(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	build := func(edit func(*x509.Certificate)) *x509.Certificate {
		tmpl := &x509.Certificate{SerialNumber: newSerial(), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{connectorURI("c1")}}
		edit(tmpl)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c
	}
	mustURL := func(s string) *url.URL { u, _ := url.Parse(s); return u }
	cases := []struct {
		name string
		edit func(*x509.Certificate)
		ok   bool
	}{
		{"connector marks", func(*x509.Certificate) {}, true},
		{"server auth too", func(c *x509.Certificate) {
			c.ExtKeyUsage = append(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		}, false},
		{"any usage", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} }, false},
		{"no extended usage", func(c *x509.Certificate) { c.ExtKeyUsage = nil }, false},
		{"a CA", func(c *x509.Certificate) { c.IsCA, c.BasicConstraintsValid = true, true }, false},
		{"a DNS name too", func(c *x509.Certificate) { c.DNSNames = []string{"c1.example"} }, false},
		{"an IP too", func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)} }, false},
		{"two connector URIs", func(c *x509.Certificate) { c.URIs = append(c.URIs, connectorURI("c2")) }, false},
		{"no URI", func(c *x509.Certificate) { c.URIs = nil }, false},
		{"other URN", func(c *x509.Certificate) { c.URIs = []*url.URL{mustURL("urn:example:connector:c1")} }, false},
		{"upper-case prefix", func(c *x509.Certificate) { c.URIs = []*url.URL{mustURL("urn:GATEHOUSE:connector:c1")} }, false},
		{"invalid name", func(c *x509.Certificate) { c.URIs = []*url.URL{mustURL("urn:gatehouse:connector:a/b")} }, false},
		{"query", func(c *x509.Certificate) { c.URIs = []*url.URL{mustURL("urn:gatehouse:connector:c1?x")} }, false},
	}
	for _, tc := range cases {
		name, err := CertificateConnector(build(tc.edit))
		if (err == nil) != tc.ok || (tc.ok && name != "c1") {
			t.Errorf("%s: CertificateConnector = %q, %v; want ok=%v", tc.name, name, err, tc.ok)
		}
	}
}

func TestCSRIssuingTakesOnlyTheKey(t *testing.T) {
	f := newFixture(t, engine.Config{})
	f.user("alice")
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	csr := csrPEM(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "admin"},
		DNSNames: []string{"evil.example"}, URIs: []*url.URL{connectorURI("other")}})
	out, err := f.p.Create(context.Background(), CreateRequest{Name: "c1", Username: "alice", CSRPEM: csr})
	if err != nil {
		t.Fatal(err)
	}
	if out.PrivateKeyPEM != "" {
		t.Error("a private key was returned for a CSR")
	}
	c := clientFromPEM(t, out.CertificatePEM, pemKey(t, key))
	if name, err := CertificateConnector(c.cert); err != nil || name != "c1" || c.cert.Subject.CommonName != "c1" {
		t.Errorf("CSR-issued certificate names %q (CN %q), %v; want only c1", name, c.cert.Subject.CommonName, err)
	}
	if f.mustToken(c).AccessToken == "" {
		t.Error("no token for the CSR-issued connector")
	}

	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	bad := []struct{ name, csr string }{
		{"garbage", "not a csr"},
		{"certificate instead", out.CertificatePEM},
		{"weak RSA", csrPEM(t, weak, &x509.CertificateRequest{})},
		{"two blocks", csr + csr},
		{"broken signature", tamper(csr)},
	}
	for _, b := range bad {
		_, err := f.p.Create(context.Background(), CreateRequest{Name: "c-" + strings.ReplaceAll(b.name, " ", "-"), Username: "alice", CSRPEM: b.csr})
		if failure.Status(err) != 400 {
			t.Errorf("%s: Create = %v; want a 400", b.name, err)
		}
	}
}

func tamper(csrPEM string) string {
	block, _ := pemDecode(csrPEM)
	block.Bytes[len(block.Bytes)-5] ^= 0xff
	return pemEncode(block)
}

func TestCreateValidation(t *testing.T) {
	f := newFixture(t, engine.Config{})
	f.user("alice")
	ctx := context.Background()
	cases := []struct {
		in     CreateRequest
		status int
	}{
		{CreateRequest{Name: "", Username: "alice"}, 400},
		{CreateRequest{Name: "a/b", Username: "alice"}, 400},
		{CreateRequest{Name: "c1", Username: "nobody"}, 400},
	}
	for _, tc := range cases {
		if _, err := f.p.Create(ctx, tc.in); failure.Status(err) != tc.status {
			t.Errorf("Create(%+v) = %v; want %d", tc.in, err, tc.status)
		}
	}
	f.connector("c1", "alice")
	if _, err := f.p.Create(ctx, CreateRequest{Name: "c1", Username: "alice"}); failure.Status(err) != 409 {
		t.Errorf("duplicate Create = %v; want 409", err)
	}
	if list, _ := f.p.List(ctx); len(list) != 1 {
		t.Errorf("List = %d connectors; want 1", len(list))
	}
}

// TestPackageWithoutServersNamesAnUnknownConnector: with no
// connector_servers, a package of a connector that does not exist is 404,
// of one that does 409 (the configuration lacks the address).
func TestPackageWithoutServersNamesAnUnknownConnector(t *testing.T) {
	f := newFixture(t, engine.Config{})
	f.user("alice")
	f.connector("c1", "alice")
	f.p.servers = func() []string { return nil }
	if _, _, err := f.p.Package(context.Background(), "nope", "pässwörd-123", ""); failure.Status(err) != 404 {
		t.Fatalf("an unknown connector: %v", err)
	}
	if _, _, err := f.p.Package(context.Background(), "c1", "pässwörd-123", ""); failure.Status(err) != 409 || !strings.Contains(err.Error(), "connector_servers") {
		t.Fatalf("c1: %v", err)
	}
}

func TestPackage(t *testing.T) {
	f := newFixture(t, engine.Config{})
	f.user("alice")
	old := f.connector("c1", "alice")
	if _, _, err := f.p.Package(context.Background(), "c1", "", ""); failure.Status(err) != 400 {
		t.Errorf("Package without password = %v; want 400", err)
	}
	// The file can be guessed at offline: 11 characters are too few, 12
	// (counted as characters, not bytes) enough.
	if _, _, err := f.p.Package(context.Background(), "c1", "pässwörd-12", ""); failure.Status(err) != 400 || !strings.Contains(err.Error(), "at least 12 characters") {
		t.Errorf("Package with an 11-character password = %v; want 400 saying it needs at least 12 characters", err)
	}
	// Twelve characters of too few kinds are among the first guesses.
	for _, weak := range []string{"            ", "aaaaaaaaaaaa", "abababababab", "1234123412341234"} {
		if _, _, err := f.p.Package(context.Background(), "c1", weak, ""); failure.Status(err) != 400 || !strings.Contains(err.Error(), "different characters") {
			t.Errorf("Package with password %q = %v; want 400 saying it needs more different characters", weak, err)
		}
	}
	// A number alone, or a common word with digits and signs around it.
	for _, common := range []string{"123456789012", "password1234", "Password!2024", "qwerty123456", "  LetMeIn 2024  ",
		"123456789012!", "1234 5678 9012", "123-456-789-012", "ｐａｓｓｗｏｒｄ１２３４", "Paßwort12345"} {
		if _, _, err := f.p.Package(context.Background(), "c1", common, ""); failure.Status(err) != 400 || !strings.Contains(err.Error(), "first guesses") {
			t.Errorf("Package with password %q = %v; want 400 saying it is among the first guesses", common, err)
		}
	}
	// Not the passphrases and generated passwords that only look alike:
	// decomposed accents, a long random number, words that merely contain
	// a common one.
	for _, good := range []string{"pa\u0308sswo\u0308rd-123", "Te\u0301st 4821 9034", "83920174659203847561", "package password 1", "my secret garden 7"} {
		if err := validPassword(good); err != nil {
			t.Errorf("password %q refused: %v", good, err)
		}
	}
	if _, _, err := f.p.Package(context.Background(), "nope", "pässwörd-123", ""); failure.Status(err) != 404 {
		t.Errorf("Package of an unknown connector = %v; want 404", err)
	}
	if a := f.certificateGrant(old); a.status != 200 {
		t.Fatal("a refused package request changed the connector")
	}
	zipped, rec, err := f.p.Package(context.Background(), "c1", "pässwörd-123", "")
	if err != nil {
		t.Fatal(err)
	}
	files := unzipPackage(t, zipped)
	if !bytes.Contains(files[PackagePFX], oidPBES2) || bytes.Contains(files[PackagePFX], oidPBEWithSHA3DES) {
		t.Error("certificates.pfx is not encrypted with PBES2 alone")
	}
	key, cert, chain, err := pkcs12.DecodeChain(files[PackagePFX], "pässwörd-123")
	if err != nil {
		t.Fatalf("certificates.pfx does not open with the password: %v", err)
	}
	if _, _, _, err := pkcs12.DecodeChain(files[PackagePFX], "wrong"); err == nil {
		t.Error("certificates.pfx opens with a wrong password")
	}
	if len(chain) != 1 || !chain[0].Equal(f.p.ca.cert) || fingerprint(cert.Raw) != rec.Fingerprint {
		t.Error("the package does not hold the current certificate and the CA")
	}
	var meta Metadata
	if err := json.Unmarshal(files[PackageMetadata], &meta); err != nil {
		t.Fatal(err)
	}
	if meta.Connector != "c1" || meta.TokenEndpoint != "https://gw.example.com:8443/gatehouse/v1/token" || len(meta.Servers) != 1 {
		t.Errorf("metadata.json = %+v", meta)
	}
	packaged := client{cert: cert, key: key.(*ecdsa.PrivateKey)}
	if a := f.certificateGrant(packaged); a.status != 200 {
		t.Errorf("the packaged certificate is refused: %+v", a)
	}
	if a := f.certificateGrant(old); a.status != 401 {
		t.Errorf("the previous certificate still works after a package: %+v", a)
	}
}

// DER encodings of the algorithm identifiers that tell the package
// formats apart: PBES2 (RFC 8018), PKCS#12's pbeWithSHAAnd3-KeyTripleDES-CBC
// and SHA-1 (the legacy MAC).
var (
	oidPBES2          = []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d}
	oidPBEWithSHA3DES = []byte{0x06, 0x0a, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x03}
	oidSHA1           = []byte{0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a}
)

// unzipPackage reads a package's files, checking that each is its
// owner's alone once unzipped.
func unzipPackage(t *testing.T, zipped []byte) map[string][]byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(zipped), int64(len(zipped)))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, zf := range zr.File {
		if mode := zf.Mode(); mode != 0o600 {
			t.Errorf("%s unzips with mode %v; want -rw-------", zf.Name, mode)
		}
		rc, _ := zf.Open()
		files[zf.Name], _ = io.ReadAll(rc)
		rc.Close()
	}
	return files
}

// TestPackageLegacyFormat: "format":"legacy" encrypts certificates.pfx
// with 3DES and a SHA-1 MAC (no PBES2, which Apple's Security framework
// cannot read), and the file holds the new certificate, its key and the
// CA as the default format does; a format of another name is refused.
func TestPackageLegacyFormat(t *testing.T) {
	f := newFixture(t, engine.Config{})
	f.user("alice")
	f.connector("c1", "alice")
	if _, _, err := f.p.Package(context.Background(), "c1", "pässwörd-123", "des"); failure.Status(err) != 400 || !strings.Contains(err.Error(), `"legacy"`) {
		t.Errorf("an unknown format: %v; want 400 naming the formats", err)
	}
	zipped, rec, err := f.p.Package(context.Background(), "c1", "pässwörd-123", FormatLegacy)
	if err != nil {
		t.Fatal(err)
	}
	pfx := unzipPackage(t, zipped)[PackagePFX]
	if bytes.Contains(pfx, oidPBES2) || !bytes.Contains(pfx, oidPBEWithSHA3DES) || !bytes.Contains(pfx, oidSHA1) {
		t.Error("the legacy certificates.pfx is not 3DES with a SHA-1 MAC")
	}
	key, cert, chain, err := pkcs12.DecodeChain(pfx, "pässwörd-123")
	if err != nil {
		t.Fatalf("the legacy certificates.pfx does not open with the password: %v", err)
	}
	if len(chain) != 1 || !chain[0].Equal(f.p.ca.cert) || fingerprint(cert.Raw) != rec.Fingerprint {
		t.Error("the legacy package does not hold the current certificate and the CA")
	}
	if a := f.certificateGrant(client{cert: cert, key: key.(*ecdsa.PrivateKey)}); a.status != 200 {
		t.Errorf("the legacy package's certificate is refused: %+v", a)
	}
}

// TestIssueChecksTheCAsExpiryNotTheValidity: a short validity is issued
// as asked (it used to be refused as "the connector CA expires"), and a
// CA that expires within the hour refuses, naming its expiry.
func TestIssueChecksTheCAsExpiryNotTheValidity(t *testing.T) {
	f := newFixture(t, engine.Config{})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	cert, err := f.p.ca.issue(&key.PublicKey, "short", 30*time.Minute, now)
	if err != nil || !cert.NotAfter.Equal(now.Add(30*time.Minute).Truncate(time.Second)) {
		t.Fatalf("a 30-minute certificate: %v, %v", cert, err)
	}
	late := f.p.ca.cert.NotAfter.Add(-30 * time.Minute)
	if _, err := f.p.ca.issue(&key.PublicKey, "late", DefaultCertValidity, late); err == nil || !strings.Contains(err.Error(), "the connector CA expires") {
		t.Fatalf("a certificate from a CA expiring within the hour: %v", err)
	}
}

// TestCSRErrorsAreClear: a damaged CSR or one not signed by its key is
// refused with a message an operator can act on, not the parser's own
// ("asn1: structure error: …").
func TestCSRErrorsAreClear(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := csrPEM(t, key, &x509.CertificateRequest{})
	block, _ := pem.Decode([]byte(good))
	forged := bytes.Clone(block.Bytes)
	forged[len(forged)-1] ^= 1 // the signature's last byte
	for name, c := range map[string]struct{ pem, says string }{
		"damaged":    {"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n", "holds no PKCS #10 request"},
		"cut short":  {string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: block.Bytes[:len(block.Bytes)/2]})), "holds no PKCS #10 request"},
		"not signed": {string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: forged})), "not signed by the key it carries"},
	} {
		_, err := PublicKeyFromCSR(c.pem)
		msg := failure.Message(err)
		if !errors.Is(err, failure.ErrInvalid) || !strings.Contains(msg, c.says) || strings.Contains(msg, "asn1") || strings.Contains(msg, "x509:") {
			t.Errorf("%s CSR: %v; want a 400 saying %q", name, err, c.says)
		}
	}
	if _, err := PublicKeyFromCSR(good); err != nil {
		t.Fatalf("a good CSR: %v", err)
	}
}

// TestOpenForStoreNamesAnotherCA: a connector-ca directory copied from
// another instance (its key sealed with that instance's keystore) beside
// the store and the keystore it belongs with is refused as another CA, by
// the store's record, before its key is opened. It was refused as a key
// that "does not decrypt with this keystore (was the keystore replaced?)",
// which sent an operator restoring a backup after the right keystore. A
// missing directory beside a store that names a CA is refused without
// making a new CA there; the store's own CA opens.
func TestOpenForStoreNamesAnotherCA(t *testing.T) {
	f := newFixture(t, engine.Config{})
	ctx := context.Background()
	otherDir := t.TempDir()
	other, _ := keystore.Open(filepath.Join(otherDir, "keystore.key"), true)
	if _, err := OpenCA(otherDir, other); err != nil {
		t.Fatal(err)
	}
	_, err := OpenForStore(ctx, f.engine.Store, otherDir, f.ks)
	if err == nil || !strings.Contains(err.Error(), "the store belongs to connector CA") || strings.Contains(err.Error(), "keystore") && strings.Contains(err.Error(), "replaced") {
		t.Fatalf("another instance's connector-ca = %v; want refused as another connector CA", err)
	}
	missing := t.TempDir()
	_, err = OpenForStore(ctx, f.engine.Store, missing, f.ks)
	if err == nil || !strings.Contains(err.Error(), "restore") {
		t.Fatalf("no connector-ca beside a store that names one = %v; want refused, restore it", err)
	}
	if _, statErr := os.Stat(filepath.Join(missing, CADir)); !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("a new CA was made beside a store that names another: %v", statErr)
	}
	own, err := OpenForStore(ctx, f.engine.Store, f.caDir, f.ks)
	if err != nil || !own.cert.Equal(f.p.ca.cert) {
		t.Fatalf("the store's own CA = %v; want it opened", err)
	}
	fresh := enginetest.New(t, engine.Config{}, nil)
	if _, err := OpenForStore(ctx, fresh.Store, t.TempDir(), fresh.Keystore); err != nil {
		t.Fatalf("a store that names no CA yet = %v; want a new CA", err)
	}
}

// TestFreshCertificateWorksWhereTheClockLags: a certificate just issued
// is valid, and gets tokens, on an instance of the cluster (or for a
// client) whose clock is half an hour behind the issuer's. It was valid
// from 5 minutes before its issue, and such an instance refused it in the
// TLS handshake and at the token endpoint until its clock got there.
func TestFreshCertificateWorksWhereTheClockLags(t *testing.T) {
	f := newFixture(t, engine.Config{})
	f.user("alice")
	c := f.connector("edge-01", "alice")
	f.now = f.now.Add(-30 * time.Minute)
	if _, err := c.cert.Verify(x509.VerifyOptions{Roots: poolOf(f.p.ca.cert), CurrentTime: f.now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("30 minutes before its issue: %v", err)
	}
	if a := f.certificateGrant(c); a.status != 200 {
		t.Errorf("the token endpoint 30 minutes before the issue: %d %s", a.status, a.Description)
	}
	if !c.cert.NotBefore.After(f.p.ca.cert.NotBefore.Add(-time.Second)) {
		t.Errorf("the certificate is valid from %v, before its CA (%v)", c.cert.NotBefore, f.p.ca.cert.NotBefore)
	}
}
