package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/plugin/connector"
	"github.com/gatehouse-auth/gatehouse/session"
)

// TestConnectorsPageOffersWhatCanBeDone: without a server address for a
// package's metadata.json the connectors page offers no "Download
// package" (which could only fail) and says what to set; with one it
// does. Either way a connector can be given a new certificate: the
// action issues one, shows it once, and the previous one is revoked.
func TestConnectorsPageOffersWhatCanBeDone(t *testing.T) {
	for _, servers := range [][]string{nil, {"https://gw.example.com:8443"}} {
		e, b := newBrowser(t)
		ca, err := connector.OpenCA(t.TempDir(), e.Keystore)
		if err != nil {
			t.Fatal(err)
		}
		p, err := connector.New(context.Background(), e, connector.Options{CA: ca, Servers: func() []string { return servers }})
		if err != nil {
			t.Fatal(err)
		}
		e.Register(p)
		b.c.admin = adminapi.NewHandler(e, adminapi.NewCore(e), p)
		if _, err := p.Create(context.Background(), connector.CreateRequest{Name: "c1", Username: "bob"}); err != nil {
			t.Fatal(err)
		}
		before, err := p.Get(context.Background(), "c1")
		if err != nil {
			t.Fatal(err)
		}

		g := httptest.NewRequest(http.MethodGet, "https://gh.test"+Prefix+"connectors", nil)
		g.AddCookie(&http.Cookie{Name: session.CookieName, Value: b.v.token})
		w := httptest.NewRecorder()
		b.c.ServeHTTP(w, g)
		page := w.Body.String()
		offersPackage := strings.Contains(page, `value="package"`)
		saysWhy := strings.Contains(page, `id="no-packages"`)
		if w.Code != http.StatusOK || offersPackage != (servers != nil) || saysWhy == (servers != nil) || !strings.Contains(page, `value="reissue"`) {
			t.Fatalf("servers %v: %d, package offered %t, why said %t\n%s", servers, w.Code, offersPackage, saysWhy, page)
		}

		w = b.post(Prefix+"connectors", url.Values{"action": {"reissue"}, "name": {"c1"}, "confirm": {"root password"}, "nonce": {nonce()}})
		after, err := p.Get(context.Background(), "c1")
		if err != nil {
			t.Fatal(err)
		}
		if w.Code != http.StatusOK || after.Serial == before.Serial || !strings.Contains(w.Body.String(), "certificate "+after.Serial+" issued") ||
			!strings.Contains(w.Body.String(), "PRIVATE KEY") {
			t.Fatalf("reissue: %d, serial %s → %s\n%s", w.Code, before.Serial, after.Serial, w.Body)
		}
	}
}
