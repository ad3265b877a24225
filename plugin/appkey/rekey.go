package appkey

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/keystore/rekeying"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// Store key prefixes a keystore rekey rewrites (see RekeyIndexRecord and
// RekeySessionRecord).
const (
	// IndexRecordPrefix starts the key of every application key record.
	IndexRecordPrefix = indexPrefix
	// SessionRecordPrefix starts the key of every app-key session binding.
	SessionRecordPrefix = sessionPrefix
)

// tagUnder reports whether tag is the value tag random gets under the
// index key id names (see newKey).
func tagUnder(ks *keystore.Keystore, id string, random []byte, tag [tagSize]byte) bool {
	sum, ok := ks.IndexSumWith(id, indexPurpose, string(random))
	return ok && subtle.ConstantTimeCompare(sum[len(sum)-tagSize:], tag[:]) == 1
}

// tagRetired reports whether a value's tag, which the current index key
// did not make, was made by one a rekey retired: a key issued before the
// rekey. Its index is the current key's all the same (the rekey made the
// indexes again).
func tagRetired(ks *keystore.Keystore, random []byte, tag [tagSize]byte) bool {
	for _, r := range ks.Retired() {
		if tagUnder(ks, r.ID, random, tag) {
			return true
		}
	}
	return false
}

// indexUnder opens the value of the key record rec with the old keystore
// and returns it with its lookup index under the new one.
func indexUnder(k rekeying.Keys, rec *record) (plain []byte, index string, err error) {
	plain, err = k.Old.Open(rec.SealedKey, sealContext(rec.Name))
	if err != nil {
		return nil, "", fmt.Errorf("application key %q: %w", rec.Name, err)
	}
	random, _, ok := parseKey(string(plain))
	if !ok {
		return nil, "", fmt.Errorf("application key %q: its sealed value is malformed", rec.Name)
	}
	return plain, k.New.Index(indexPurpose, random[:]), nil
}

// RekeyIndexRecord is the rekeying.Func of appkeyidx/ records: a key's
// value is sealed again and filed under its index with the new keystore,
// and its name points there. A rotation's stub (the previous value
// during its grace period) is dropped, since its value is not held: the
// grace ends with the rekey. A record its name does not point to (left by
// a creation that failed) is dropped. The value keeps its tag, made with
// the old index key, which the retired key still accepts (see
// RetiredTagged).
func RekeyIndexRecord(ctx context.Context, k rekeying.Keys, key string, value []byte, read rekeying.Reader) (rekeying.Change, error) {
	rec, err := decodeRecord(value)
	if err != nil {
		return rekeying.Change{}, fmt.Errorf("%s: %w", key, err)
	}
	oldIndex := strings.TrimPrefix(key, indexPrefix)
	if rec.Successor != "" || len(rec.SealedKey) == 0 {
		return rekeying.Change{Drop: true}, nil
	}
	plain, newIndex, err := indexUnder(k, &rec)
	if err != nil {
		return rekeying.Change{}, err
	}
	switch pointed, _, err := read(ctx, namePrefix+rec.Name); {
	case errors.Is(err, storage.ErrNotFound) || err == nil && string(pointed) != oldIndex:
		return rekeying.Change{Drop: true}, nil
	case err != nil:
		return rekeying.Change{}, err
	}
	rec.Index, rec.SealedKey = newIndex, k.New.Seal(plain, sealContext(rec.Name))
	rec.PrevIndex, rec.PrevValidUntil = "", time.Time{}
	return rekeying.Change{Drop: true, Extra: []storage.Op{
		{Kind: storage.OpPut, Key: indexPrefix + newIndex, Value: rec.encode()},
		{Kind: storage.OpPut, Key: namePrefix + rec.Name, Value: []byte(newIndex)},
	}}, nil
}

// RekeySessionRecord is the rekeying.Func of appkeysess/ bindings, run
// before the key records move: a binding names its key record by the
// index, which the rekey makes again. A binding whose record is gone or a
// rotation's stub is dropped (its session is refused, as it would be).
// An earlier version's sealed session token is sealed again.
func RekeySessionRecord(ctx context.Context, k rekeying.Keys, key string, value []byte, read rekeying.Reader) (rekeying.Change, error) {
	b, err := decodeBinding(value)
	if err != nil {
		return rekeying.Change{}, fmt.Errorf("%s: %w", key, err)
	}
	raw, ks, err := read(ctx, indexPrefix+b.Index)
	if errors.Is(err, storage.ErrNotFound) {
		return rekeying.Change{Drop: true}, nil
	}
	if err != nil {
		return rekeying.Change{}, err
	}
	rec, err := decodeRecord(raw)
	if err != nil || rec.Successor != "" || len(rec.SealedKey) == 0 {
		return rekeying.Change{Drop: true}, nil //nolint:nilerr // a record that is no key's ends the session
	}
	if ks == k.Old {
		if _, b.Index, err = indexUnder(k, &rec); err != nil {
			return rekeying.Change{}, err
		}
	}
	if !session.ValidID(string(b.Session)) && len(b.Session) > 0 {
		token, err := k.Old.Open(b.Session, key)
		if err != nil {
			return rekeying.Change{Drop: true}, nil //nolint:nilerr // a binding whose token does not open ends nothing
		}
		b.Session = k.New.Seal(token, key)
	}
	return rekeying.Change{Value: b.encode()}, nil
}

// RetiredTagged reads an application key record (appkeyidx/) for the
// rekey report: its name, and whether its value carries a tag made with
// an index key a rekey retired rather than the current one (a key issued
// before the rekey). Dropping the retired keys makes such a value invalid
// until the key is rotated. ok is false for a record that is no key's
// current value (a rotation's stub).
func RetiredTagged(ks *keystore.Keystore, raw []byte) (name string, retired, ok bool, err error) {
	rec, err := decodeRecord(raw)
	if err != nil {
		return "", false, false, err
	}
	if rec.Successor != "" || len(rec.SealedKey) == 0 {
		return rec.Name, false, false, nil
	}
	plain, err := ks.Open(rec.SealedKey, sealContext(rec.Name))
	if err != nil {
		return rec.Name, false, false, err
	}
	random, tag, valid := parseKey(string(plain))
	if !valid {
		return rec.Name, false, false, errCorrupt
	}
	current := ks.Index(indexPurpose, random[:])
	want, _ := hex.DecodeString(current[len(current)-2*tagSize:])
	return rec.Name, subtle.ConstantTimeCompare(want, tag[:]) != 1, true, nil
}
