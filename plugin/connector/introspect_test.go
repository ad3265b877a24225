package connector

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/gatehouse-auth/gatehouse/account"
)

// TestIntrospection: RFC 7662 for a connector's own access token, with the
// RFC 8705 confirmation; every other token is inactive; the token never
// in the query string.
func TestIntrospection(t *testing.T) {
	f, c1, c2 := aliceAndBob(t)
	a := f.mustToken(c1)
	b := f.mustToken(c2)
	introspect := func(c client, target, form string) (int, map[string]any) {
		t.Helper()
		w := httptest.NewRecorder()
		f.p.serveIntrospect(w, request(http.MethodPost, target, c, form))
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("introspection answered %d with non-JSON %q", w.Code, w.Body)
		}
		return w.Code, out
	}
	code, out := introspect(c1, IntrospectPath, url.Values{"token": {a.AccessToken}}.Encode())
	cnf, _ := out["cnf"].(map[string]any)
	if code != 200 || out["active"] != true || out["client_id"] != "c1" || out["sub"] != "alice" || out["token_type"] != "Bearer" ||
		cnf == nil || cnf["x5t#S256"] != thumbprintOf(c1.cert.Raw) || out["exp"] == nil {
		t.Fatalf("own access token: %d %v", code, out)
	}
	for name, tc := range map[string]struct {
		c     client
		token string
	}{
		"another connector's token": {c1, b.AccessToken},
		"own token, other cert":     {c2, a.AccessToken},
		"a refresh token":           {c1, a.RefreshToken},
		"a made-up token":           {c1, "gct_AAAA"},
	} {
		if code, out := introspect(tc.c, IntrospectPath, url.Values{"token": {tc.token}}.Encode()); code != 200 || len(out) != 1 || out["active"] != false {
			t.Errorf("%s: %d %v; want {\"active\":false}", name, code, out)
		}
	}
	if code, out := introspect(c1, IntrospectPath+"?token="+a.AccessToken, ""); code != 400 || out["error"] != "invalid_request" {
		t.Errorf("token in the query string: %d %v", code, out)
	}
	if code, out := introspect(client{}, IntrospectPath, url.Values{"token": {a.AccessToken}}.Encode()); code != 401 || out["error"] != "invalid_client" {
		t.Errorf("without a certificate: %d %v", code, out)
	}
	status := account.StatusBlocked
	if _, err := f.engine.Accounts.UpdateUser(t.Context(), "alice", account.UserPatch{Status: &status}); err != nil {
		t.Fatal(err)
	}
	if code, out := introspect(c1, IntrospectPath, url.Values{"token": {a.AccessToken}}.Encode()); code != 200 || out["active"] != false {
		t.Errorf("a blocked user's token: %d %v", code, out)
	}
	// The block ended the pair for good: inactive after the unblock too.
	status = account.StatusActive
	if _, err := f.engine.Accounts.UpdateUser(t.Context(), "alice", account.UserPatch{Status: &status}); err != nil {
		t.Fatal(err)
	}
	if code, out := introspect(c1, IntrospectPath, url.Values{"token": {a.AccessToken}}.Encode()); code != 200 || out["active"] != false {
		t.Errorf("a token issued before the block, after the unblock: %d %v", code, out)
	}
}
