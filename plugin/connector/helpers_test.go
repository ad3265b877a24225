package connector

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// fixture is a connector plugin on a real (embedded) store.
type fixture struct {
	t      testing.TB
	engine *engine.Engine
	p      *Plugin
	ks     *keystore.Keystore
	now    time.Time
	caDir  string
}

func newFixture(t testing.TB, cfg engine.Config) *fixture {
	t.Helper()
	return newFixtureWith(t, cfg, nil)
}

// newFixtureWith is newFixture over a store wrapped by wrap (nil: none).
func newFixtureWith(t testing.TB, cfg engine.Config, wrap func(storage.Store) storage.Store) *fixture {
	t.Helper()
	ctx := context.Background()
	e := enginetest.New(t, cfg, wrap)
	caDir := t.TempDir()
	ca, err := OpenCA(caDir, e.Keystore)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(ctx, e, Options{CA: ca, Servers: func() []string { return []string{"https://gw.example.com:8443"} }})
	if err != nil {
		t.Fatal(err)
	}
	e.Register(p)
	f := &fixture{t: t, engine: e, p: p, ks: e.Keystore, now: time.Now(), caDir: caDir}
	p.now = func() time.Time { return f.now }
	if _, err := e.Accounts.PutRole(ctx, account.Role{Name: "api", Rules: []account.Rule{{Methods: []string{"GET"}, Paths: []string{"/*"}}}}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) user(name string) *account.User {
	f.t.Helper()
	u, err := f.engine.Accounts.CreateUser(context.Background(), account.NewUser{Username: name, Roles: []string{"api"}})
	if err != nil {
		f.t.Fatal(err)
	}
	return u
}

// client is a connector's certificate and key as a TLS client holds them.
type client struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func (f *fixture) connector(name, username string) client {
	f.t.Helper()
	out, err := f.p.Create(context.Background(), CreateRequest{Name: name, Username: username})
	if err != nil {
		f.t.Fatal(err)
	}
	return clientFromPEM(f.t, out.CertificatePEM, out.PrivateKeyPEM)
}

func clientFromPEM(t testing.TB, certPEM, keyPEM string) client {
	t.Helper()
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	return client{cert: pair.Leaf, key: pair.PrivateKey.(crypto.Signer)}
}

// request builds a request as it arrives over TLS with c's certificate
// (no certificate when c.cert is nil).
func request(method, target string, c client, body string) *http.Request {
	var r *http.Request
	if body != "" {
		r = httptest.NewRequest(method, target, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	r.TLS = &tls.ConnectionState{HandshakeComplete: true}
	if c.cert != nil {
		r.TLS.PeerCertificates = []*x509.Certificate{c.cert}
	}
	return r
}

type tokenAnswer struct {
	status int
	tokenResponse
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func (f *fixture) token(c client, form url.Values) tokenAnswer {
	f.t.Helper()
	w := httptest.NewRecorder()
	f.p.serveToken(w, request(http.MethodPost, TokenPath, c, form.Encode()))
	var a tokenAnswer
	a.status = w.Code
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
		f.t.Fatalf("token endpoint answered %d with non-JSON %q", w.Code, w.Body.String())
	}
	return a
}

func (f *fixture) certificateGrant(c client) tokenAnswer {
	f.t.Helper()
	return f.token(c, url.Values{"grant_type": {"certificate"}})
}

func (f *fixture) mustToken(c client) tokenAnswer {
	f.t.Helper()
	a := f.certificateGrant(c)
	if a.status != http.StatusOK {
		f.t.Fatalf("certificate grant: %d %s: %s", a.status, a.Error, a.Description)
	}
	return a
}

func (f *fixture) refreshGrant(c client, refresh string) tokenAnswer {
	f.t.Helper()
	return f.token(c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
}

// use presents an access token on a connection with c's certificate and
// returns the refusal reason, or "" when the credential was accepted.
func (f *fixture) use(c client, access string) string {
	f.t.Helper()
	r := request(http.MethodGet, "/api/thing", c, "")
	r.Header.Set("Authorization", "Bearer "+access)
	id, err := f.p.Authenticate(r)
	if err != nil {
		return err.Error()
	}
	if err := f.engine.Accounts.Authorize(r.Context(), &id, r.Method, "/api/thing"); err != nil {
		return err.Error()
	}
	return ""
}

// foreignClient makes a CA that is not Gatehouse's and a client certificate
// from it carrying the connector marks of name.
func foreignClient(t *testing.T, name string) client {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: newSerial(), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: newSerial(), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{connectorURI(name)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return client{cert: cert, key: key}
}

func csrPEM(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func pemKey(t testing.TB, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func pemDecode(s string) (*pem.Block, []byte) { return pem.Decode([]byte(s)) }

func pemEncode(b *pem.Block) string { return string(pem.EncodeToMemory(b)) }

// aliceAndBob is a fixture with the users alice and bob and a connector
// of each, c1 and c2.
func aliceAndBob(t *testing.T) (f *fixture, c1, c2 client) {
	t.Helper()
	f = newFixture(t, engine.Config{})
	f.user("alice")
	f.user("bob")
	return f, f.connector("c1", "alice"), f.connector("c2", "bob")
}
