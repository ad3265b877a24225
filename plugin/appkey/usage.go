package appkey

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"iter"
	"maps"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/tagged"
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
// store, never on the request path.
const usageFlushInterval = time.Minute

// usagePrecision is how closely a key's stored last_used_at follows its
// uses: the record holds the first use within the key's current window of
// this length (see usageWindow), and is written at most once a window.
//
// An hour, not a minute: last_used_at answers "which keys are no longer
// used" (the audit log has every request), and with many keys in use a
// record a minute per key was most of what the store wrote. A million keys
// drawn at random had each minute's uses rewrite most of the usage records'
// key range in Badger's compactions (6 s of CPU a minute, docs/benchmarks.md)
// and, in a cluster, cost one Redis write and invalidation per key.
const usagePrecision = time.Hour

// usageWindow is the number of the window of the key named name that
// holds t: windows are usagePrecision long, and each key's start at its
// own offset into the hour, from a hash of its name that every instance of
// a cluster computes alike. Windows shared by every key would start
// together, and the first use of each key in a new one, with its write,
// would all fall in the hour's first minutes.
func usageWindow(name string, t time.Time) int64 {
	const seconds = int64(usagePrecision / time.Second)
	return (t.Unix() + int64(fnv1a(name)%uint64(seconds))) / seconds //nolint:gosec // G115: the offset is below seconds
}

// fnv1a is the 64-bit FNV-1a hash of s: fixed, unlike maphash's seeds,
// so that every process picks a key's window alike.
func fnv1a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}

// notedBits is the number of bits that pick a slot of Service.noted, of
// notedSlots.
const (
	notedBits  = 16
	notedSlots = 1 << notedBits
)

// notedSeed keys the hash that picks a key's slot in Service.noted.
var notedSeed = maphash.MakeSeed()

// noteUse hands the use of the key named name to the background writer,
// at most once a usageWindow per key on the common path: no lock and no
// write. Service.noted remembers, per slot, a 64-bit mark of the key and
// the window last noted there (notedMark): a table of integers, so that
// the garbage collector has nothing to scan in it. A use is skipped only
// when its slot holds its own mark (this key, this window): two keys
// sharing a slot are only noted more often, never less (the flush then
// skips the uses whose window is already recorded).
func (s *Service) noteUse(name string, now time.Time) {
	s.noteHashed(maphash.String(notedSeed, name), name, now)
}

// noteHashed is noteUse of the key named name, whose name hashes to h.
func (s *Service) noteHashed(h uint64, name string, now time.Time) {
	mark := notedMark(h, usageWindow(name, now))
	slot := &s.noted[mark>>(64-notedBits)]
	if slot.Load() == mark || slot.Swap(mark) == mark {
		return // this key was noted within this window
	}
	s.usageMu.Lock()
	s.usage = s.usage.add(name, now)
	s.usageMu.Unlock()
}

// notedMark is what Service.noted holds for the key whose name hashes to
// h, noted within its window numbered window: the hash mixed with the
// window by a bijection (murmur3's finalizer), so that the marks of two
// keys, or of one key in two windows, agree only by a chance of 2^-63 (the
// low bit is always set: no mark is an empty slot's 0).
// (Marks once kept 32 bits of the hash, and a slot took 16 more: two keys
// agreeing in those 48 bits shared one mark for the process's life, and
// the rarer one's uses went unnoted while the other was used each minute.)
func notedMark(h uint64, window int64) uint64 {
	x := h ^ uint64(window)*0x9e3779b97f4a7c15 //nolint:gosec // G115: any bits of the window do
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x | 1
}

// usageBatch bounds the reads and writes of one store batch.
const usageBatch = 512

// usageClockSlack is how far past this instance's clock a stored use may
// lie and still count: a record further ahead (written by a clock that
// ran ahead) is written over, lest it pass for a recent use until real
// time catches up with it.
const usageClockSlack = 5 * time.Minute

// pendingUse is a key's use to be written, within one batch of the flush.
type pendingUse struct {
	key      string // usedPrefix and the key's name
	at       time.Time
	recorded bool // the store holds a use within at's window or a later one
}

// name is the name of u's key.
func (u *pendingUse) name() string { return u.key[len(usedPrefix):] }

// flushUsage writes the noted key uses, one batch at a time as it reads
// the log: a minute's uses may name hundreds of thousands of keys, and
// only one batch is ever built (a map of them all, built first, held 34 MB
// more at once for 200 000 keys). Within a batch a key counts once, at the
// first use of its latest window (usageWindow); a key noted again after
// its batch (its slot in Service.noted was shared) is counted again later.
// A use is written only when the stored record is of an earlier window of
// the key (or absent); see markRecorded. The uses of a batch that fails
// are noted again at their keys' next use. A batch that fails once ctx is
// done (the flush ran past its minute, or the service stopped) ends the
// flush: the rest is dropped with one warning, not one failed batch after
// another, and noted again too. A store that still writes (Badger does
// not consult ctx) gets every use, as a reload must not lose them.
func (s *Service) flushUsage(ctx context.Context) {
	s.usageMu.Lock()
	noted := s.usage
	s.usage = nil
	s.usageMu.Unlock()
	if len(noted) == 0 {
		return
	}
	deleted := s.deletions()
	batch := make([]pendingUse, 0, usageBatch)
	inBatch := make(map[string]int, usageBatch) // name → its use in batch
	keys := make([]string, 0, usageBatch)
	ops := make([]storage.Op, 0, usageBatch)
	// write writes the batch's uses not yet recorded and reports whether
	// the flush can go on.
	write := func() bool {
		defer func() { batch = batch[:0]; clear(inBatch) }()
		keys, ops = keys[:0], ops[:0]
		for _, u := range batch {
			keys = append(keys, u.key)
		}
		s.markRecorded(ctx, batch, keys, deleted)
		for _, u := range batch {
			if !u.recorded {
				ops = append(ops, storage.Op{Kind: storage.OpPut, Key: u.key, Value: u.at.UTC().AppendFormat(nil, time.RFC3339)})
			}
		}
		if len(ops) == 0 {
			return true
		}
		err := s.store.Batch(ctx, ops)
		if err == nil {
			return true
		}
		s.engine.Logger.Warn("recording application key use failed", zap.Int("keys", len(ops)), zap.Error(err))
		for _, u := range batch {
			if !u.recorded {
				s.forgetNoted(u.name(), u.at) // noted again at its next use
			}
		}
		return ctx.Err() == nil
	}
	for name, t := range noted.uses() {
		if at, ok := deleted[string(name)]; ok && !t.After(at) {
			continue // a use of the key deleted since, not of one created again under its name
		}
		if i, ok := inBatch[string(name)]; ok {
			u := &batch[i]
			if w, v := usageWindow(u.name(), t), usageWindow(u.name(), u.at); w > v || w == v && t.Before(u.at) {
				u.at = t // the first use of the latest window
			}
			continue
		}
		key := usedPrefix + string(name)
		inBatch[key[len(usedPrefix):]] = len(batch)
		batch = append(batch, pendingUse{key: key, at: t})
		if len(batch) == usageBatch && !write() {
			s.engine.Logger.Warn("recording application key use stopped; the uses not yet written are dropped until the keys are used again", zap.Error(ctx.Err()))
			for name, t := range noted.uses() {
				s.forgetNoted(string(name), t)
			}
			return
		}
	}
	if len(batch) > 0 {
		write()
	}
}

// markRecorded reads the records of batch's keys (keys, in one round
// trip) and marks the uses already recorded: those whose record holds a
// use within the same window of the key or a later one (a record of the
// same window holds its first use; a later one, from another instance
// whose clock is ahead, is not moved back), unless that use lies more than
// usageClockSlack past this instance's clock, or was a use of a key
// deleted since (deleted, see deletions). Records that cannot be read
// count as absent: the writes that follow report the store's trouble, and
// a use is never dropped because of it; a forged record (tagged's
// ErrTampered) is logged and written over.
func (s *Service) markRecorded(ctx context.Context, batch []pendingUse, keys []string, deleted map[string]time.Time) {
	latest := s.now().Add(usageClockSlack)
	err := s.store.Backend().GetMany(ctx, keys, func(i int, raw []byte) error {
		stored, err := time.Parse(time.RFC3339, string(raw))
		u := &batch[i]
		deletedAt, gone := deleted[u.name()]
		ofDeletedKey := gone && !stored.After(deletedAt)
		u.recorded = err == nil && !stored.After(latest) && !ofDeletedKey &&
			usageWindow(u.name(), stored) >= usageWindow(u.name(), u.at)
		return nil
	})
	if err != nil {
		if errors.Is(err, tagged.ErrTampered) {
			s.engine.Logger.Error("an application key's last-use record failed authentication (written without the keystore); the batch's uses are written over it", zap.Error(err))
		}
		for i := range batch {
			batch[i].recorded = false
		}
	}
}

// noteDeleted records that the key named name was deleted now, for an
// hour (usagePrecision), so that a key created again under the name has
// its own first use recorded: the flush drops the uses noted before the
// deletion, and counts as absent a record of one written after it (by a
// flush already under way). An hour is enough: a use of the new key more
// than an hour after the deletion falls in a later window than any use of
// the old one. (Only this instance knows of the deletion: a use of the old
// key noted by another instance of a cluster, and written after the
// deletion, still hides the new key's uses in that window; so does one
// written by this instance after a reload, which starts with no
// deletions.)
func (s *Service) noteDeleted(name string) {
	now := s.now()
	s.deletedMu.Lock()
	if s.deleted == nil {
		s.deleted = map[string]time.Time{}
	}
	s.deleted[name] = now
	s.deletedMu.Unlock()
	s.forgetNoted(name, now)
}

// deletions returns the keys deleted here within the last hour and when
// (see noteDeleted), forgetting older deletions; nil when there are none.
func (s *Service) deletions() map[string]time.Time {
	s.deletedMu.Lock()
	defer s.deletedMu.Unlock()
	since := s.now().Add(-usagePrecision)
	maps.DeleteFunc(s.deleted, func(_ string, at time.Time) bool { return at.Before(since) })
	if len(s.deleted) == 0 {
		return nil
	}
	return maps.Clone(s.deleted)
}

// forgetNoted clears the key named name's mark for at's window in
// Service.noted, so that its next use in the window is noted again: after
// its write failed, or after the key was deleted (a key created again
// under the name has its first use noted).
func (s *Service) forgetNoted(name string, at time.Time) {
	mark := notedMark(maphash.String(notedSeed, name), usageWindow(name, at))
	s.noted[mark>>(64-notedBits)].CompareAndSwap(mark, 0)
}
