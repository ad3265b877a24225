package connector

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/failure"
)

// Package file names inside the zip.
const (
	PackagePFX      = "certificates.pfx"
	PackageMetadata = "metadata.json"
	// minPasswordLen is the fewest characters a package password may
	// have: certificates.pfx can be guessed at offline, without limit, by
	// whoever gets a copy.
	minPasswordLen = 12
	// minPasswordDistinct is the fewest different characters it may hold:
	// twelve spaces, or one letter twelve times, are the first guesses.
	minPasswordDistinct = 5
	maxPasswordLen      = 1024
	// pfxIterations is the PBKDF2 work factor of the PKCS#12 file: far
	// above go-pkcs12's 2048, with room under what .NET and Windows
	// allow: at most 600,000 iterations for a whole file, counted over its
	// key derivations (the certificate bag, the key bag and the MAC here,
	// 300,000 in all), so OWASP's 600,000 per derivation would make the
	// file unreadable to them. The password rules (minPasswordLen, common
	// words refused) carry the rest.
	pfxIterations = 100_000
)

// Package formats: how certificates.pfx is encrypted, the "format" of a
// package request.
const (
	// FormatModern (the default) is PBES2 (PBKDF2-HMAC-SHA-256,
	// AES-256-CBC) with an HMAC-SHA-256 MAC, pfxIterations each: readable
	// by OpenSSL 1.1.1+, Java 8u301+, 11.0.12+ and 12+ and Windows Server
	// 2019+, but not by Apple's Security framework (macOS Keychain, iOS)
	// nor by older Java, Windows and Android.
	FormatModern = "modern"
	// FormatLegacy is pbeWithSHAAnd3-KeyTripleDES-CBC for the key and the
	// certificates with an HMAC-SHA-1 MAC, 2048 iterations of the PKCS#12
	// key derivation each (what `openssl pkcs12 -export -legacy -descert`
	// writes), for the clients FormatModern leaves out. A password guess
	// costs far less to try against it: docs/clients.md says how much.
	FormatLegacy = "legacy"
)

// pfxEncoders encode certificates.pfx in each package format.
var pfxEncoders = map[string]*pkcs12.Encoder{
	FormatModern: pkcs12.Modern2023.WithIterations(pfxIterations),
	// 2048 iterations, as OpenSSL's -legacy: the parameters clients that
	// need this format are known to import.
	FormatLegacy: pkcs12.LegacyDES.WithIterations(2048),
}

// Metadata is the metadata.json of a connector package: what a connector
// needs to find Gatehouse.
type Metadata struct {
	// Connector is the connector name.
	Connector string `json:"connector"`
	// Username is the account the connector acts as.
	Username string `json:"username"`
	// Servers are the base URLs of the Gatehouse sites the connector may use.
	Servers []string `json:"servers"`
	// TokenEndpoint is the token endpoint on the first server.
	TokenEndpoint string `json:"token_endpoint"`
	// GrantTypes are the grant types the token endpoint takes.
	GrantTypes []string `json:"grant_types"`
	// CertificateSerial is the packaged certificate's serial number.
	CertificateSerial string `json:"certificate_serial"`
	// CertificateFingerprint is its SHA-256 (hex).
	CertificateFingerprint string `json:"certificate_fingerprint_sha256"`
	// CertificateNotAfter is when it expires.
	CertificateNotAfter time.Time `json:"certificate_not_after"`
	// CAFingerprint is the connector CA certificate's SHA-256 (hex).
	CAFingerprint string `json:"ca_fingerprint_sha256"`
}

// validPassword checks a package password: required, at least 12
// characters of which 5 different, at most 1024 bytes, text that PKCS#12
// (BMPString) can carry.
func validPassword(pw string) error {
	if pw == "" {
		return failure.Invalid("password is required: it encrypts the private key in certificates.pfx")
	}
	if len(pw) > maxPasswordLen || !utf8.ValidString(pw) {
		return failure.Invalid("password must be valid UTF-8 of at most %d bytes", maxPasswordLen)
	}
	if utf8.RuneCountInString(pw) < minPasswordLen {
		return failure.Invalid("password must be at least %d characters long: it encrypts the private key in certificates.pfx, "+
			"which anyone holding a copy can try passwords against offline", minPasswordLen)
	}
	distinct := make(map[rune]struct{}, minPasswordDistinct)
	for _, r := range pw {
		if r > 0xFFFF || r == 0 {
			return failure.Invalid("password may not hold NUL or characters outside the Basic Multilingual Plane")
		}
		distinct[r] = struct{}{}
	}
	if len(distinct) < minPasswordDistinct {
		return failure.Invalid("password must hold at least %d different characters: one character repeated is among the first guesses", minPasswordDistinct)
	}
	if account.Guessable(pw) {
		return failure.Invalid("password is among the first guesses (a number alone, or a common word with digits and signs around it): " +
			"certificates.pfx can be tried offline; use a passphrase of a few unrelated words, or a generated password")
	}
	return nil
}

// CanPackage reports whether Package can write a package: whether a
// server address is known for its metadata.json (connector_servers, or an
// HTTPS site that asks for the connector certificate).
func (p *Plugin) CanPackage() bool { return len(p.servers()) > 0 }

// Package issues the connector a new key pair and certificate and returns
// the communication data package: a zip with certificates.pfx (the
// certificate, its key and the CA, encrypted with password in format,
// FormatModern when empty) and metadata.json. The previous certificate
// and its tokens stop working.
func (p *Plugin) Package(ctx context.Context, name, password, format string) ([]byte, *Connector, error) {
	if format == "" {
		format = FormatModern
	}
	encoder, ok := pfxEncoders[format]
	if !ok {
		return nil, nil, failure.Invalid("format must be %q (the default) or %q (SHA-1 and 3DES, for clients that cannot read the default: "+
			"macOS Keychain, iOS, Java before 8u301)", FormatModern, FormatLegacy)
	}
	if err := validPassword(password); err != nil {
		return nil, nil, err
	}
	servers := p.servers()
	if len(servers) == 0 {
		// A connector that does not exist is that first (404), not what
		// the configuration lacks.
		if _, err := p.Get(ctx, name); err != nil {
			return nil, nil, err
		}
		return nil, nil, failure.Conflict("no server address is known for metadata.json: set connector_servers in the gatehouse global option")
	}
	key, _, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	var zipped []byte
	rec, err := p.Reissue(ctx, name, &key.PublicKey, func(rec *Connector, cert *x509.Certificate) error {
		pfx, err := encoder.Encode(key, cert, []*x509.Certificate{p.ca.cert}, password)
		if err != nil {
			return err
		}
		meta := Metadata{Connector: rec.Name, Username: rec.Username, Servers: servers,
			TokenEndpoint:     strings.TrimSuffix(servers[0], "/") + TokenPath,
			GrantTypes:        []string{GrantCertificate, GrantRefreshToken},
			CertificateSerial: rec.Serial, CertificateFingerprint: rec.Fingerprint,
			CertificateNotAfter: rec.NotAfter, CAFingerprint: fingerprint(p.ca.cert.Raw)}
		metaJSON, _ := json.MarshalIndent(meta, "", "  ")
		zipped, err = zipFiles(rec.UpdatedAt, zipEntry{PackagePFX, pfx}, zipEntry{PackageMetadata, append(metaJSON, '\n')})
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return zipped, rec, nil
}

type zipEntry struct {
	name string
	data []byte
}

// zipFiles writes entries into a zip archive, in order.
func zipFiles(modified time.Time, entries ...zipEntry) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: modified}
		// Unzipped, the files are their owner's alone (unzip restores a
		// Unix mode): certificates.pfx can be tried offline.
		h.SetMode(0o600)
		f, err := zw.CreateHeader(h)
		if err != nil {
			return nil, err
		}
		if _, err := f.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
