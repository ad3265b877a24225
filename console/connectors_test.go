package console

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"html"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
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
		p := connectorPlugin(t, e, servers)
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

		w = b.post(Prefix+"connectors", url.Values{"action": {"reissue"}, "name": {"c1"}, "confirm": {"root tulip harbour"}, "nonce": {nonce()}})
		after, err := p.Get(context.Background(), "c1")
		if err != nil {
			t.Fatal(err)
		}
		if w.Code != http.StatusOK || after.Serial == before.Serial || !strings.Contains(w.Body.String(), "certificate "+after.Serial+" issued") ||
			!strings.Contains(w.Body.String(), "PRIVATE KEY") {
			t.Fatalf("reissue: %d, serial %s → %s\n%s", w.Code, before.Serial, after.Serial, w.Body)
		}
		if servers != nil {
			downloadPackage(t, b, p, after.Serial, "")
			now, err := p.Get(context.Background(), "c1")
			if err != nil {
				t.Fatal(err)
			}
			downloadPackage(t, b, p, now.Serial, connector.FormatLegacy)
		}
	}
}

// oidPBEWithSHA3DES is the DER of PKCS#12's pbeWithSHAAnd3-KeyTripleDES-CBC,
// the encryption of a legacy package alone.
var oidPBEWithSHA3DES = []byte{0x06, 0x0a, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x03}

// downloadPackage: "Download package" answers the connectors page as it
// is now — the new certificate's serial in the table, not the revoked
// one's (serial), which a download's answer left on the screen — with a
// link that saves the package, whose metadata.json names the new serial
// and whose certificates.pfx is in format (the "Legacy encryption" box
// ticked for connector.FormatLegacy).
func downloadPackage(t *testing.T, b *browser, p *connector.Plugin, serial, format string) {
	t.Helper()
	fields := url.Values{"action": {"package"}, "name": {"c1"}, "password": {"package password 1"}, "confirm": {"root tulip harbour"}, "nonce": {nonce()}}
	if format != "" {
		fields.Set("format", format)
	}
	w := b.post(Prefix+"connectors", fields)
	now, err := p.Get(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	page := w.Body.String()
	if w.Code != http.StatusOK || now.Serial == serial || !strings.Contains(page, "<td>"+now.Serial+"</td>") || strings.Contains(page, serial) {
		t.Fatalf("package: %d, serial %s → %s; want the page with the new serial alone\n%s", w.Code, serial, now.Serial, page)
	}
	href := regexp.MustCompile(`id="package-download" download="c1.zip" href="data:application/zip;base64,([^"]+)"`).FindStringSubmatch(page)
	if href == nil {
		t.Fatalf("no link saving c1.zip:\n%s", page)
	}
	zipped, err := base64.StdEncoding.DecodeString(html.UnescapeString(href[1]))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(zipped), int64(len(zipped)))
	if err != nil {
		t.Fatal(err)
	}
	f, err := zr.Open(connector.PackageMetadata)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var meta connector.Metadata
	if err := json.NewDecoder(f).Decode(&meta); err != nil || meta.CertificateSerial != now.Serial {
		t.Fatalf("the saved package's metadata: %+v, %v; want serial %s", meta, err, now.Serial)
	}
	pfx, err := fs.ReadFile(zr, connector.PackagePFX)
	if err != nil {
		t.Fatal(err)
	}
	if legacy := bytes.Contains(pfx, oidPBEWithSHA3DES); legacy != (format == connector.FormatLegacy) {
		t.Errorf("format %q: certificates.pfx encrypted with 3DES: %t", format, legacy)
	}
}
