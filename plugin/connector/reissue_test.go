package connector

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// TestTokensOfTheOldCertificateFailWithTheNewOne: a re-issue whose
// revocation of the old token pairs failed (the store refused the
// deletes; the administrator is told) leaves them in the store, yet they
// are bound to the superseded certificate: the connector presenting its
// new certificate can neither use the old access token (401) nor
// exchange the old refresh token (invalid_grant); its new certificate
// gets a pair of its own.
func TestTokensOfTheOldCertificateFailWithTheNewOne(t *testing.T) {
	var flaky *enginetest.FlakyStore
	f := newFixtureWith(t, engine.Config{}, func(s storage.Store) storage.Store {
		flaky = &enginetest.FlakyStore{Store: s}
		return flaky
	})
	f.user("alice")
	old := f.connector("c1", "alice")
	a := f.mustToken(old)

	key, _, err := newKey()
	if err != nil {
		t.Fatal(err)
	}
	var cert *x509.Certificate
	flaky.BatchesFail.Store(true)
	_, err = f.p.Reissue(context.Background(), "c1", &key.PublicKey, func(_ *Connector, c *x509.Certificate) error {
		cert = c
		return nil
	})
	flaky.BatchesFail.Store(false)
	if err == nil || !strings.Contains(err.Error(), "revoking the old tokens failed") || cert == nil {
		t.Fatalf("re-issue with the revocation failing: %v (certificate %v); want the new certificate and the failure told", err, cert != nil)
	}
	renewed := client{cert: cert, key: key}
	if reason := f.use(renewed, a.AccessToken); reason == "" {
		t.Error("the old access token works with the new certificate")
	}
	if r := f.refreshGrant(renewed, a.RefreshToken); r.status == 200 || r.Error != "invalid_grant" {
		t.Errorf("the old refresh token with the new certificate: %+v; want invalid_grant", r)
	}
	b := f.mustToken(renewed)
	if reason := f.use(renewed, b.AccessToken); reason != "" {
		t.Errorf("the new certificate's own token: %s", reason)
	}
}
