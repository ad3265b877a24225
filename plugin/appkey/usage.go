package appkey

import (
	"encoding/binary"
	"time"
)

// usageLog holds the key uses noted since the last flush, one after the
// other as [uvarint name length][name][UnixNano, 8 bytes big-endian].
//
// It is one pointer-free byte slice on purpose: the garbage collector never
// scans it. A map of the same uses (one per key used within the minute,
// hundreds of thousands with many keys in use) cost each collection as much
// marking as the whole key cache, on every route of the process.
type usageLog []byte

// add appends one use of the key name at t.
func (l usageLog) add(name string, t time.Time) usageLog {
	l = binary.AppendUvarint(l, uint64(len(name)))
	l = append(l, name...)
	return binary.BigEndian.AppendUint64(l, uint64(t.UnixNano()))
}

// latest returns each key's last use in the log (a key appears more than
// once when its cache entry was refilled within the minute). The map is
// built by the background writer and dropped once written.
func (l usageLog) latest() map[string]time.Time {
	last := map[string]time.Time{}
	for len(l) > 0 {
		n, size := binary.Uvarint(l)
		if size <= 0 || uint64(len(l)-size) < n+8 { //nolint:gosec // G115: size <= len(l)
			break // cannot happen: add wrote every byte
		}
		name := string(l[size : size+int(n)])                //nolint:gosec // G115: n+8 <= len(l)-size, checked above
		l = l[size+int(n):]                                  //nolint:gosec // G115: as above
		t := time.Unix(0, int64(binary.BigEndian.Uint64(l))) //nolint:gosec // G115: add wrote an int64
		l = l[8:]
		last[name] = t
	}
	return last
}
