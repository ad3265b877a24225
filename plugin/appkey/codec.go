package appkey

import (
	"context"
	"errors"

	"github.com/gatehouse-auth/gatehouse/internal/reccodec"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// Records are stored in the compact binary form of internal/reccodec
// rather than JSON: the data plane decodes one on every cache miss (in the
// one-million-key scale mode, on most requests).

const codecVersion = 1

var errCorrupt = errors.New("application key record is corrupt")

// errMisfiled is a record whose own index is not the one it is stored
// under; the data plane answers it as an invalid key.
var errMisfiled = errors.New("application key record is filed under another index")

// fields visits every field of r in storage order: the one list both
// encoding and decoding follow. Append new fields at the end only.
func (r *record) fields(c reccodec.Fields) {
	c.String(&r.Name)
	c.String(&r.Index)
	c.String(&r.Username)
	c.String(&r.UserID)
	c.ByteString(&r.SealedKey)
	c.Time(&r.ExpiresAt)
	c.List(&r.IPAllowlist)
	c.String(&r.Description)
	c.String(&r.Project)
	c.List(&r.Tags)
	c.String(&r.ClientName)
	c.String(&r.Documentation)
	c.String(&r.HomeURL)
	c.Time(&r.CreatedAt)
	c.Time(&r.LastModifiedAt)
	c.String(&r.PrevIndex)
	c.Time(&r.PrevValidUntil)
	c.String(&r.Successor)
	c.Time(&r.GraceUntil)
}

func (r *record) encode() []byte { return reccodec.Encode(codecVersion, r.fields) }

func decodeRecord(b []byte) (record, error) {
	var r record
	if reccodec.Decode(b, codecVersion, r.fields) != nil {
		return record{}, errCorrupt
	}
	return r, nil
}

// SealedWith reports whether the application keys in store were sealed
// with ks, judged by the first key record (appkeyidx/, its record tag on
// or cut off: the store may be one tag-records has not tagged yet) that
// holds a sealed value: what tells a store's keystore when its assertion
// signing key is missing. known is false when the store holds none.
func SealedWith(ctx context.Context, store storage.Store, ks *keystore.Keystore) (known, sealed bool, err error) {
	err = store.Scan(ctx, indexPrefix, func(e storage.Entry) error {
		for _, b := range keystore.TagOnOrOff(e.Value) {
			if rec, err := decodeRecord(b); err == nil && len(rec.SealedKey) > 0 {
				_, err := ks.Open(rec.SealedKey, sealContext(rec.Name))
				known, sealed = true, err == nil
				return storage.ErrStopScan
			}
		}
		return nil
	})
	return known, sealed, err
}
