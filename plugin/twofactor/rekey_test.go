package twofactor

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/keystore/keystoretest"
	"github.com/gatehouse-auth/gatehouse/keystore/rekeying"
)

// TestRekeyRecordSealsAgainAndKeepsTheTokenMark: a rekey seals the OTP
// secrets again with the new keystore, makes the enrolled hardware
// token's mark again under the new index key (so the codes it gave stay
// used: a mark the new keystore does not know would let them in again),
// and drops the pending SMS code.
func TestRekeyRecordSealsAgainAndKeepsTheTokenMark(t *testing.T) {
	ctx := context.Background()
	old := keystoretest.New(t)
	next, err := old.Successor()
	if err != nil {
		t.Fatal(err)
	}
	k := rekeying.Keys{Old: old, New: next}
	uid := "u1"
	token, app := []byte("0123456789abcdef0123"), []byte("fedcba9876543210fedc")
	factors := storedFactors{
		App:       &storedSecret{ID: "a1", Sealed: old.Seal(app, sealContext(uid, TypeApp, "a1"))},
		HardToken: &storedSecret{ID: "h1", Sealed: old.Seal(token, sealContext(uid, TypeHardToken, "h1")), Counter: 3},
	}
	rawFactors, _ := json.Marshal(factors)
	st := state{HOTPID: "h1", HOTPNext: 9, HOTPTokens: []tokenMark{
		{Secret: tokenDigestWith(old, uid, token), Next: 9}, {Secret: "an earlier token's", Next: 4}}}
	rawState, _ := json.Marshal(st)
	read := func(_ context.Context, key string) ([]byte, *keystore.Keystore, error) {
		if key != factorsKey(uid) {
			t.Fatalf("read %s", key)
		}
		return rawFactors, old, nil
	}

	change, err := RekeyRecord(ctx, k, factorsKey(uid), rawFactors, read)
	if err != nil || change.Drop {
		t.Fatalf("factors: %+v %v", change, err)
	}
	var moved storedFactors
	if err := json.Unmarshal(change.Value, &moved); err != nil {
		t.Fatal(err)
	}
	if got, err := next.Open(moved.App.Sealed, sealContext(uid, TypeApp, "a1")); err != nil || string(got) != string(app) {
		t.Errorf("the app secret: %q %v", got, err)
	}
	if got, err := next.Open(moved.HardToken.Sealed, sealContext(uid, TypeHardToken, "h1")); err != nil || string(got) != string(token) || moved.HardToken.Counter != 3 {
		t.Errorf("the hardware token's secret: %q %v", got, err)
	}

	change, err = RekeyRecord(ctx, k, stateKey(uid), rawState, read)
	if err != nil || change.Drop {
		t.Fatalf("state: %+v %v", change, err)
	}
	var after state
	if err := json.Unmarshal(change.Value, &after); err != nil {
		t.Fatal(err)
	}
	sec := &secret{id: "h2", digest: tokenDigestWith(next, uid, token), counter: 3} // the token imported again
	if next, ok := usedNext(&after, sec); !ok || next != 9 {
		t.Errorf("the token's mark under the new keystore: %d %v; want 9", next, ok)
	}
	if after.HOTPTokens[1].Secret != "an earlier token's" || after.HOTPID != "h1" || after.HOTPNext != 9 {
		t.Errorf("the rest of the state changed: %+v", after)
	}

	if change, err := RekeyRecord(ctx, k, smsKey(uid), []byte(`{}`), read); err != nil || !change.Drop {
		t.Errorf("the SMS code: %+v %v; want it dropped", change, err)
	}
}

// TestATokenUsedBeforeARekeyTakesBackNoCode: the mark of a hardware
// token used before a rekey but no longer enrolled then keeps its digest
// under the old index key (the rekey cannot make it again: the secret
// is not held). Imported again after the rekey, the token is known by
// that mark all the same, under the retired key the new keystore keeps:
// the codes it gave before stay used. Its digest under the new key alone
// matched no mark, and an import at a lower counter let them in again.
func TestATokenUsedBeforeARekeyTakesBackNoCode(t *testing.T) {
	old := keystoretest.New(t)
	next, err := old.Successor()
	if err != nil {
		t.Fatal(err)
	}
	uid := "u1"
	earlier := []byte("0123456789abcdef0123")
	// The state after the rekey: the earlier token's mark, unchanged.
	st := state{HOTPTokens: []tokenMark{{Secret: tokenDigestWith(old, uid, earlier), Next: 40}}}
	// The token imported again after the rekey, at counter 0.
	s := &Service{engine: &engine.Engine{Keystore: next}}
	sec, err := s.openSecret(uid, TypeHardToken, &storedSecret{ID: "h9", Sealed: next.Seal(earlier, sealContext(uid, TypeHardToken, "h9"))})
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := usedNext(&st, sec); !ok || n != 40 {
		t.Errorf("the token used before the rekey, imported again: next counter %d %v; want 40 (its codes before stay used)", n, ok)
	}
	// Another token matches no mark.
	other := []byte("fedcba9876543210fedc")
	sec, err = s.openSecret(uid, TypeHardToken, &storedSecret{ID: "h8", Sealed: next.Seal(other, sealContext(uid, TypeHardToken, "h8"))})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := usedNext(&st, sec); ok {
		t.Error("another token matched the earlier one's mark")
	}
}
