package appkey

import (
	"encoding/binary"
	"errors"
	"time"
)

// Records are stored in a compact binary form rather than JSON: the data
// plane decodes one on every cache miss (in the one-million-key scale mode,
// on most requests), where encoding/json costs several microseconds and
// this codec a fraction of one. Layout: a version byte, then the fields in
// the order record.fields visits them: strings and byte strings as uvarint
// length and bytes, string lists as uvarint count and strings, times as
// varint Unix microseconds (0 for the zero time).

const codecVersion = 1

// stamp is t as a record stores it: UTC, to the microsecond.
func stamp(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

var errCorrupt = errors.New("application key record is corrupt")

// fieldCodec reads or writes one field.
type fieldCodec interface {
	str(*string)
	bytes(*[]byte)
	time(*time.Time)
	list(*[]string)
}

// fields visits every field of r in storage order: the one list both
// encoding and decoding follow. Append new fields at the end only.
func (r *record) fields(c fieldCodec) {
	c.str(&r.Name)
	c.str(&r.Index)
	c.str(&r.Username)
	c.str(&r.UserID)
	c.bytes(&r.SealedKey)
	c.time(&r.ExpiresAt)
	c.list(&r.IPAllowlist)
	c.str(&r.Description)
	c.str(&r.Project)
	c.list(&r.Tags)
	c.str(&r.ClientName)
	c.str(&r.Documentation)
	c.str(&r.HomeURL)
	c.time(&r.CreatedAt)
	c.time(&r.LastModifiedAt)
	c.str(&r.PrevIndex)
	c.time(&r.PrevValidUntil)
	c.str(&r.Successor)
	c.time(&r.GraceUntil)
}

func (r *record) encode() []byte {
	e := encoder{b: make([]byte, 1, 256)}
	e.b[0] = codecVersion
	r.fields(&e)
	return e.b
}

func decodeRecord(b []byte) (record, error) {
	var r record
	if len(b) == 0 || b[0] != codecVersion {
		return r, errCorrupt
	}
	d := decoder{b: b[1:]}
	r.fields(&d)
	if d.err != nil || len(d.b) != 0 {
		return record{}, errCorrupt
	}
	return r, nil
}

type encoder struct{ b []byte }

func (e *encoder) str(s *string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(*s)))
	e.b = append(e.b, *s...)
}

func (e *encoder) bytes(p *[]byte) {
	e.b = binary.AppendUvarint(e.b, uint64(len(*p)))
	e.b = append(e.b, *p...)
}

func (e *encoder) time(t *time.Time) {
	var v int64
	if !t.IsZero() {
		v = t.UnixMicro()
	}
	e.b = binary.AppendVarint(e.b, v)
}

func (e *encoder) list(l *[]string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(*l)))
	for i := range *l {
		e.str(&(*l)[i])
	}
}

// decoder reads fields until the first error, then yields zero values.
type decoder struct {
	b   []byte
	err error
}

// length reads a length that must not exceed the bytes left.
func (d *decoder) length() int {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > uint64(len(d.b)-n) {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return int(v)
}

func (d *decoder) raw() []byte {
	n := d.length()
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) str(s *string) { *s = string(d.raw()) }

func (d *decoder) bytes(p *[]byte) {
	if raw := d.raw(); len(raw) > 0 {
		*p = append([]byte(nil), raw...)
	}
}

func (d *decoder) time(t *time.Time) {
	if d.err != nil {
		return
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return
	}
	d.b = d.b[n:]
	if v != 0 {
		*t = time.UnixMicro(v).UTC()
	}
}

func (d *decoder) list(l *[]string) {
	n := d.length() // each string takes at least one byte: bounded by the input
	if n == 0 {
		return
	}
	*l = make([]string, n)
	for i := range *l {
		d.str(&(*l)[i])
	}
}
