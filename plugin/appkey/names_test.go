package appkey

import (
	"context"
	"slices"
	"strconv"
	"testing"

	"github.com/gatehouse-auth/gatehouse/storage/stacktest"
)

// TestKeyNamesAndReadable: KeyNames lists every key's name from the
// store's keys, a forged name record's too; Readable keeps, in order,
// the names whose record the store accepts, leaving out a forged one and
// one gone rather than failing; KeyNamesOfUsers answers from the
// accounts' entries once they are all written, and says so before.
func TestKeyNamesAndReadable(t *testing.T) {
	ctx := context.Background()
	c, db := stacktest.Open(t)
	for _, k := range []string{namePrefix + "good", namePrefix + "also", userKeyKey("u1", "good"), userKeyKey("u2", "also"), userKeyKey("u3", "x")} {
		if err := c.Put(ctx, k, []byte("i"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Put(ctx, namePrefix+"bad", []byte("i"), 0); err != nil { // past the tags
		t.Fatal(err)
	}
	var names []string
	if err := KeyNames(ctx, c, func(name string) error { names = append(names, name); return nil }); err != nil || !slices.Equal(names, []string{"also", "bad", "good"}) {
		t.Fatalf("KeyNames = %v, %v; want [also bad good]", names, err)
	}
	if got, err := Readable(ctx, c, []string{"also", "bad", "gone", "good"}); err != nil || !slices.Equal(got, []string{"also", "good"}) {
		t.Fatalf("Readable = %v, %v; want [also good]", got, err)
	}
	if _, indexed, err := KeyNamesOfUsers(ctx, c, map[string]bool{"u1": true}); err != nil || indexed {
		t.Fatalf("KeyNamesOfUsers before the entries are complete: indexed %t, %v; want false", indexed, err)
	}
	if err := c.Put(ctx, userKeysDone, []byte("now"), 0); err != nil {
		t.Fatal(err)
	}
	many := map[string]bool{"u1": true, "u2": true}
	for i := range 100 {
		many[strconv.Itoa(i)] = true // past the per-account scans: one pass over every entry
	}
	for _, ids := range []map[string]bool{{"u1": true, "u2": true}, many} {
		got, indexed, err := KeyNamesOfUsers(ctx, c, ids)
		if err != nil || !indexed || len(got) != 2 || !got["good"] || !got["also"] {
			t.Fatalf("KeyNamesOfUsers(%d accounts) = %v, %t, %v; want good and also", len(ids), got, indexed, err)
		}
	}
}
