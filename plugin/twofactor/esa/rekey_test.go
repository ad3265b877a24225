package esa

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
)

// TestCredentialDigestUnderRetiredKey: after a keystore rekey, a
// credential whose password digest was made with the old index key (kept
// retired) still works, and its digest is made again with the new key at
// that use; once the retired key is dropped, a digest under it works no
// more.
func TestCredentialDigestUnderRetiredKey(t *testing.T) {
	ctx := context.Background()
	e := enginetest.New(t, engine.Config{}, nil)
	cs := NewCredentials(e)
	first, err := cs.Create(ctx, CreateRequest{Name: "first", AuthAPI: true})
	if err != nil {
		t.Fatal(err)
	}
	second, err := cs.Create(ctx, CreateRequest{Name: "second", AuthAPI: true})
	if err != nil {
		t.Fatal(err)
	}
	stored := func(name string) (digest, key string) {
		t.Helper()
		raw, err := e.Store.Get(ctx, credPrefix+name)
		if err != nil {
			t.Fatal(err)
		}
		c, err := decodeCredential(raw)
		if err != nil {
			t.Fatal(err)
		}
		return c.PasswordDigest, c.DigestKey
	}
	if _, key := stored("first"); key != "" {
		t.Fatalf("a keystore never re-keyed names the digest's key %q", key)
	}
	next, err := e.Keystore.Successor()
	if err != nil {
		t.Fatal(err)
	}
	if err := next.WriteNew(filepath.Join(t.TempDir(), "keystore.key")); err != nil {
		t.Fatal(err)
	}
	e.Keystore = next
	if _, err := cs.Check(ctx, first.Username, "wrong"+first.Password); !errors.Is(err, errBadCredentials) {
		t.Fatalf("a wrong password: %v", err)
	}
	before, _ := stored("first")
	if _, err := cs.Check(ctx, first.Username, first.Password); err != nil {
		t.Fatalf("the password under the retired key: %v", err)
	}
	after, key := stored("first")
	if key != next.IndexKeyID() || after == before {
		t.Fatalf("after the use: digest key %q (want %s), digest changed %v", key, next.IndexKeyID(), after != before)
	}
	if _, err := cs.Check(ctx, first.Username, first.Password); err != nil {
		t.Fatalf("the password under the new key: %v", err)
	}
	if err := next.DropRetired(); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Check(ctx, second.Username, second.Password); !errors.Is(err, errBadCredentials) {
		t.Fatalf("a digest under a dropped key: %v", err)
	}
	if _, err := cs.Check(ctx, first.Username, first.Password); err != nil {
		t.Fatalf("the re-made digest after the drop: %v", err)
	}
}
