package appkey

import (
	"path/filepath"
	"testing"

	"github.com/gatehouse-auth/gatehouse/keystore/keystoretest"
)

// TestValueTaggedUnderRetiredKey: a key value issued before a keystore
// rekey carries a tag of the old index key; the new keystore, which
// keeps that key retired, accepts it and finds it under its own index
// (the one the rekey filed its record under). Once the retired key is
// dropped, the value is refused as forged.
func TestValueTaggedUnderRetiredKey(t *testing.T) {
	old := keystoretest.New(t)
	value, oldIndex := newKey(old)
	next, err := old.Successor()
	if err != nil {
		t.Fatal(err)
	}
	if err := next.WriteNew(filepath.Join(t.TempDir(), "keystore.key")); err != nil {
		t.Fatal(err)
	}
	random, _, _ := parseKey(value)
	index, ok := indexOf(next, value)
	if !ok || index != next.Index(indexPurpose, random[:]) || index == oldIndex {
		t.Fatalf("a value issued before the rekey: %v, index %s", ok, index)
	}
	if _, ok := indexOf(keystoretest.New(t), value); ok {
		t.Fatal("another keystore accepted the value")
	}
	fresh, _ := newKey(next)
	if err := next.DropRetired(); err != nil {
		t.Fatal(err)
	}
	if _, ok := indexOf(next, value); ok {
		t.Fatal("a value tagged under a dropped key was accepted")
	}
	if _, ok := indexOf(next, fresh); !ok {
		t.Fatal("a value issued after the rekey was refused")
	}
}
