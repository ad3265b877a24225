package account

import (
	"context"
	"slices"
	"testing"

	"github.com/gatehouse-auth/gatehouse/storage/stacktest"
)

// TestUserNamesAndTheRecordsShown: UserNames lists, in name order, the
// names holding a part from the store's keys alone, forged records'
// too; UsersNamed and UserIDs read the records named and leave out one
// refused as forged (as the users listing's scan does) or gone, rather
// than failing the read.
func TestUserNamesAndTheRecordsShown(t *testing.T) {
	ctx := context.Background()
	c, db := stacktest.Open(t)
	s := NewService(c, nil)
	for _, name := range []string{"carol", "alice", "bob", "alicia"} {
		if _, err := s.CreateUser(ctx, NewUser{Username: name}); err != nil {
			t.Fatal(err)
		}
	}
	// Written past the tags: a record no Gatehouse wrote.
	if err := db.Put(ctx, userPrefix+"alimallory", []byte(`{"username":"alimallory","id":"ffff","roles":[],"status":"active"}`), 0); err != nil {
		t.Fatal(err)
	}
	names, err := s.UserNames(ctx, "ali")
	if err != nil || !slices.Equal(names, []string{"alice", "alicia", "alimallory"}) {
		t.Fatalf("UserNames(ali) = %v, %v; want [alice alicia alimallory]", names, err)
	}
	if all, err := s.UserNames(ctx, ""); err != nil || len(all) != 5 || !slices.IsSorted(all) {
		t.Fatalf("UserNames(\"\") = %v, %v; want the 5 names in order", all, err)
	}
	users, err := s.UsersNamed(ctx, append(names, "gone"))
	if err != nil {
		t.Fatalf("UsersNamed with a forged record: %v; want it left out", err)
	}
	var got []string
	for _, u := range users {
		got = append(got, u.Username)
	}
	if !slices.Equal(got, []string{"alice", "alicia"}) {
		t.Fatalf("UsersNamed = %v; want [alice alicia]", got)
	}
	ids, err := s.UserIDs(ctx, names)
	if err != nil || len(ids) != 2 || ids["alice"] != users[0].ID || ids["alicia"] != users[1].ID {
		t.Fatalf("UserIDs = %v, %v; want alice's and alicia's IDs only", ids, err)
	}
}
