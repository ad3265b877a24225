package twofactor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/keystore/rekeying"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// RecordPrefix starts the key of every second-factor record of an
// account (2fa/<user ID>/…), which a keystore rekey rewrites
// (RekeyRecord).
const RecordPrefix = userKeyPrefix

// RekeyRecord is the rekeying.Func of 2fa/ records: an enrolment's OTP
// secrets are sealed again with the new keystore; the state's mark of the
// enrolled hardware token (a digest of its secret, keyed) is made again
// with the new index key, so that its codes accepted before stay refused;
// a pending SMS code (a digest under the old index key, minutes long) is
// dropped: the user asks for another. The marks of tokens no longer
// enrolled keep their old digests, which no token matches any more.
func RekeyRecord(ctx context.Context, k rekeying.Keys, key string, value []byte, read rekeying.Reader) (rekeying.Change, error) {
	rest := strings.TrimPrefix(key, userKeyPrefix)
	uid, _, ok := strings.Cut(rest, "/")
	if !ok {
		return rekeying.Change{Value: value}, nil
	}
	switch key {
	case factorsKey(uid):
		var f storedFactors
		if err := json.Unmarshal(value, &f); err != nil {
			return rekeying.Change{}, fmt.Errorf("decoding the 2FA record of user ID %s: %v", uid, err)
		}
		for t, st := range map[Type]*storedSecret{TypeApp: f.App, TypeHardToken: f.HardToken} {
			if st == nil {
				continue
			}
			raw, err := k.Old.Open(st.Sealed, sealContext(uid, t, st.ID))
			if err != nil {
				return rekeying.Change{}, fmt.Errorf("opening the %s secret of user ID %s: %v", t, uid, err)
			}
			st.Sealed = k.New.Seal(raw, sealContext(uid, t, st.ID))
		}
		out, err := json.Marshal(f)
		return rekeying.Change{Value: out}, err
	case stateKey(uid):
		return rekeyState(ctx, k, uid, value, read)
	case smsKey(uid):
		return rekeying.Change{Drop: true}, nil
	}
	return rekeying.Change{Value: value}, nil
}

// rekeyState makes the mark of the user's enrolled hardware token again
// under the new index key.
func rekeyState(ctx context.Context, k rekeying.Keys, uid string, value []byte, read rekeying.Reader) (rekeying.Change, error) {
	var st state
	if err := json.Unmarshal(value, &st); err != nil {
		return rekeying.Change{}, fmt.Errorf("decoding the 2FA state of user ID %s: %v", uid, err)
	}
	if len(st.HOTPTokens) == 0 {
		return rekeying.Change{Value: value}, nil
	}
	raw, sealedWith, err := read(ctx, factorsKey(uid))
	if errors.Is(err, storage.ErrNotFound) {
		return rekeying.Change{Value: value}, nil
	}
	if err != nil {
		return rekeying.Change{}, err
	}
	var f storedFactors
	if err := json.Unmarshal(raw, &f); err != nil {
		return rekeying.Change{}, fmt.Errorf("decoding the 2FA record of user ID %s: %v", uid, err)
	}
	if f.HardToken == nil {
		return rekeying.Change{Value: value}, nil
	}
	secret, err := sealedWith.Open(f.HardToken.Sealed, sealContext(uid, TypeHardToken, f.HardToken.ID))
	if err != nil {
		return rekeying.Change{}, fmt.Errorf("opening the %s secret of user ID %s: %v", TypeHardToken, uid, err)
	}
	old, next := tokenDigestWith(k.Old, uid, secret), tokenDigestWith(k.New, uid, secret)
	for i := range st.HOTPTokens {
		if st.HOTPTokens[i].Secret == old {
			st.HOTPTokens[i].Secret = next
		}
	}
	out, err := json.Marshal(st)
	return rekeying.Change{Value: out}, err
}

// tokenDigestWith is tokenDigest with the keystore ks.
func tokenDigestWith(ks *keystore.Keystore, uid string, raw []byte) string {
	return ks.Index("hotp-secret/"+uid, bytes.TrimRight(raw, "\x00"))
}

// formerTokenDigests are the digests of the hardware token secret raw
// under the index keys ks keeps retired (tokenDigestWith under each): a
// token used before a rekey, and no longer enrolled then, keeps its mark
// under the old key, so that an import of it after the rekey takes back
// none of the codes it gave.
func formerTokenDigests(ks *keystore.Keystore, uid string, raw []byte) []string {
	var out []string
	for _, r := range ks.Retired() {
		if d, ok := ks.IndexWith(r.ID, "hotp-secret/"+uid, bytes.TrimRight(raw, "\x00")); ok {
			out = append(out, d)
		}
	}
	return out
}
