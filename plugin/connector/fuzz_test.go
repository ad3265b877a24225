package connector

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
)

func FuzzBearerToken(f *testing.F) {
	good, _ := newToken(accessTokenPrefix)
	refresh, _ := newToken(refreshTokenPrefix)
	for range 1000 {
		if tok, _ := newToken(accessTokenPrefix); !parseToken(tok, accessTokenPrefix) {
			f.Fatalf("a fresh token %q does not parse", tok)
		}
	}
	for _, s := range []string{"Bearer " + good, "bearer   " + good, "BEARER " + good, "Bearer " + refresh,
		"Bearer " + good + "=", "Bearer " + strings.ToUpper(good), "Basic " + good, "Bearer", "Bearer gct_", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		token, ok := bearerToken(header)
		if !ok {
			if token != "" {
				t.Fatalf("refused header %q yielded a token", header)
			}
			return
		}
		if len(token) != tokenLength || !strings.HasPrefix(token, accessTokenPrefix) || !parseToken(token, accessTokenPrefix) {
			t.Fatalf("bearerToken(%q) accepted %q", header, token)
		}
		if raw, err := base64.RawURLEncoding.Strict().DecodeString(token[len(accessTokenPrefix):]); err != nil || len(raw) != tokenRandomBytes {
			t.Fatalf("accepted token %q is not 32 bytes of canonical base64url", token)
		}
		if !strings.HasSuffix(header, token) {
			t.Fatalf("token %q is not the end of header %q", token, header)
		}
		if again, ok := bearerToken("Bearer " + token); !ok || again != token {
			t.Fatalf("round trip of %q failed", token)
		}
	})
}

func FuzzParseTokenParams(f *testing.F) {
	f.Add("grant_type=certificate", "", "")
	f.Add("", "application/x-www-form-urlencoded", "grant_type=refresh_token&refresh_token=gcr_x")
	f.Add("grant_type=refresh_token", "application/x-www-form-urlencoded; charset=utf-8", "refresh_token=a")
	f.Add("grant_type=certificate", "application/json", "{}")
	f.Add("grant_type=%zz", "", "")
	f.Add("grant_type=certificate", "application/x-www-form-urlencoded", "grant_type=certificate")
	f.Add("grant_type=refresh_token&refresh_token=gcr_x", "", "")
	f.Fuzz(func(t *testing.T, query, contentType, body string) {
		p, err := parseTokenParams(query, contentType, []byte(body))
		if q, _ := url.ParseQuery(query); (q.Has("access_token") || q.Has("password")) && err == nil {
			t.Fatalf("accepted a credential in the query string %q", query)
		}
		if err != nil {
			if err.status != 400 || err.code == "" || err.description == "" {
				t.Fatalf("bad refusal %+v", err)
			}
			return
		}
		switch p.grantType {
		case GrantCertificate:
			if p.refreshToken != "" {
				t.Fatalf("certificate grant carried a refresh token")
			}
		case GrantRefreshToken:
			if p.refreshToken == "" {
				t.Fatalf("refresh grant without a refresh token")
			}
		default:
			t.Fatalf("accepted grant type %q", p.grantType)
		}
	})
}

func FuzzParseConnectorURI(f *testing.F) {
	for _, s := range []string{"urn:gatehouse:connector:c1", "urn:gatehouse:connector:", "urn:gatehouse:connector:a/b",
		"URN:gatehouse:connector:c1", "urn:gatehouse:connector:c1#x", "https://gatehouse/connector/c1", "urn:gatehouse:connector:%41"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		name, ok := ParseConnectorURI(u)
		if !ok {
			return
		}
		if account.ValidateName("connector", name) != nil {
			t.Fatalf("%q yielded invalid name %q", s, name)
		}
		if again, ok := ParseConnectorURI(connectorURI(name)); !ok || again != name {
			t.Fatalf("name %q does not round-trip", name)
		}
		if u.String() != URIPrefix+name {
			t.Fatalf("%q was accepted as connector %q but is not %q", s, name, URIPrefix+name)
		}
	})
}

// FuzzCertificateConnector feeds DER certificates (seeded with a real
// connector certificate and mutations of it) to the identity parser.
func FuzzCertificateConnector(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: newSerial(), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{connectorURI("edge-01")}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	f.Add(der)
	f.Add(der[:len(der)/2])
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		name, err := CertificateConnector(cert)
		if err != nil {
			return
		}
		if account.ValidateName("connector", name) != nil || cert.IsCA || len(cert.URIs) != 1 ||
			cert.URIs[0].String() != URIPrefix+name || len(cert.ExtKeyUsage) != 1 {
			t.Fatalf("accepted a certificate without the connector marks as %q", name)
		}
	})
}

func FuzzPublicKeyFromCSR(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.Add(csrPEM(f, key, &x509.CertificateRequest{}))
	f.Add("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		pub, err := PublicKeyFromCSR(s)
		if err != nil {
			return
		}
		if checkPublicKey(pub) != nil {
			t.Fatalf("accepted an unacceptable key %T", pub)
		}
	})
}

func TestParseToken(t *testing.T) {
	tok, _ := newToken(accessTokenPrefix)
	body := tok[len(accessTokenPrefix):]
	cases := []struct {
		s  string
		ok bool
	}{
		{tok, true},
		{refreshTokenPrefix + body, false},                   // wrong kind
		{tok[:len(tok)-1], false},                            // short
		{tok + "A", false},                                   // long
		{tok[:len(tok)-1] + "B", false},                      // padding bits set: a second spelling
		{tok[:len(tok)-1] + "=", false},                      // padding character
		{accessTokenPrefix + strings.Repeat("+", 43), false}, // standard, not URL, alphabet
		{strings.ToUpper(tok[:4]) + body, false},             // prefix is case-sensitive
	}
	for _, c := range cases {
		if got := parseToken(c.s, accessTokenPrefix); got != c.ok {
			t.Errorf("parseToken(%q) = %v; want %v", c.s, got, c.ok)
		}
	}
}
