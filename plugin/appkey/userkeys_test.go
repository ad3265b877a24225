package appkey

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// keyNamesOf lists the keys of username through the admin API
// (?username=) and returns their names, failing unless the answer is
// 200.
func (f *fixture) keyNamesOf(username string) []string {
	f.t.Helper()
	var views []View
	if code := f.call("GET", "/gatehouse/appkeys?username="+username, "", &views); code != http.StatusOK {
		f.t.Fatalf("listing %s's keys: %d", username, code)
	}
	names := []string{}
	for _, v := range views {
		if v.Username != username {
			f.t.Fatalf("%s's keys list %s's key %s", username, v.Username, v.Name)
		}
		names = append(names, v.Name)
	}
	return names
}

// waitIndexed waits for the start's indexing of the fixture's new store
// (nothing to index) to mark it indexed, so that lists come from the
// accounts' entries.
func (f *fixture) waitIndexed() {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := f.engine.Store.Get(context.Background(), userKeysDone); err == nil {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatal("a new store was never marked indexed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAccountKeysAreListedFromTheirOwnIndex: one account's keys are read
// from that account's entries, never by reading every key (which any
// signed-in user's account page would otherwise make the server do); a
// deleted key leaves the list; a store from before the entries lists
// them from every key until its keys are indexed, and from their entries
// after; imported keys (Seed) are listed.
func TestAccountKeysAreListedFromTheirOwnIndex(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.waitIndexed()
	f.create(`{"name":"k2","username":"alice"}`)
	f.create(`{"name":"k1","username":"alice"}`)
	f.create(`{"name":"b1","username":"boss"}`)
	// A creation refused (the name is taken) names no key of its account.
	if code := f.call("POST", "/gatehouse/appkeys", `{"name":"b1","username":"alice"}`, nil); code != http.StatusConflict {
		t.Fatalf("a taken name: %d", code)
	}

	scans := f.keyScans.Load()
	if got := f.keyNamesOf("alice"); !slices.Equal(got, []string{"k1", "k2"}) {
		t.Fatalf("alice's keys: %v, want [k1 k2]", got)
	}
	if got := f.keyNamesOf("boss"); !slices.Equal(got, []string{"b1"}) {
		t.Fatalf("boss's keys: %v, want [b1]", got)
	}
	if n := f.keyScans.Load() - scans; n != 0 {
		t.Fatalf("listing one account's keys read every key %d times", n)
	}
	// A deletion limited to an account deletes only that account's key.
	if code := f.call("DELETE", "/gatehouse/appkeys/k1?username=boss", "", nil); code != http.StatusNotFound {
		t.Fatalf("deleting alice's k1 as boss's: %d, want 404", code)
	}
	if code := f.call("DELETE", "/gatehouse/appkeys/k1?username=alice", "", nil); code != http.StatusNoContent {
		t.Fatalf("deleting k1 as alice's: %d", code)
	}
	if got := f.keyNamesOf("alice"); !slices.Equal(got, []string{"k2"}) {
		t.Fatalf("alice's keys after deleting k1: %v, want [k2]", got)
	}
	// A condition the server cannot read, or does not know, is refused
	// rather than dropped: the delete would then take anyone's key.
	for _, q := range []string{"Username=boss", "user=boss", "username=boss;x", "username=boss&x=1", "username=%zz"} {
		if code := f.call("DELETE", "/gatehouse/appkeys/k2?"+q, "", nil); code != http.StatusBadRequest {
			t.Fatalf("deleting alice's k2 with ?%s: %d, want 400", q, code)
		}
		if code := f.call("GET", "/gatehouse/appkeys?"+q, "", nil); code != http.StatusBadRequest {
			t.Fatalf("listing with ?%s: %d, want 400", q, code)
		}
	}
	if code := f.call("GET", "/gatehouse/appkeys?username=nobody", "", nil); code != http.StatusNotFound {
		t.Fatalf("an unknown user's keys: %d, want 404", code)
	}

	// A store from before the entries: no entries, no mark.
	alice, err := f.engine.Accounts.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{userKeyKey(alice.ID, "k2"), userKeysDone} {
		if err := f.engine.Store.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.keyNamesOf("alice"); !slices.Equal(got, []string{"k2"}) {
		t.Fatalf("alice's keys in a store not indexed yet: %v, want [k2]", got)
	}
	if err := f.svc.indexUserKeys(ctx); err != nil {
		t.Fatal(err)
	}
	scans = f.keyScans.Load()
	if got := f.keyNamesOf("alice"); !slices.Equal(got, []string{"k2"}) {
		t.Fatalf("alice's keys once indexed: %v, want [k2]", got)
	}
	if n := f.keyScans.Load() - scans; n != 0 {
		t.Fatalf("listing one account's keys once indexed read every key %d times", n)
	}
	// Keys imported with Seed have their entries too.
	if _, err := Seed(ctx, f.engine.Store, f.ks, []SeedKey{{Name: "imported", Username: "alice", UserID: alice.ID, ExpiresAt: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if got := f.keyNamesOf("alice"); !slices.Equal(got, []string{"imported", "k2"}) {
		t.Fatalf("alice's keys after an import: %v, want [imported k2]", got)
	}
}

// TestKeyRecreatedWhileDeletedIsListed: a key deleted and created again
// under the same name for the same account at the same moment ends up
// listed whenever it exists (the deletion's cleanup of the account's
// entry must not take the new key's), and deleting the account then
// deletes it.
func TestKeyRecreatedWhileDeletedIsListed(t *testing.T) {
	f := newFixture(t)
	f.waitIndexed()
	for round := range 100 {
		f.create(`{"name":"r","username":"alice"}`)
		var wg sync.WaitGroup
		wg.Go(func() { f.call("DELETE", "/gatehouse/appkeys/r", "", nil) })
		wg.Go(func() { f.call("POST", "/gatehouse/appkeys", `{"name":"r","username":"alice"}`, nil) })
		wg.Wait()
		exists := f.call("GET", "/gatehouse/appkeys/r", "", nil) == http.StatusOK
		if listed := slices.Contains(f.keyNamesOf("alice"), "r"); listed != exists {
			t.Fatalf("round %d: key r exists %v, listed for alice %v", round, exists, listed)
		}
		if exists {
			if code := f.call("DELETE", "/gatehouse/appkeys/r", "", nil); code != http.StatusNoContent {
				t.Fatalf("round %d: deleting r: %d", round, code)
			}
		}
	}
}

// TestKeyCreatedWhileItsAccountIsDeletedGoesToo: a key created for an
// account while the account is being deleted does not outlive it.
func TestKeyCreatedWhileItsAccountIsDeletedGoesToo(t *testing.T) {
	f := newFixture(t)
	f.waitIndexed()
	ctx := context.Background()
	for round := range 60 {
		name := fmt.Sprintf("leaving%d", round)
		if _, err := f.engine.Accounts.CreateUser(ctx, account.NewUser{Username: name, Roles: []string{"api"}}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := f.engine.Accounts.DeleteUser(ctx, name); err != nil {
				t.Errorf("deleting %s: %v", name, err)
			}
		})
		wg.Go(func() { f.call("POST", "/gatehouse/appkeys", `{"name":"`+name+`-key","username":"`+name+`"}`, nil) })
		wg.Wait()
		if code := f.call("GET", "/gatehouse/appkeys/"+name+"-key", "", nil); code != http.StatusNotFound {
			t.Fatalf("round %d: the key of the deleted account %s: %d, want 404", round, name, code)
		}
	}
}

// TestRotationDuringIndexingKeepsTheEntry: a key rotated while a store
// from before the accounts' entries is indexed, between the indexing's
// listing of the keys and its reading of them (as a Redis scan goes),
// keeps its account's entry: the indexing reads only its old record, a
// stub, but the rotation writes the entry itself.
func TestRotationDuringIndexingKeepsTheEntry(t *testing.T) {
	f := newFixture(t)
	f.waitIndexed()
	ctx := context.Background()
	f.create(`{"name":"moving","username":"alice"}`)
	alice, err := f.engine.Accounts.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{userKeyKey(alice.ID, "moving"), userKeysDone} { // a store from before the entries
		if err := f.engine.Store.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	rotate := func() {
		if code := f.call("POST", "/gatehouse/appkeys/moving/rotate", `{"grace_seconds":60}`, nil); code != http.StatusOK {
			t.Errorf("rotating mid-scan: %d", code)
		}
	}
	f.midScan.Store(&rotate)
	err = f.svc.indexUserKeys(ctx)
	f.midScan.Store(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.keyNamesOf("alice"); !slices.Equal(got, []string{"moving"}) {
		t.Fatalf("alice's keys after a rotation during the indexing: %v, want [moving]", got)
	}
}

// TestStaleAccountEntriesArePruned: an account's entry left behind by a
// deletion that failed half-way (the key gone, its entry not) is removed
// by the next listing of the account's keys, and a key of the same name
// created afterwards for the account is listed.
func TestStaleAccountEntriesArePruned(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.waitIndexed()
	f.create(`{"name":"gone","username":"alice"}`)
	f.create(`{"name":"kept","username":"alice"}`)
	alice, err := f.engine.Accounts.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if code := f.call("DELETE", "/gatehouse/appkeys/gone", "", nil); code != http.StatusNoContent {
		t.Fatalf("deleting gone: %d", code)
	}
	entry := userKeyKey(alice.ID, "gone")
	if err := f.engine.Store.Put(ctx, entry, nil, 0); err != nil { // what the failed cleanup left
		t.Fatal(err)
	}
	if got := f.keyNamesOf("alice"); !slices.Equal(got, []string{"kept"}) {
		t.Fatalf("alice's keys: %v, want [kept]", got)
	}
	if _, err := f.engine.Store.Get(ctx, entry); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the stale entry after a listing: %v, want it removed", err)
	}
	f.create(`{"name":"gone","username":"alice"}`)
	if got := f.keyNamesOf("alice"); !slices.Equal(got, []string{"gone", "kept"}) {
		t.Fatalf("alice's keys after the name was used again: %v, want [gone kept]", got)
	}
}
