package appkey

import (
	"context"
	"encoding/binary"
	"hash/maphash"
	"iter"
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

// uses yields every use in the log, oldest first: the key's name (a view
// of the log, valid during the call) and the time of the use.
func (l usageLog) uses() iter.Seq2[[]byte, time.Time] {
	return func(yield func([]byte, time.Time) bool) {
		for len(l) > 0 {
			n, size := binary.Uvarint(l)
			if size <= 0 || uint64(len(l)-size) < n+8 { //nolint:gosec // G115: size <= len(l)
				return // cannot happen: add wrote every byte
			}
			name := l[size : size+int(n)]                        //nolint:gosec // G115: n+8 <= len(l)-size, checked above
			l = l[size+int(n):]                                  //nolint:gosec // G115: as above
			t := time.Unix(0, int64(binary.BigEndian.Uint64(l))) //nolint:gosec // G115: add wrote an int64
			l = l[8:]
			if !yield(name, t) {
				return
			}
		}
	}
}

// usageFlushInterval is how often noted key uses are written to the
// store; a key's last_used_at is therefore written at most once per
// interval, and never on the request path.
const usageFlushInterval = time.Minute

// notedBits is the number of bits that pick a slot of Service.noted, of
// notedSlots.
const (
	notedBits  = 16
	notedSlots = 1 << notedBits
)

// notedSeed keys the hash that picks a key's slot in Service.noted.
var notedSeed = maphash.MakeSeed()

// noteUse hands the use of the key named name to the background writer,
// at most once a minute per key on the common path: no lock and no write.
// Service.noted remembers, per slot, a 64-bit mark of the key and the
// minute last noted there (notedMark): a table of integers, so that the
// garbage collector has nothing to scan in it. A use is skipped only when
// its slot holds its own mark (this key, this minute): two keys sharing a
// slot are only noted more often than once a minute, never less.
func (s *Service) noteUse(name string, now time.Time) {
	s.noteHashed(maphash.String(notedSeed, name), name, now)
}

// noteHashed is noteUse of the key named name, whose name hashes to h.
func (s *Service) noteHashed(h uint64, name string, now time.Time) {
	mark := notedMark(h, now)
	slot := &s.noted[mark>>(64-notedBits)]
	if slot.Load() == mark || slot.Swap(mark) == mark {
		return // this key was noted within this minute
	}
	s.usageMu.Lock()
	s.usage = s.usage.add(name, now)
	s.usageMu.Unlock()
}

// notedMark is what Service.noted holds for the key whose name hashes to
// h, noted within now's minute: the hash mixed with the minute by a
// bijection (murmur3's finalizer), so that the marks of two keys, or of
// one key in two minutes, agree only by a chance of 2^-63 (the low bit is
// always set: no mark is an empty slot's 0).
// (Marks once kept 32 bits of the hash, and a slot took 16 more: two keys
// agreeing in those 48 bits shared one mark for the process's life, and
// the rarer one's uses went unnoted while the other was used each minute.)
func notedMark(h uint64, now time.Time) uint64 {
	x := h ^ uint64(now.Unix()/60)*0x9e3779b97f4a7c15 //nolint:gosec // G115: any bits of the minute do
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x | 1
}

// usageBatch bounds the writes of one store batch.
const usageBatch = 512

// flushUsage writes the noted key uses, one batch at a time as it reads
// the log: a minute's uses may name hundreds of thousands of keys, and
// only one batch of records is ever built (a map of them all, built
// first, held 34 MB more at once for 200 000 keys: BenchmarkFlushUsage,
// 202 MB allocated a flush then, 168 MB now). Within a batch a key
// is written once, at its last use; a key noted again after its batch
// was written (its slot in Service.noted was shared) is written again
// later, so the last write is its last use. A batch that fails once ctx
// is done (the flush ran past its minute, or the service stopped) ends
// the flush: the rest is dropped with one warning, not one failed batch
// after another. A store that still writes (Badger does not consult ctx)
// gets every use, as a reload must not lose them.
func (s *Service) flushUsage(ctx context.Context) {
	s.usageMu.Lock()
	noted := s.usage
	s.usage = nil
	s.usageMu.Unlock()
	if len(noted) == 0 {
		return
	}
	ops := make([]storage.Op, 0, usageBatch)
	inBatch := make(map[string]int, usageBatch) // name → its op in ops
	// write writes ops and reports whether the flush can go on.
	write := func() bool {
		err := s.store.Batch(ctx, ops)
		if err != nil {
			s.engine.Logger.Warn("recording application key use failed", zap.Int("keys", len(ops)), zap.Error(err))
		}
		ops = ops[:0]
		clear(inBatch)
		if err != nil && ctx.Err() != nil {
			s.engine.Logger.Warn("recording application key use stopped; the uses not yet written are dropped", zap.Error(ctx.Err()))
			return false
		}
		return true
	}
	for name, t := range noted.uses() {
		value := t.UTC().AppendFormat(nil, time.RFC3339)
		if i, ok := inBatch[string(name)]; ok {
			ops[i].Value = value
			continue
		}
		key := usedPrefix + string(name)
		inBatch[key[len(usedPrefix):]] = len(ops)
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: key, Value: value})
		if len(ops) == usageBatch && !write() {
			return
		}
	}
	if len(ops) > 0 {
		write()
	}
}
