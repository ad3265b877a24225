package integration

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// TestDeletingAUserRemovesWhatWasBoundToIt: DELETE /gatehouse/users/{u}
// deletes the user's application keys (so they leave the key list and
// their names can be used again), revokes the user's connectors with
// their tokens, and audits each; another user's keys stay.
func TestDeletingAUserRemovesWhatWasBoundToIt(t *testing.T) {
	parallel(t)
	inst := startConnectorSite(t, harness.Options{})
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/*"]}]}`)
	for _, u := range []string{"alice", "bob"} {
		inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": u, "roles": []string{"reader"}})
		inst.MustAdmin(t, 201, "POST", "/gatehouse/appkeys", map[string]any{"name": u + "-ci", "username": u})
	}
	c := newConnector(t, inst, "alice-app", "alice")
	if a := tokenRequest(t, inst, c, "", "-d", "grant_type=certificate"); a.AccessToken == "" {
		t.Fatalf("token: %+v", a)
	}

	inst.MustAdmin(t, 204, "DELETE", "/gatehouse/users/alice", nil)

	var keys []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(inst.MustAdmin(t, 200, "GET", "/gatehouse/appkeys", nil), &keys); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].Name != "bob-ci" {
		t.Errorf("keys after deleting alice: %+v, want only bob-ci", keys)
	}
	var conn struct {
		Revoked bool `json:"revoked"`
	}
	if err := json.Unmarshal(inst.MustAdmin(t, 200, "GET", "/gatehouse/connectors/alice-app", nil), &conn); err != nil || !conn.Revoked {
		t.Errorf("alice's connector after deleting her: revoked %v (%v)", conn.Revoked, err)
	}
	if tokens := strings.TrimSpace(string(inst.MustAdmin(t, 200, "GET", "/gatehouse/tokens?connector=alice-app", nil))); tokens != "[]" {
		t.Errorf("alice's tokens after deleting her: %s", tokens)
	}
	audit := string(inst.MustAdmin(t, 200, "GET", "/gatehouse/audit?username=alice", nil))
	for _, want := range []string{"key deleted with its user", "connector revoked with its user; 1 token pair(s) revoked"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit lacks %q: %s", want, audit)
		}
	}
	// A new alice can take the old key name.
	inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": "alice", "roles": []string{"reader"}})
	inst.MustAdmin(t, 201, "POST", "/gatehouse/appkeys", map[string]any{"name": "alice-ci", "username": "alice"})
}
