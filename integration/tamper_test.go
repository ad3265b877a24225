package integration

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// TestForgedRecordsInRedisGrantNothing: whoever can write to Gatehouse's
// Redis keys but lacks the keystore cannot make himself an administrator,
// neither by writing a user record of his own making (as a version
// without record tags accepted) nor by copying a privileged user's
// authentic record over his own. The forged account is refused, fail
// closed; the untouched accounts keep working.
func TestForgedRecordsInRedisGrantNothing(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t)
	inst := harness.Start(t, clusterSite, harness.Options{RedisURL: srv.URL()})
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/reader", `{"rules":[{"methods":["GET"],"paths":["/api/*"]}]}`)
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/ops", `{"rules":[{"methods":["GET"],"paths":["/*"]}]}`)
	for name, role := range map[string]string{"root": "ops", "mallory": "reader", "alice": "reader"} {
		inst.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": name, "roles": []string{role}, "password": "tulip harbour " + name + " 123"})
	}
	get := func(user, path string) int {
		return harness.Curl(t, "-u", user+":tulip harbour "+user+" 123", inst.HTTPSURL()+path).Status
	}
	if s := get("mallory", "/admin/x"); s != 403 {
		t.Fatalf("mallory on /admin before tampering: %d, want 403", s)
	}
	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	mallory, err := rdb.Get(ctx, "gatehouse:user/mallory").Bytes()
	if err != nil || !bytes.Contains(mallory, []byte(`"reader"`)) {
		t.Fatalf("mallory's record in Redis: %q %v", mallory, err)
	}
	root, _ := rdb.Get(ctx, "gatehouse:user/root").Bytes()
	end := bytes.LastIndexByte(mallory, '}') + 1 // the JSON, without its tag
	forgeries := map[string][]byte{
		"his own record with the ops role, untagged": bytes.Replace(mallory[:end], []byte(`"reader"`), []byte(`"ops"`), 1),
		"his own record with the ops role, old tag":  append(bytes.Replace(mallory[:end], []byte(`"reader"`), []byte(`"ops"`), 1), mallory[end:]...),
		"root's authentic record":                    root,
	}
	for what, forged := range forgeries {
		if err := rdb.Set(ctx, "gatehouse:user/mallory", forged, 0).Err(); err != nil {
			t.Fatal(err)
		}
		inst.Restart() // nothing cached: the forged record is what the store holds
		for _, path := range []string{"/admin/x", "/api/x"} {
			if s := get("mallory", path); s != 503 {
				t.Errorf("mallory on %s with %s: %d, want 503 (refused)", path, what, s)
			}
		}
		if s := harness.Curl(t, "-u", "mallory:pw-root-123", inst.HTTPSURL()+"/admin/x").Status; s != 503 {
			t.Errorf("mallory with root's password and %s: %d, want 503", what, s)
		}
		if s := get("alice", "/api/x"); s != 200 {
			t.Fatalf("alice after mallory's tampering (%s): %d, want 200", what, s)
		}
	}
	if !inst.LogContains("failed authentication") {
		t.Fatalf("the log does not say a record failed authentication:\n%s", inst.Log())
	}

	// Removing the marker does not get the forged record tagged. This
	// keystore has been used with the tagged store, so the next start goes
	// ahead and says what it found; the forged record stays refused, and
	// tag-records, even with --resume, tags nothing.
	forged := bytes.Replace(mallory[:end], []byte(`"reader"`), []byte(`"ops"`), 1)
	rdb.Set(ctx, "gatehouse:user/mallory", forged, 0)
	if n, err := rdb.Del(ctx, "gatehouse:gatehouse/tagged").Result(); err != nil || n != 1 {
		t.Fatalf("deleting the marker: %d %v", n, err)
	}
	inst.Restart()
	if !inst.LogContains("the store holds records written without the keystore") {
		t.Fatalf("the start did not tell of the forged record:\n%s", inst.Log())
	}
	if s := get("mallory", "/admin/x"); s != 503 {
		t.Fatalf("mallory with the marker removed: %d, want 503", s)
	}
	if s := get("alice", "/api/x"); s != 200 {
		t.Fatalf("alice with the marker removed: %d, want 200", s)
	}
	inst.Stop()
	out, err := harness.Command(t, harness.Binary(t), "gatehouse", "tag-records", "--resume", "--store", srv.URL(),
		"--keystore", filepath.Join(inst.DataDir(), "keystore.key"))
	if err != nil || !strings.Contains(out, "tagged 0 records") {
		t.Fatalf("tag-records --resume after the forgery: %v\n%s\nwant nothing tagged", err, out)
	}
	if raw, _ := rdb.Get(ctx, "gatehouse:user/mallory").Bytes(); !bytes.Equal(raw, forged) {
		t.Fatalf("the forged record was changed (tagged?): %q", raw)
	}
}
