package connector

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/engine"
)

func TestSeedTokensWritesWorkingBoundPairs(t *testing.T) {
	f := newFixture(t, engine.Config{})
	ctx := context.Background()
	f.user("alice")
	f.user("bob")
	c1 := f.connector("c1", "alice")
	c2 := f.connector("c2", "bob")
	tokens, err := SeedTokens(ctx, f.engine.Store, "c1", 2*seedBatch+3, time.Hour) // more than one batch
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 2*seedBatch+3 {
		t.Fatalf("got %d tokens; want %d", len(tokens), 2*seedBatch+3)
	}
	seen := map[string]bool{}
	for _, tok := range tokens {
		if seen[tok] || !strings.HasPrefix(tok, accessTokenPrefix) || len(tok) != tokenLength {
			t.Fatalf("token %q is repeated or malformed", tok)
		}
		seen[tok] = true
	}
	for _, tok := range []string{tokens[0], tokens[len(tokens)-1]} {
		if msg := f.use(c1, tok); msg != "" {
			t.Errorf("a seeded token with its connector's certificate was refused: %s", msg)
		}
		if msg := f.use(c2, tok); !strings.Contains(msg, "another client certificate") {
			t.Errorf("a seeded token with another connector's certificate: %q; want the wrong-certificate refusal", msg)
		}
	}
	if listed, err := f.p.ListTokens(ctx, "c1", ""); err != nil || len(listed) != len(tokens) {
		t.Errorf("ListTokens(c1) = %d, %v; want %d", len(listed), err, len(tokens))
	}
	f.now = f.now.Add(2 * time.Hour)
	if msg := f.use(c1, tokens[0]); msg == "" {
		t.Error("a seeded token worked past its lifetime")
	}
}

func TestSeedTokensRefusesMissingOrRevokedConnectors(t *testing.T) {
	f := newFixture(t, engine.Config{})
	ctx := context.Background()
	f.user("alice")
	f.connector("c1", "alice")
	if _, err := SeedTokens(ctx, f.engine.Store, "nobody", 1, time.Hour); err == nil {
		t.Error("seeding tokens for a missing connector succeeded")
	}
	if _, err := SeedTokens(ctx, f.engine.Store, "c1", 1, 0); err == nil {
		t.Error("seeding tokens with no lifetime succeeded")
	}
	if _, _, err := f.p.Revoke(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := SeedTokens(ctx, f.engine.Store, "c1", 1, time.Hour); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("seeding tokens for a revoked connector: %v; want a refusal", err)
	}
}
