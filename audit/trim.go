package audit

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/counters"
)

// The audit log's size (Settings.MaxBytes): the writer counts the bytes
// of the events it stores (their keys and JSON) in one store counter an
// hour (counters.AuditBytes), which expires with the last event of its
// hour, so that the sum of the live counters is the size of the events
// still kept, across restarts and the instances of a cluster, with no
// scan of the events. Every sizeReadInterval the writer reads that sum;
// past MaxBytes it deletes the oldest trimmable events (Event.trimmable),
// a span of event times at a time (up to a minute), fewer than trimChunk
// a store batch (each
// tick for at most trimBudget, so that the writer keeps taking events),
// until the log is under nine tenths of MaxBytes or no trimmable event is
// left. Past MaxBytes, what it stored since the last read starts that at
// once.

// errTrimLocked says that another instance holds trimLockKey.
var errTrimLocked = errors.New("audit: another instance is deleting the oldest refusals")

// trimmableMark is in the key of an event MaxBytes may delete (eventKey).
const trimmableMark = "r"

// sizeReadInterval is how often the writer reads the audit log's size
// (Options.sizeReadInterval, set by the tests, overrides it for one Log,
// so that tests reading it every 20 ms can run in parallel).
const sizeReadInterval = 10 * time.Second

// trimChunk is the most events one store batch deletes.
const trimChunk = 2048

// trimSettled is how old an event time must be for a pass to take it
// that no event of that time is still to be stored (queued, or in a
// batch under way), and skip the times before it from then on.
const trimSettled = time.Minute

// trimRecordInterval is the least time between two events that record
// deletions (and their warnings): those events are never deleted early,
// and a flood that goes on must not make many.
const trimRecordInterval = 10 * time.Minute

// trimBudget bounds the time a tick of the writer spends deleting: the
// events recorded meanwhile wait in the queue.
const trimBudget = 50 * time.Millisecond

// trimStep is the widest span of event times whose trimmable events one
// chunk deletes together (all of them, fewer than trimChunk: a span that
// holds more is halved, down to a millisecond), oldest span first.
const trimStep = time.Minute

// trimLockKey holds, while an instance deletes a chunk, a value of its
// own (Log.trimToken): instances sharing a store (Redis) never delete
// the same events together, which would take their bytes off the
// counters twice.
const trimLockKey = "auditlock/trim"

// newTrimToken is a writer's own value for trimLockKey.
func newTrimToken() []byte {
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	return token
}

// trimmable reports whether Settings.MaxBytes may delete the event before
// its retention: an allowed request, and a refusal that anyone can cause
// (isRefusal), its summaries too. Never a change, a credential's
// lifecycle, a second factor checked, a lockout, a console user's action,
// or a success that a credential's holder repeats (a token grant).
func (e *Event) trimmable() bool {
	return e.Outcome == OutcomeAllowed || e.Outcome != OutcomeSuccess && (e.Count > 0 || e.isRefusal())
}

// trimmableKey reports whether an event's key says it is trimmable.
func trimmableKey(key string) bool {
	h := strings.TrimPrefix(key, keyPrefix)
	return len(h) == 33 && h[16:17] == trimmableMark
}

// trimRun is what deletions past MaxBytes took.
type trimRun struct {
	events      int
	bytes       int64
	first, last time.Time
}

// Bytes is the size of the audit log's stored events (their keys and
// JSON, as the store's counters had it when the writer last read them,
// and what it wrote since): what Settings.MaxBytes bounds.
func (l *Log) Bytes() int64 { return l.size.Load() }

// Trimmed is the number of events this writer deleted before their
// retention to keep the audit log under Settings.MaxBytes.
func (l *Log) Trimmed() uint64 { return l.trimmed.Load() }

// countBytes adds the bytes of ops, just stored, to the counters of
// their events' hours (times, in the order of ops). A trimmable event
// stored with a time a pass has gone past (trimmedTo: an event kept while
// the store was down, written once it answers) takes the passes back to
// its time, so that it is not skipped until a restart, and the pass
// under way (trimFrom) back to it.
func (l *Log) countBytes(ops []storage.Op, times []time.Time, retention time.Duration) {
	var hour time.Time
	var n int64
	for i, op := range ops {
		if trimmableKey(op.Key) {
			if times[i].Before(l.trimmedTo) {
				l.trimmedTo = times[i]
			}
			if times[i].Before(l.trimFrom) {
				l.trimFrom = times[i]
			}
		}
		if h := times[i].UTC().Truncate(time.Hour); !h.Equal(hour) {
			l.addBytes(hour, n, retention)
			hour, n = h, 0
		}
		n += int64(len(op.Key) + len(op.Value))
	}
	l.addBytes(hour, n, retention)
}

// addBytes adds n (negative: deleted) to the counter of hour, which is
// kept until the events of the hour expire.
func (l *Log) addBytes(hour time.Time, n int64, retention time.Duration) {
	ttl := time.Until(hour.Add(time.Hour + retention))
	if n == 0 || ttl <= 0 {
		return
	}
	l.size.Add(n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := l.store.Incr(ctx, counters.AuditBytes(hour), n, ttl); err != nil {
		l.log().Warn("the audit log's size could not be counted in the store: audit_max_size sees it off by these bytes until they expire",
			zap.Int64("bytes", n), zap.Error(err))
	}
}

// hourBytes is one hour's counter.
type hourBytes struct {
	hour  time.Time
	bytes int64
}

// readSize returns the store's counters of the audit log's bytes, oldest
// hour first, and their sum.
func (l *Log) readSize(ctx context.Context) ([]hourBytes, int64, error) {
	var hours []hourBytes
	var total int64
	err := l.store.Scan(ctx, counters.AuditBytesPrefix, func(e storage.Entry) error {
		secs, err := strconv.ParseInt(strings.TrimPrefix(e.Key, counters.AuditBytesPrefix), 16, 64)
		n, nerr := strconv.ParseInt(string(e.Value), 10, 64)
		if err == nil && nerr == nil && n > 0 {
			hours = append(hours, hourBytes{hour: time.Unix(secs, 0).UTC(), bytes: n})
			total += n
		}
		return nil
	})
	return hours, total, err
}

// watchSize reads the audit log's size when it is due, or at once when
// what the writer stored since the last read took it past MaxBytes, and
// then deletes the oldest trimmable events, for at most trimBudget a
// tick, in a pass that goes on until the log is under nine tenths of
// MaxBytes; it returns the event that records the deletions when one is
// due (recordTrimmed).
func (l *Log) watchSize(now time.Time) (Event, bool) {
	limit := l.maxBytes.Load()
	grown := limit > 0 && l.size.Load() > limit && !l.overLimit
	if now.Before(l.sizeReadBy) && !grown || now.Before(l.storeDownUntil) || len(l.backlog) > 0 {
		return Event{}, false
	}
	l.sizeReadBy = now.Add(l.sizeReadEvery)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hours, total, err := l.readSize(ctx)
	if err != nil {
		return Event{}, false // the store is failing: the writes say so
	}
	l.size.Store(total)
	if limit > 0 && total > limit-limit/10 && (total > limit || l.trimming.Load()) {
		for deadline := now.Add(trimBudget); ; {
			more, freed, err := l.trimChunk(ctx, hours, total, limit, deadline)
			if errors.Is(err, errTrimLocked) {
				return Event{}, false // the next read tells whether the other did enough
			}
			if err != nil {
				l.log().Error("deleting the oldest refusals past audit_max_size", zap.Error(err))
				return Event{}, false
			}
			total -= freed
			if l.trimming.Store(more); !more {
				break
			}
			if time.Now().After(deadline) {
				l.sizeReadBy = now // the next tick goes on
				return Event{}, false
			}
		}
	}
	if !l.trimming.Load() {
		l.trimFrom = time.Time{} // the next pass looks from trimmedTo again
	}
	l.warnOverLimit(limit > 0 && l.size.Load() > limit, limit)
	return l.recordTrimmed(now, limit, false)
}

// warnOverLimit logs when the audit log stays over limit with no
// trimmable event left (and when that ends): the events MaxBytes never
// deletes exceed it.
func (l *Log) warnOverLimit(over bool, limit int64) {
	if over == l.overLimit {
		return
	}
	l.overLimit = over
	if over {
		l.log().Warn("the audit log is over audit_max_size with no refusal left to delete: the events it never deletes (changes, credential lifecycle, second factors) are kept for audit_retention",
			zap.Int64("audit_max_size", limit), zap.Int64("audit_bytes", l.size.Load()))
		return
	}
	l.log().Info("the audit log is within audit_max_size again", zap.Int64("audit_max_size", limit), zap.Int64("audit_bytes", l.size.Load()))
}

// trimChunk deletes the oldest trimmable events, fewer than trimChunk:
// those of the oldest span of times that has some, the span narrowed
// (trimWidth, down to a millisecond) while it holds trimChunk or more, or
// more bytes than the log must shed to be under nine tenths of limit
// (total before the chunk). It returns their bytes and whether the log
// may still be over that with some left. Past deadline it stops looking
// through hours and spans without any (a month of hours holding only
// events never trimmed, after a restart) and returns more with nothing
// freed: the next tick goes on from there (trimFrom, and trimmedTo
// for the settled times), and the writer takes the events recorded
// meanwhile. A pass never looks again at the spans it found empty or
// emptied: each chunk and tick starts where the last stopped, also in
// the last minute, which trimmedTo does not cover (a dense flood there
// took a chunk a walk from the minute's start, longer than trimBudget
// when the store's scans are slow, and nothing was deleted until the
// minute settled).
func (l *Log) trimChunk(ctx context.Context, hours []hourBytes, total, limit int64, deadline time.Time) (more bool, freed int64, err error) {
	token := l.trimToken
	locked, err := l.store.CompareAndSwap(ctx, trimLockKey, nil, token, time.Minute)
	if err == nil && !locked {
		// Still this writer's own, when an earlier taking of it applied
		// though its answer was lost, or giving it back was lost (a
		// timeout): taken again, not waited out for its minute.
		locked, err = l.store.CompareAndSwap(ctx, trimLockKey, token, token, time.Minute)
	}
	if err != nil {
		return false, 0, err
	}
	if !locked {
		return false, 0, errTrimLocked
	}
	defer func() { _, _ = l.store.CompareAndSwap(context.WithoutCancel(ctx), trimLockKey, token, nil, 0) }()
	now := time.Now()
	for _, h := range hours {
		end := h.hour.Add(time.Hour)
		from := h.hour
		if l.trimmedTo.After(from) {
			from = l.trimmedTo // a pass of this writer left no trimmable event before
		}
		if l.trimFrom.After(from) {
			from = l.trimFrom // nor did the pass under way, in times not yet settled
		}
		if !from.Before(end) {
			continue
		}
		// One look at the rest of the hour, which stops at its newest
		// trimmable event, spares an hour without any (what a pass left,
		// only events never trimmed) the walk through its minutes.
		if keys, _, _, err := l.trimmableIn(ctx, from, end, 0); err != nil {
			return false, 0, err
		} else if len(keys) == 0 {
			if !end.After(now.Add(-trimSettled)) {
				l.trimmedTo = end
			}
			if time.Now().After(deadline) {
				return true, 0, nil
			}
			continue
		}
		for from.Before(end) && !from.After(now) {
			to := from.Add(l.trimWidth)
			if to.After(end) {
				to = end
			}
			keys, bytes, full, err := l.trimmableIn(ctx, from, to, total-(limit-limit/10))
			if err != nil {
				return false, 0, err
			}
			if full && l.trimWidth > time.Millisecond {
				l.trimWidth /= 2 // some of them may be newer than others left
				continue
			}
			if !to.After(now.Add(-trimSettled)) && !full {
				l.trimmedTo = to
			}
			if len(keys) == 0 {
				from, l.trimWidth = to, min(2*l.trimWidth, trimStep)
				l.trimFrom = from
				if time.Now().After(deadline) {
					return true, 0, nil
				}
				continue
			}
			if err := l.deleteEvents(ctx, keys); err != nil {
				return false, 0, err
			}
			l.trimFrom = to // none left before
			l.addBytes(h.hour, -bytes, time.Duration(l.retention.Load()))
			l.trimmed.Add(uint64(len(keys)))
			l.noteTrimmed(keys, bytes)
			if !full && len(keys) < trimChunk/4 {
				l.trimWidth = min(2*l.trimWidth, trimStep)
			}
			return total-bytes > limit-limit/10, bytes, nil
		}
	}
	return false, 0, nil
}

// trimmableIn returns the keys of the trimmable events of [from, to),
// newest first, and their bytes as countBytes counted them: all of them,
// or, when they are trimChunk or more or their bytes more than need,
// the newest of them up to there (full).
func (l *Log) trimmableIn(ctx context.Context, from, to time.Time, need int64) (keys []string, bytes int64, full bool, err error) {
	err = l.scanOlder(ctx, to, func(e storage.Entry) error {
		var ev struct {
			Time time.Time `json:"time"`
		}
		if err := json.Unmarshal(e.Value, &ev); err == nil && ev.Time.Before(from) {
			return storage.ErrStopScan
		}
		if trimmableKey(e.Key) {
			keys = append(keys, e.Key)
			bytes += int64(len(e.Key) + len(e.Value))
		}
		if full = len(keys) == trimChunk || bytes > need; full {
			return storage.ErrStopScan
		}
		return nil
	})
	return keys, bytes, full, err
}

// deleteEvents deletes the events of keys in one store batch.
func (l *Log) deleteEvents(ctx context.Context, keys []string) error {
	ops := make([]storage.Op, len(keys))
	for i, k := range keys {
		ops[i] = storage.Op{Kind: storage.OpDelete, Key: k}
	}
	return l.store.Batch(ctx, ops)
}

// noteTrimmed adds the events of keys, just deleted, to those not yet
// recorded.
func (l *Log) noteTrimmed(keys []string, bytes int64) {
	oldest, newest := keyEventTime(keys[len(keys)-1]), keyEventTime(keys[0])
	if l.unrecorded.events == 0 || oldest.Before(l.unrecorded.first) {
		l.unrecorded.first = oldest
	}
	if newest.After(l.unrecorded.last) {
		l.unrecorded.last = newest
	}
	l.unrecorded.events += len(keys)
	l.unrecorded.bytes += bytes
}

// keyEventTime is the event time an event key holds (keyTime inverted).
func keyEventTime(key string) time.Time {
	inverted, _ := strconv.ParseUint(strings.TrimPrefix(key, keyPrefix)[:16], 16, 64)
	return time.Unix(0, int64(uint64(math.MaxInt64)-inverted)).UTC() //nolint:gosec // G115: keyTime's inverse
}

// recordTrimmed returns the event that records the deletions not yet
// recorded, when there are some, no pass is under way and the last
// such event is trimRecordInterval old (at once when final: the writer
// closes); a warning names the option.
func (l *Log) recordTrimmed(now time.Time, limit int64, final bool) (Event, bool) {
	run := l.unrecorded
	if run.events == 0 || !final && (l.trimming.Load() || now.Sub(l.lastTrimRecord) < trimRecordInterval) {
		return Event{}, false
	}
	l.unrecorded, l.lastTrimRecord = trimRun{}, now
	l.log().Warn("the audit log reached audit_max_size: its oldest refusals (and allowed requests) were deleted before their retention",
		zap.Int64("audit_max_size", limit), zap.Int("events", run.events), zap.Int64("bytes", run.bytes),
		zap.Time("oldest", run.first), zap.Time("newest", run.last), zap.Int64("audit_bytes", l.size.Load()))
	return Event{Time: now.UTC(), Kind: KindAdmin, Outcome: OutcomeSuccess, Count: run.events, First: run.first,
		Reason: fmt.Sprintf("audit_max_size (%d bytes): refusals and allowed requests from %s to %s deleted before their retention",
			limit, run.first.Format(time.RFC3339), run.last.Format(time.RFC3339))}, true
}
