package assertion

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
)

// signerStore opens a store and a keystore in dir for a signer.
func signerStore(t testing.TB, dir string) (*badger.Store, *keystore.Keystore) {
	t.Helper()
	st, err := badger.Open(filepath.Join(dir, "db"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ks, err := keystore.Open(filepath.Join(dir, "keystore.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	return st, ks
}

func newSigner(t testing.TB, dir string) *Signer {
	t.Helper()
	st, ks := signerStore(t, dir)
	s, err := NewSigner(context.Background(), st, ks, "gatehouse-test", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAssertionVerifiesWithJWKSAndCarriesClaims(t *testing.T) {
	s := newSigner(t, t.TempDir())
	id := &identity.Identity{Username: "ålice", Method: identity.MethodSession, SecondFactor: true, Roles: []string{"a", "b"}}
	tok, err := s.Assertion(id, "demo", "PATCH")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Verify(tok, s.JWKS(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "ålice" || c.Audience != "demo" || c.HTTPMethod != "PATCH" || c.Issuer != "gatehouse-test" || len(c.Roles) != 2 ||
		strings.Join(c.AMR, " ") != "pwd otp mfa" || c.Auth != "session" || c.Expiry-c.IssuedAt != 60 {
		t.Fatalf("claims: %+v", c)
	}
	if _, err := Verify(tok, s.JWKS(), time.Now().Add(2*time.Minute)); err == nil {
		t.Fatal("expired assertion verified")
	}
	tampered := tok[:len(tok)-4] + "AAAA"
	if _, err := Verify(tampered, s.JWKS(), time.Now()); err == nil {
		t.Fatal("tampered assertion verified")
	}
	other := newSigner(t, t.TempDir())
	if _, err := Verify(tok, other.JWKS(), time.Now()); err == nil {
		t.Fatal("assertion verified with another instance's keys")
	}
}

func TestAssertionReusedOnlyForSameIdentity(t *testing.T) {
	s := newSigner(t, t.TempDir())
	a := &identity.Identity{Username: "alice", Method: identity.MethodBasic, Roles: []string{"r"}}
	t1, _ := s.Assertion(a, "demo", "GET")
	t2, _ := s.Assertion(a, "demo", "GET")
	if t1 != t2 {
		t.Fatal("assertion re-signed for the same identity within its lifetime")
	}
	for _, other := range []struct {
		id          *identity.Identity
		aud, method string
	}{
		{&identity.Identity{Username: "alice", Method: identity.MethodBasic, Roles: []string{"r", "admin"}}, "demo", "GET"},
		{&identity.Identity{Username: "alice", Method: identity.MethodAppKey, Roles: []string{"r"}}, "demo", "GET"},
		{a, "other", "GET"},
		{a, "demo", "DELETE"},
	} {
		tok, _ := s.Assertion(other.id, other.aud, other.method)
		if tok == t1 {
			t.Fatalf("assertion shared across identities/audiences/methods: %+v %s %s", other.id, other.aud, other.method)
		}
	}
}

func TestSigningKeyPersistsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	st, _ := badger.Open(filepath.Join(dir, "db"), badger.Options{})
	ks, _ := keystore.Open(filepath.Join(dir, "keystore.key"), true)
	s1, err := NewSigner(context.Background(), st, ks, "i", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	st2, _ := badger.Open(filepath.Join(dir, "db"), badger.Options{})
	defer st2.Close()
	s2, err := NewSigner(context.Background(), st2, ks, "i", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if string(s1.JWKS()) != string(s2.JWKS()) {
		t.Fatal("signing key changed across restart")
	}
}

// TestAMRUsesRegisteredValues: amr holds RFC 8176 values only; the
// credential kind is the auth claim, one of the contract's four (a session
// an application key started is app_key).
func TestAMRUsesRegisteredValues(t *testing.T) {
	s := newSigner(t, t.TempDir())
	for _, tc := range []struct {
		id        identity.Identity
		amr, auth string
	}{
		{identity.Identity{Method: identity.MethodBasic}, "pwd", "basic"},
		{identity.Identity{Method: identity.MethodConnector, Connector: "c1"}, "pop swk", "connector"},
		{identity.Identity{Method: identity.MethodAppKey, AppKey: "k"}, "", "app_key"},
		{identity.Identity{Method: identity.MethodSession, SecondFactor: true}, "pwd otp mfa", "session"},
		{identity.Identity{Method: identity.MethodSession}, "pwd", "session"},
		{identity.Identity{Method: identity.MethodAppKeySession, AppKey: "k"}, "", "app_key"},
	} {
		tc.id.Username = "bob"
		tok, err := s.Assertion(&tc.id, "demo", "GET")
		if err != nil {
			t.Fatal(err)
		}
		c, err := Verify(tok, s.JWKS(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(c.AMR, " "); got != tc.amr || c.AMR == nil || c.Auth != tc.auth {
			t.Errorf("%+v: amr %q auth %q; want amr %q auth %q", tc.id, got, c.Auth, tc.amr, tc.auth)
		}
	}
}

// TestReuseBucketSharedByMoreIdentitiesThanItHolds: with one reuse bucket
// every identity shares it, six identities for four slots; each still
// gets an assertion of its own claims.
func TestReuseBucketSharedByMoreIdentitiesThanItHolds(t *testing.T) {
	s := newSigner(t, t.TempDir())
	s.reuse = s.reuse[:reuseWays]
	ids := []*identity.Identity{
		{Username: "alice", Method: identity.MethodBasic, Roles: []string{"r"}},
		{Username: "bob", Method: identity.MethodBasic, Roles: []string{"r"}},
		{Username: "alice", Method: identity.MethodBasic, Roles: []string{"r"}, SecondFactor: true},
		{Username: "alice", Method: identity.MethodBasic, Roles: []string{"r", "s"}},
		{Username: "alice", Method: identity.MethodSession, Roles: []string{"r"}},
		{Username: "alice", Method: identity.MethodSession, Roles: []string{"r"}, AppKey: "k"},
	}
	for round := range 3 {
		for _, id := range ids {
			tok, err := s.Assertion(id, "demo", "GET")
			if err != nil {
				t.Fatal(err)
			}
			c, err := Verify(tok, s.JWKS(), s.now())
			if err != nil || c.Subject != id.Username || !slices.Equal(c.Roles, id.Roles) || !slices.Equal(c.AMR, AMR(id)) {
				t.Fatalf("round %d, %+v: claims %+v, %v", round, id, c, err)
			}
		}
	}
}

// TestReuseBucketHoldsAsManyIdentitiesAsSlots: four identities sharing one
// bucket each keep their assertion (ES256 signatures are randomised, so a
// signature made again would differ), and a fifth takes the slot due
// soonest for refreshing, the oldest assertion's.
func TestReuseBucketHoldsAsManyIdentitiesAsSlots(t *testing.T) {
	s := newSigner(t, t.TempDir())
	s.reuse = s.reuse[:reuseWays]
	clock := time.Now()
	s.now = func() time.Time { return clock }
	ids := make([]*identity.Identity, reuseWays+1)
	for i := range ids {
		ids[i] = &identity.Identity{Username: fmt.Sprintf("user-%d", i), Method: identity.MethodBasic}
	}
	first := make([]string, reuseWays)
	for i := range first {
		clock = clock.Add(time.Second) // ids[0] is the oldest
		var err error
		if first[i], err = s.Assertion(ids[i], "demo", "GET"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range first {
		if again, _ := s.Assertion(ids[i], "demo", "GET"); again != first[i] {
			t.Fatalf("%s was signed again while its bucket had room", ids[i].Username)
		}
	}
	if _, err := s.Assertion(ids[reuseWays], "demo", "GET"); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.Assertion(ids[0], "demo", "GET"); again == first[0] {
		t.Error("the fifth identity did not take the oldest assertion's slot")
	}
	if again, _ := s.Assertion(ids[reuseWays-1], "demo", "GET"); again != first[reuseWays-1] {
		t.Error("the fifth identity took the newest assertion's slot")
	}
}

// TestReuseFollowsTheWallClock: an assertion is reused on the wall clock
// its claims count. Stepped forward past half the lifetime, or back before
// the signing, the clock gets a new assertion that verifies then, never
// the old one (expired, or issued in the future). Go's time.Now carries a
// monotonic reading that such a step does not move, so the clock here
// has none either.
func TestReuseFollowsTheWallClock(t *testing.T) {
	s := newSigner(t, t.TempDir()) // a lifetime of one minute
	clock := time.Now()
	s.now = func() time.Time { return clock }
	id := &identity.Identity{Username: "alice", Method: identity.MethodBasic}
	sign := func() string {
		t.Helper()
		tok, err := s.Assertion(id, "demo", "GET")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Verify(tok, s.JWKS(), clock); err != nil {
			t.Fatalf("at %v: %v", clock, err)
		}
		return tok
	}
	first := sign()
	clock = clock.Add(29 * time.Second)
	if sign() != first {
		t.Fatal("not reused within half its lifetime")
	}
	clock = clock.Add(5 * time.Minute) // stepped forward
	stepped := sign()
	if stepped == first {
		t.Fatal("reused after the clock stepped past its exp")
	}
	clock = clock.Add(-10 * time.Minute) // stepped back, before stepped's iat
	if sign() == stepped {
		t.Error("reused before it was issued")
	}
}

// TestSignerRefusesALifetimeShorterThanTwoSeconds: exp counts whole
// seconds, so a shorter lifetime could yield assertions expired when
// reused, or when signed.
func TestSignerRefusesALifetimeShorterThanTwoSeconds(t *testing.T) {
	st, ks := signerStore(t, t.TempDir())
	if _, err := NewSigner(context.Background(), st, ks, "i", 1500*time.Millisecond); err == nil {
		t.Error("a 1.5s lifetime was taken")
	}
	if _, err := NewSigner(context.Background(), st, ks, "i", MinLifetime); err != nil {
		t.Errorf("the minimum lifetime was refused: %v", err)
	}
}

// BenchmarkAssertionManyUsers is the assertion of a request from one of
// 10 000 users drawn at random, each with an assertion already made: what
// a busy route with many users pays when its users' assertions share the
// reuse table.
func BenchmarkAssertionManyUsers(b *testing.B) {
	s := newSigner(b, b.TempDir())
	ids := make([]*identity.Identity, 10_000)
	for i := range ids {
		ids[i] = &identity.Identity{Username: fmt.Sprintf("user-%05d", i), Method: identity.MethodAppKey, AppKey: "k", Roles: []string{"reader"}}
		if _, err := s.Assertion(ids[i], "demo", "GET"); err != nil {
			b.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Assertion(ids[rng.IntN(len(ids))], "demo", "GET"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRotateKey: a rotated key signs for the signers made afterwards; an
// assertion of the old key does not verify with their JWKS. A store
// without a key, and a keystore that is not the store's, change nothing.
func TestRotateKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, ks := signerStore(t, dir)
	if _, _, err := RotateKey(ctx, st, ks); !errors.Is(err, ErrNoKey) {
		t.Fatalf("rotating in a store without a key: %v; want ErrNoKey", err)
	}
	before, err := NewSigner(ctx, st, ks, "gatehouse", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	id := &identity.Identity{Username: "alice", Method: identity.MethodBasic}
	old, err := before.Assertion(id, "demo", "GET")
	if err != nil {
		t.Fatal(err)
	}

	other, err := keystore.Open(filepath.Join(dir, "other.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := RotateKey(ctx, st, other); err == nil {
		t.Fatal("rotated with a keystore that is not the store's")
	}
	if same, err := NewSigner(ctx, st, ks, "gatehouse", time.Minute); err != nil || string(same.JWKS()) != string(before.JWKS()) {
		t.Fatalf("the key changed after a refused rotation: %v", err)
	}

	oldKID, newKID, err := RotateKey(ctx, st, ks)
	if err != nil || oldKID == newKID || !strings.Contains(string(before.JWKS()), oldKID) {
		t.Fatalf("RotateKey: %q → %q, %v", oldKID, newKID, err)
	}
	after, err := NewSigner(ctx, st, ks, "gatehouse", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(after.JWKS()), newKID) || strings.Contains(string(after.JWKS()), oldKID) {
		t.Fatalf("JWKS after the rotation: %s; want only %s", after.JWKS(), newKID)
	}
	if _, err := Verify(old, after.JWKS(), time.Now()); err == nil {
		t.Fatal("an assertion of the old key verified with the new JWKS")
	}
	fresh, err := after.Assertion(id, "demo", "GET")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(fresh, after.JWKS(), time.Now()); err != nil {
		t.Fatalf("an assertion of the new key: %v", err)
	}
}

// TestFollowConvergesAfterTheStoreLostTheKey: two instances on a store
// that lost its data: one that started since made a new key, and the
// other, which kept signing with the key the store lost, adopts it, still
// publishing its previous key until the assertions it signed with it
// have expired; a key missing from the store is written back, so that an
// instance starting next loads it. The signer loaded its key once: the
// two JWKS stayed different, and half the assertions failed an upstream
// that fetched the JWKS through a load balancer.
func TestFollowConvergesAfterTheStoreLostTheKey(t *testing.T) {
	st, ks := signerStore(t, t.TempDir())
	ctx := t.Context()
	start := func() *Signer {
		t.Helper()
		s, err := NewSigner(ctx, st, ks, "gatehouse-test", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	alice := &identity.Identity{Username: "alice", Method: identity.MethodBasic}
	sign := func(s *Signer) string {
		t.Helper()
		tok, err := s.Assertion(alice, "demo", "GET")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	a := start()
	before := sign(a)
	if err := st.Delete(ctx, StoreKey); err != nil { // the store lost its data
		t.Fatal(err)
	}
	b := start() // makes a new key
	if bytes.Equal(a.JWKS(), b.JWKS()) {
		t.Fatal("the instance started on the emptied store loaded the lost key")
	}
	if _, _, err := a.sync(ctx); err != nil {
		t.Fatal(err)
	}
	after := sign(a) // not the one reused from before: signed with the adopted key
	if _, err := Verify(after, b.JWKS(), time.Now()); err != nil {
		t.Fatalf("an assertion A signed after adopting the store's key, with B's JWKS: %v", err)
	}
	if _, err := Verify(before, a.JWKS(), time.Now()); err != nil {
		t.Fatalf("an assertion A signed before adopting the store's key, with A's JWKS: %v", err)
	}
	a.now = func() time.Time { return time.Now().Add(time.Minute + retiredMargin + time.Second) }
	if !bytes.Equal(a.JWKS(), b.JWKS()) {
		t.Fatalf("once the previous key's assertions expired, A publishes\n%s\nand B\n%s", a.JWKS(), b.JWKS())
	}

	// Lost again: the first instance to check writes its key back.
	if err := st.Delete(ctx, StoreKey); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.WarnLevel)
	followCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { b.Follow(followCtx, 10*time.Millisecond, zap.New(core)); close(done) }()
	defer func() { stop(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); logs.FilterMessageSnippet("wrote back").Len() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the lost key was not written back within 10 s")
		}
	}
	if c := start(); !bytes.Equal(c.JWKS(), b.JWKS()) {
		t.Fatal("an instance started after the key was written back made another")
	}
}

// refusingStore answers every read of the signing key with refused, as a
// tagged store answers a record written without its keystore.
type refusingStore struct {
	storage.Store
	refused error
}

func (s refusingStore) Get(ctx context.Context, key string) ([]byte, error) {
	if key == StoreKey {
		return nil, s.refused
	}
	return s.Store.Get(ctx, key)
}

// TestFollowSaysAStoredKeyItCannotRead: a stored signing key that fails
// its tag (another keystore's, or written without one) is logged as an
// error, once, and the signer keeps its own key; a store that does not
// answer is no such error (an outside review found a foreign key logged
// at debug level only).
func TestFollowSaysAStoredKeyItCannotRead(t *testing.T) {
	st, ks := signerStore(t, t.TempDir())
	s, err := NewSigner(t.Context(), st, ks, "gatehouse-test", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	jwks := s.JWKS()
	for _, c := range []struct {
		refused error
		errors  int
	}{
		{errors.New("storage: a record failed authentication (written without this keystore)"), 1},
		{fmt.Errorf("%w: connection refused", storage.ErrUnavailable), 0},
	} {
		s.store = refusingStore{Store: st, refused: c.refused}
		core, logs := observer.New(zapcore.ErrorLevel)
		ctx, stop := context.WithTimeout(t.Context(), 300*time.Millisecond)
		s.Follow(ctx, 10*time.Millisecond, zap.New(core))
		stop()
		if n := logs.Len(); n != c.errors {
			t.Errorf("%v: %d errors logged; want %d: %v", c.refused, n, c.errors, logs.All())
		}
		if !bytes.Equal(s.JWKS(), jwks) {
			t.Fatalf("%v: the signer changed its key", c.refused)
		}
	}
}

// TestReuseNeverCrossesAudiencesOrMethods: with one reuse bucket, the
// same identity's assertions for two audiences and two HTTP methods each
// carry their own aud and htm, on every round: an assertion made for one
// upstream (or for a GET) is never handed to another (or to a DELETE),
// whose upstream would take it.
func TestReuseNeverCrossesAudiencesOrMethods(t *testing.T) {
	s := newSigner(t, t.TempDir())
	s.reuse = s.reuse[:reuseWays]
	id := &identity.Identity{Username: "alice", Method: identity.MethodBasic, Roles: []string{"r"}}
	for round := range 3 {
		for _, aud := range []string{"billing.example", "payroll.example"} {
			for _, method := range []string{"GET", "DELETE"} {
				tok, err := s.Assertion(id, aud, method)
				if err != nil {
					t.Fatal(err)
				}
				c, err := Verify(tok, s.JWKS(), s.now())
				if err != nil || c.Audience != aud || c.HTTPMethod != method {
					t.Fatalf("round %d, %s %s: claims %+v, %v; want aud %q, htm %q", round, method, aud, c, err, aud, method)
				}
			}
		}
	}
}
