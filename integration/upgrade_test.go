package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/integration/harness"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

// TestUpgradeToTaggedRecords: a data_dir written by a version before
// record tags (records without tags, as the account service wrote them
// then) is refused at start-up with the command that fixes it; after
// `caddy gatehouse tag-records` the same users sign in, and a user's
// sign-in keys the password hash the old version wrote.
func TestUpgradeToTaggedRecords(t *testing.T) {
	parallel(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	if _, err := keystore.Open(filepath.Join(dataDir, "keystore.key"), true); err != nil {
		t.Fatal(err)
	}
	db, err := badger.Open(filepath.Join(dataDir, "badger"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := account.NewService(cache.New(db, 16), nil) // the old version: no tags, no keyed password hashes
	ctx := context.Background()
	if _, err := old.PutRole(ctx, account.Role{Name: "reader", Rules: []account.Rule{{Methods: []string{"GET"}, Paths: []string{"/api/*"}}}}); err != nil {
		t.Fatal(err)
	}
	password := "correct horse"
	if _, err := old.CreateUser(ctx, account.NewUser{Username: "olga", Roles: []string{"reader"}, Password: &password}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	bin := harness.Binary(t)
	config := filepath.Join(dir, "refused.caddyfile")
	if err := os.WriteFile(config, []byte("{\n\tadmin off\n\tgatehouse {\n\t\tdata_dir "+dataDir+"\n\t}\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := harness.Command(t, bin, "run", "--config", config, "--adapter", "caddyfile")
	if err == nil || !strings.Contains(out, "carry no tags") || !strings.Contains(out, "caddy gatehouse tag-records") {
		t.Fatalf("start on an untagged store: %v\n%s\nwant a refusal naming tag-records", err, out)
	}
	out, err = harness.Command(t, bin, "gatehouse", "tag-records", "--store", "badger:"+dataDir, "--keystore", filepath.Join(dataDir, "keystore.key"))
	if err != nil || !strings.Contains(out, "tag-records: tagged 2 records") { // the role and the user
		t.Fatalf("tag-records: %v\n%s", err, out)
	}
	inst := harness.Start(t, basicSite, harness.Options{Dir: dir})
	if res := harness.Curl(t, "-u", "olga:correct horse", inst.HTTPSURL()+"/api/x"); res.Status != 200 {
		t.Fatalf("olga after the upgrade: %d %s", res.Status, res.Body)
	}
	inst.Stop()
	// Olga's sign-in replaced her unkeyed hash with a keyed one.
	if db, err = badger.Open(filepath.Join(dataDir, "badger"), badger.Options{}); err != nil {
		t.Fatal(err)
	}
	record, err := db.Get(ctx, "user/olga")
	db.Close()
	if err != nil || !strings.Contains(string(record), ",keyed=1$") {
		t.Fatalf("olga's record after her sign-in: %v %q; want a keyed password hash", err, record)
	}
	// Run again, it finds the marker and does nothing.
	if out, err := harness.Command(t, bin, "gatehouse", "tag-records", "--store", "badger:"+dataDir, "--keystore", filepath.Join(dataDir, "keystore.key")); err != nil || !strings.Contains(out, "tagged 0 records") {
		t.Fatalf("second tag-records: %v\n%s", err, out)
	}
}
