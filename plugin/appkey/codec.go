package appkey

import (
	"errors"

	"github.com/gatehouse-auth/gatehouse/internal/reccodec"
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
