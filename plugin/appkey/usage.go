package appkey

import (
	"context"
	"encoding/binary"
	"hash/maphash"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/storage"
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

// usageFlushInterval is how often noted key uses are written to the
// store; a key's last_used_at is therefore written at most once per
// interval, and never on the request path.
const usageFlushInterval = time.Minute

// notedSlots is the size of Service.noted (a power of two).
const notedSlots = 1 << 16

// notedSeed keys the hash that picks a key's slot in Service.noted.
var notedSeed = maphash.MakeSeed()

// noteUse hands the use of the key named name to the background writer,
// at most once a minute per key on the common path: no lock and no write.
// Service.noted remembers, per slot, which key (a 32-bit hash of its
// name) was last noted and when (Unix seconds): a table of integers, so
// that the garbage collector has nothing to scan in it. Two keys sharing
// a slot are only noted more often than once a minute, never less.
func (s *Service) noteUse(name string, now time.Time) {
	h := maphash.String(notedSeed, name)
	slot := &s.noted[h&(notedSlots-1)]
	tag, sec := uint32(h>>32), uint32(now.Unix()) //nolint:gosec // G115: seconds modulo 2^32; only differences are used
	for {
		last := slot.Load()
		if uint32(last>>32) == tag && sec-uint32(last) < uint32(usageFlushInterval/time.Second) { //nolint:gosec // G115: the low half is the seconds noted
			return // this key was noted within the interval
		}
		if slot.CompareAndSwap(last, uint64(tag)<<32|uint64(sec)) {
			break
		}
	}
	s.usageMu.Lock()
	s.usage = s.usage.add(name, now)
	s.usageMu.Unlock()
}

// usageBatch bounds the writes of one store batch.
const usageBatch = 512

// flushUsage writes the noted key uses.
func (s *Service) flushUsage(ctx context.Context) {
	s.usageMu.Lock()
	noted := s.usage
	s.usage = nil
	s.usageMu.Unlock()
	pending := noted.latest()
	ops := make([]storage.Op, 0, min(len(pending), usageBatch))
	write := func() {
		if err := s.store.Batch(ctx, ops); err != nil {
			s.engine.Logger.Warn("recording application key use failed", zap.Int("keys", len(ops)), zap.Error(err))
		}
		ops = ops[:0]
	}
	for name, t := range pending {
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: usedPrefix + name, Value: t.UTC().AppendFormat(nil, time.RFC3339)})
		if len(ops) == usageBatch {
			write()
		}
	}
	if len(ops) > 0 {
		write()
	}
}
