// Package reccodec is the compact binary encoding of the records the data
// plane decodes on a cache miss (application keys, connector tokens): in
// the one-million-key scale mode that is most requests, where
// encoding/json costs microseconds and this a fraction of one.
//
// A record is a version byte, then its fields in one fixed order, which a
// single fields method visits for both encoding and decoding (see Fields):
// strings and byte strings as uvarint length and bytes, string lists as
// uvarint count and strings, times as varint Unix microseconds (0 for the
// zero time), unsigned integers as uvarint. New fields go at the end only.
package reccodec

import (
	"encoding/binary"
	"errors"
	"strings"
	"time"
)

// ErrCorrupt is returned for input that is not a whole record of the
// expected version.
var ErrCorrupt = errors.New("corrupt record")

// Fields reads or writes one field at a time; a record's fields method
// calls it for each of its fields, in storage order.
type Fields interface {
	String(*string)
	ByteString(*[]byte)
	Time(*time.Time)
	List(*[]string)
	Uint(*uint64)
}

// Encode returns the record of the given version whose fields visits.
func Encode(version byte, fields func(Fields)) []byte {
	e := &encoder{b: make([]byte, 1, 256)}
	e.b[0] = version
	fields(e)
	return e.b
}

// Decode reads b, a record of the given version, through fields: it
// fills each field fields visits, and returns ErrCorrupt (leaving zero
// values from the first bad field on) when b is not a whole record of
// that version.
//
// The decoded strings share one copy of b: a decoded record costs one
// allocation for all its strings, and a cached one keeps one heap object
// alive for them instead of one per field, which is what the garbage
// collector's marking work grows with.
func Decode(b []byte, version byte, fields func(Fields)) error {
	d := &decoder{err: ErrCorrupt}
	if len(b) > 0 && b[0] == version {
		d = &decoder{b: b[1:], s: string(b[1:])}
	}
	fields(d)
	if d.err != nil || len(d.b) != 0 {
		return ErrCorrupt
	}
	return nil
}

// Detach gives the strings ss (typically some fields of a decoded record)
// copies of their own in one new allocation: whatever keeps them alive,
// such as a cache entry, then no longer keeps the whole record (Decode's
// strings share its one copy) and still holds one heap object for all.
func Detach(ss ...*string) {
	n := 0
	for _, s := range ss {
		n += len(*s)
	}
	var b strings.Builder
	b.Grow(n)
	for _, s := range ss {
		b.WriteString(*s)
	}
	all := b.String()
	for _, s := range ss {
		*s, all = all[:len(*s)], all[len(*s):]
	}
}

// Stamp is t as a record stores it: UTC, to the microsecond.
func Stamp(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// encoder builds one record.
type encoder struct{ b []byte }

// String implements Fields.
func (e *encoder) String(s *string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(*s)))
	e.b = append(e.b, *s...)
}

// ByteString implements Fields.
func (e *encoder) ByteString(p *[]byte) {
	e.b = binary.AppendUvarint(e.b, uint64(len(*p)))
	e.b = append(e.b, *p...)
}

// Time implements Fields; times are kept to the microsecond.
func (e *encoder) Time(t *time.Time) {
	var v int64
	if !t.IsZero() {
		v = t.UnixMicro()
	}
	e.b = binary.AppendVarint(e.b, v)
}

// List implements Fields.
func (e *encoder) List(l *[]string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(*l)))
	for i := range *l {
		e.String(&(*l)[i])
	}
}

// Uint implements Fields.
func (e *encoder) Uint(v *uint64) { e.b = binary.AppendUvarint(e.b, *v) }

// decoder reads one record's fields until the first error, then yields
// zero values. b is what is left of the record and s the same bytes as one
// string, which the decoded strings are slices of.
type decoder struct {
	b   []byte
	s   string
	err error
}

// skip moves past the next n bytes.
func (d *decoder) skip(n int) {
	d.b, d.s = d.b[n:], d.s[n:]
}

// length reads a length that must not exceed the bytes left.
func (d *decoder) length() int {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > uint64(len(d.b)-n) { //nolint:gosec // G115: n <= len(d.b), so the difference is not negative
		d.err = ErrCorrupt
		return 0
	}
	d.skip(n)
	return int(v) //nolint:gosec // G115: v <= len(d.b), checked above
}

// next returns the next length-prefixed field.
func (d *decoder) next() string {
	n := d.length()
	out := d.s[:n]
	d.skip(n)
	return out
}

// String implements Fields.
func (d *decoder) String(s *string) { *s = d.next() }

// ByteString implements Fields; the bytes are a copy, nil when empty.
func (d *decoder) ByteString(p *[]byte) {
	if raw := d.next(); len(raw) > 0 {
		*p = []byte(raw)
	}
}

// number reads the next varint with read (binary.Varint or
// binary.Uvarint); 0 once the record is corrupt.
func number[T int64 | uint64](d *decoder, read func([]byte) (T, int)) T {
	if d.err != nil {
		return 0
	}
	v, n := read(d.b)
	if n <= 0 {
		d.err = ErrCorrupt
		return 0
	}
	d.skip(n)
	return v
}

// Time implements Fields; decoded times are UTC.
func (d *decoder) Time(t *time.Time) {
	if v := number(d, binary.Varint); v != 0 {
		*t = time.UnixMicro(v).UTC()
	}
}

// List implements Fields.
func (d *decoder) List(l *[]string) {
	n := d.length() // each string takes at least one byte: bounded by the input
	if n == 0 {
		return
	}
	*l = make([]string, n)
	for i := range *l {
		d.String(&(*l)[i])
	}
}

// Uint implements Fields.
func (d *decoder) Uint(v *uint64) { *v = number(d, binary.Uvarint) }
