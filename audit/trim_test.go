package audit

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/redis"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// cappedLog is a writer on a new Badger store that stores every refusal
// on its own and reads its size every 20 ms, with MaxBytes maxBytes.
func cappedLog(t *testing.T, maxBytes int64) (*Log, storage.Store, *observer.ObservedLogs) {
	t.Helper()
	return cappedLogOn(t, badgerStore(t), maxBytes)
}

// redisStore is a store on a new Redis server.
func redisStore(t *testing.T) storage.Store {
	t.Helper()
	st, err := redis.Open(context.Background(), redistest.Start(t).URL(), redis.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// cappedLogOn is cappedLog on st.
func cappedLogOn(t *testing.T, st storage.Store, maxBytes int64) (*Log, storage.Store, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	l := New(st, zap.New(core), Options{FlushInterval: 10 * time.Millisecond, sizeReadInterval: 20 * time.Millisecond,
		Settings: Settings{RefusalsPerMinute: everyRefusal.RefusalsPerMinute, MaxBytes: maxBytes}})
	t.Cleanup(l.Close)
	return l, st, logs
}

// storedBytes is the keys and values of the events the store holds.
func storedBytes(t *testing.T, st storage.Store) int64 {
	t.Helper()
	var n int64
	if err := st.Scan(context.Background(), keyPrefix, func(e storage.Entry) error {
		n += int64(len(e.Key) + len(e.Value))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// settled waits until the writer's size has stayed the same over two
// reads, with no pass under way (one may look through hours without
// deleting for several ticks), and returns it.
func settled(t *testing.T, l *Log) int64 {
	t.Helper()
	last := int64(-1)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		l.Flush()
		time.Sleep(4 * l.sizeReadEvery)
		if n := l.Bytes(); n == last && !l.trimming.Load() {
			return n
		}
		last = l.Bytes()
	}
	t.Fatalf("the audit log's size never settled (%d bytes)", last)
	return 0
}

// TestAFloodIsTrimmedToMaxBytes: past MaxBytes, the oldest refusals go
// first, until the log is under it: 40 a minute, or 6 000 in a minute
// (more than one chunk deletes); a change, a
// checked second factor, a console user's refusal and a token grant, all
// older than every refusal, stay; a summary event counts the deletions,
// a warning names the option, and the size the writer reports is what
// the store holds. Badger and Redis alike.
func TestAFloodIsTrimmedToMaxBytes(t *testing.T) {
	parallel(t)
	for name, store := range map[string]func(*testing.T) storage.Store{"badger": badgerStore, "redis": redisStore} {
		for flood, every := range map[int]time.Duration{2400: 1500 * time.Millisecond, 6000: 10 * time.Millisecond} {
			t.Run(fmt.Sprintf("%s, %d every %v", name, flood, every), func(t *testing.T) {
				parallel(t)
				floodIsTrimmed(t, store(t), flood, every)
			})
		}
	}
}

// floodIsTrimmed is TestAFloodIsTrimmedToMaxBytes on st with flood
// refusals, one every every.
func floodIsTrimmed(t *testing.T, st storage.Store, flood int, every time.Duration) {
	const maxBytes = 64 << 10
	l, _, logs := cappedLogOn(t, st, maxBytes)
	base := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Minute)
	kept := []Event{
		{Time: base, Kind: KindAdmin, Username: "alice", Outcome: OutcomeSuccess, Reason: "key rotated"},
		{Time: base, Kind: KindTwoFactor, Username: "alice", Outcome: OutcomeFailure, Reason: "wrong code", Summarise: SummariseNever},
		{Time: base, Kind: KindConsole, Username: "bob", Outcome: OutcomeDenied, Actor: "bob", Reason: "refused by the console"},
		{Time: base, Kind: KindToken, Credential: "connector:c1", Outcome: OutcomeSuccess, Reason: "token granted", Summarise: SummariseAlways},
	}
	for _, e := range kept {
		l.Record(e)
	}
	for i := range flood { // 250 bytes each
		l.Record(refusal(base.Add(time.Minute+time.Duration(i)*every), "192.0.2.1", "mallory", "/", strconv.Itoa(i)))
	}
	size := settled(t, l)
	if size > maxBytes || size != storedBytes(t, st) {
		t.Fatalf("the audit log holds %d bytes (%d stored), over MaxBytes %d", size, storedBytes(t, st), maxBytes)
	}
	events := stored(t, l)
	oldest, refusals, summaries := flood, 0, 0
	for _, e := range events {
		switch {
		case e.Kind == KindRequest:
			i, _ := strconv.Atoi(e.Reason)
			oldest = min(oldest, i)
			refusals++
		case e.Kind == KindAdmin && e.Count > 0:
			summaries++
			if !strings.HasPrefix(e.Reason, "audit_max_size") || e.First.Before(base) {
				t.Fatalf("the deletion's event: %+v", e)
			}
		}
	}
	t.Logf("size %d, %d refusals left, oldest #%d, trimmed %d, summaries %d", size, refusals, oldest, l.Trimmed(), summaries)
	if refusals == 0 || refusals != flood-oldest {
		t.Fatalf("%d refusals left, the oldest #%d: not the newest", refusals, oldest)
	}
	if summaries == 0 || int(l.Trimmed()) != oldest {
		t.Fatalf("%d events recorded the deletion of %d refusals (%d missing)", summaries, l.Trimmed(), oldest)
	}
	for _, want := range kept {
		found := false
		for _, e := range events {
			found = found || e.Kind == want.Kind && e.Reason == want.Reason
		}
		if !found {
			t.Fatalf("%s %q was deleted", want.Kind, want.Reason)
		}
	}
	if logs.FilterMessageSnippet("audit_max_size").FilterField(zap.Int64("audit_max_size", maxBytes)).Len() == 0 {
		t.Fatal("no warning names audit_max_size")
	}
}

// TestDeletionsAreRecordedAtMostEveryTenMinutes: the events that record
// deletions are never deleted early, so a flood that goes on makes one
// every ten minutes, not one a pass; Close records what is left, and
// the records count every deletion.
func TestDeletionsAreRecordedAtMostEveryTenMinutes(t *testing.T) {
	parallel(t)
	l, st, logs := cappedLog(t, 64<<10)
	base := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Minute)
	records := func(l *Log) (n, count int) {
		for _, e := range stored(t, l) {
			if e.Kind == KindAdmin && strings.HasPrefix(e.Reason, "audit_max_size") {
				n, count = n+1, count+e.Count
			}
		}
		return n, count
	}
	for round := range 2 {
		for i := range 1000 {
			l.Record(refusal(base.Add(time.Duration(round)*time.Hour+time.Duration(i)*time.Second), "192.0.2.1", "", "/", strconv.Itoa(i)))
		}
		settled(t, l)
		if n, count := records(l); n != 1 || count == 0 || count >= int(l.Trimmed()) && round == 1 {
			t.Fatalf("round %d: %d records of %d deletions, %d deleted", round, n, count, l.Trimmed())
		}
	}
	l.Close()
	again := New(st, zap.NewNop(), Options{})
	t.Cleanup(again.Close)
	if n, count := records(again); n != 2 || count != int(l.Trimmed()) {
		t.Fatalf("after Close: %d records of %d deletions; %d deleted", n, count, l.Trimmed())
	}
	if n := logs.FilterMessageSnippet("reached audit_max_size").Len(); n != 2 {
		t.Fatalf("%d warnings; want one a record", n)
	}
}

// TestWithoutMaxBytesNothingIsTrimmedButTheSizeIsCounted: the size is
// counted (for the metric) whatever MaxBytes, and nothing is deleted.
func TestWithoutMaxBytesNothingIsTrimmedButTheSizeIsCounted(t *testing.T) {
	parallel(t)
	l, st, _ := cappedLog(t, 0)
	for i := range 300 {
		l.Record(refusal(time.Now().UTC().Add(-2*time.Hour+time.Duration(i)*time.Second), "192.0.2.1", "", "/", fmt.Sprint(i)))
	}
	if size := settled(t, l); size == 0 || size != storedBytes(t, st) || len(stored(t, l)) != 300 || l.Trimmed() != 0 {
		t.Fatalf("size %d, stored %d bytes, %d events, %d trimmed", size, storedBytes(t, st), len(stored(t, l)), l.Trimmed())
	}
}

// TestEventsNeverTrimmedMayExceedMaxBytes: a log over MaxBytes with only
// events that are never deleted early keeps them all, and says so once.
func TestEventsNeverTrimmedMayExceedMaxBytes(t *testing.T) {
	parallel(t)
	l, _, logs := cappedLog(t, 1000)
	for i := range 20 {
		l.Record(Event{Kind: KindAdmin, Username: "alice", Outcome: OutcomeSuccess, Reason: fmt.Sprint("change ", i)})
	}
	settled(t, l)
	if n := len(stored(t, l)); n != 20 || l.Trimmed() != 0 {
		t.Fatalf("%d of 20 changes kept, %d trimmed", n, l.Trimmed())
	}
	if n := logs.FilterMessageSnippet("no refusal left to delete").Len(); n != 1 {
		t.Fatalf("%d warnings of a log over audit_max_size with nothing to delete", n)
	}
}

// TestWhatMaxBytesMayDelete: only allowed requests and the refusals
// anyone can cause (their summaries too), and the key says which, in a
// form the spill file takes back.
func TestWhatMaxBytesMayDelete(t *testing.T) {
	parallel(t)
	for _, c := range []struct {
		e    Event
		want bool
	}{
		{Event{Kind: KindRequest, Outcome: OutcomeAllowed}, true},
		{Event{Kind: KindRequest, Outcome: OutcomeDenied}, true},
		{Event{Kind: KindTLS, Outcome: OutcomeFailure}, true},
		{Event{Kind: KindTwoFactor, Outcome: OutcomeFailure, Summarise: SummariseAlways}, true},
		{Event{Kind: KindRequest, Outcome: OutcomeDenied, Count: 12}, true},
		{Event{Kind: KindTwoFactor, Outcome: OutcomeFailure, Count: 12}, true},
		{Event{Kind: KindTwoFactor, Outcome: OutcomeFailure}, false},
		{Event{Kind: KindTwoFactor, Outcome: OutcomeFailure, Summarise: SummariseNever}, false},
		{Event{Kind: KindConsole, Outcome: OutcomeDenied, Actor: "bob"}, false},
		{Event{Kind: KindToken, Outcome: OutcomeSuccess, Summarise: SummariseAlways}, false},
		{Event{Kind: KindToken, Outcome: OutcomeSuccess, Count: 3}, false},
		{Event{Kind: KindAdmin, Outcome: OutcomeSuccess}, false},
		{Event{Kind: KindAdmin, Outcome: OutcomeFailure}, false},
		{Event{Kind: KindAppKey, Outcome: OutcomeSuccess}, false},
	} {
		key := eventKey(time.Now(), c.e.trimmable())
		if c.e.trimmable() != c.want || trimmableKey(key) != c.want || !validEventKey(key) {
			t.Errorf("%+v: trimmable %v, key %s", c.e, c.e.trimmable(), key)
		}
	}
}

// TestInstancesSharingAStoreTakeTurns: two writers on one store (a
// cluster's instances on Redis) delete in turn, so none takes bytes off
// the counters that the other already took: the size they read is what
// the store holds.
func TestInstancesSharingAStoreTakeTurns(t *testing.T) {
	// Serial: a writer deletes for at most trimBudget (50 ms) a tick, and
	// beside the parallel tests (audit's and storage/redis's, on two
	// cores) those ticks bought nothing: none of the 4 000 refusals was
	// deleted within its 20 s, no store error logged.
	st := redisStore(t)
	a, _, _ := cappedLogOn(t, st, 64<<10)
	b, _, _ := cappedLogOn(t, st, 64<<10)
	base := time.Now().UTC().Add(-3 * time.Hour)
	for i := range 4000 {
		l := a
		if i%2 == 1 {
			l = b
		}
		l.Record(refusal(base.Add(time.Duration(i)*10*time.Millisecond), "192.0.2.1", "", "/", strconv.Itoa(i)))
	}
	a.Flush()
	b.Flush()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		held := storedBytes(t, st)
		if held <= 64<<10 && a.Bytes() == held && b.Bytes() == held && a.Trimmed()+b.Trimmed() > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the writers read %d and %d bytes; the store holds %d (%d and %d deleted)", a.Bytes(), b.Bytes(), held, a.Trimmed(), b.Trimmed())
		}
	}
}

// TestEventsStoredLateAreTrimmedToo: refusals stored after a pass went
// past their times (of the last minute, still queued then; or older:
// kept while the store was down, written once it answered) are deleted
// by the next pass all the same. The older ones were skipped until a
// restart: the log stayed over MaxBytes (a CI run, whose first pass took
// long enough for the late refusals' minute to count as settled).
func TestEventsStoredLateAreTrimmedToo(t *testing.T) {
	parallel(t)
	for name, late := range map[string]time.Duration{"of the last minute": 50 * time.Second, "older": 3 * time.Minute} {
		t.Run(name, func(t *testing.T) {
			parallel(t)
			l, st, _ := cappedLog(t, 64<<10)
			now := time.Now().UTC()
			for i := range 1000 {
				l.Record(refusal(now.Add(-40*time.Second+time.Duration(i)*10*time.Millisecond), "192.0.2.1", "", "/", strconv.Itoa(i)))
			}
			settled(t, l)
			for i := range 1000 {
				l.Record(refusal(now.Add(-late+time.Duration(i)*time.Millisecond), "192.0.2.2", "", "/", strconv.Itoa(i)))
			}
			if size := settled(t, l); size > 64<<10 || size != storedBytes(t, st) {
				t.Fatalf("the audit log holds %d bytes (%d stored) with MaxBytes %d", size, storedBytes(t, st), 64<<10)
			}
		})
	}
}

// TestARestartOverMaxBytesKeepsTakingEvents: a writer that starts with
// the log over MaxBytes, a month of hours holding only events never
// deleted early and the refusals in the last one, looks through those
// hours a tick's budget at a time: the events recorded meanwhile are
// stored within a few ticks (every refusal waits for the writer's queue),
// and the refusals go all the same. It looked through the whole month in
// one tick, and a Flush waited 5 s on a 2-core machine.
func TestARestartOverMaxBytesKeepsTakingEvents(t *testing.T) {
	// Serial: it bounds how long each Flush waits on the writer (3 s).
	st := badgerStore(t)
	first := New(st, zap.NewNop(), Options{Settings: everyRefusal})
	now := time.Now().UTC()
	for h := 1; h < 29*24; h++ {
		first.Record(Event{Time: now.Add(-time.Duration(h) * time.Hour), Kind: KindAdmin, Username: "alice", Outcome: OutcomeSuccess, Reason: fmt.Sprint("change ", h)})
	}
	for i := range 3000 {
		first.Record(refusal(now.Add(-30*time.Minute+time.Duration(i)*time.Millisecond), "192.0.2.1", "", "/", strconv.Itoa(i)))
	}
	first.Close()
	l, _, _ := cappedLogOn(t, st, 64<<10)
	start := time.Now()
	for time.Since(start) < 3*time.Second || l.Trimmed() == 0 {
		if time.Since(start) > time.Minute {
			t.Fatalf("no refusal deleted in a minute (%d bytes)", l.Bytes())
		}
		t0 := time.Now()
		l.Record(refusal(time.Now(), "192.0.2.9", "", "/", "probe"))
		l.Flush()
		// A pass takes at most trimBudget of a 200 ms tick: a Flush waited
		// up to 1.4 s under the race detector beside two busy loops on 2
		// cores (2.6 s once at a load of 15); the whole month in one tick
		// took 3.5–5 s on it idle.
		if waited := time.Since(t0); waited > 3*time.Second {
			t.Fatalf("a Flush waited %v on the writer (%v after its start)", waited, t0.Sub(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// slowScans is a store whose every Scan takes cost more: a round trip to
// Redis, or, in Caddy, the tagged store and cache over Badger.
type slowScans struct {
	storage.Store
	cost time.Duration
}

func (s slowScans) Scan(ctx context.Context, prefix string, fn func(storage.Entry) error) error {
	time.Sleep(s.cost)
	return s.Store.Scan(ctx, prefix, fn)
}

// TestADenseFloodOfTheLastMinuteIsTrimmedAtOnce: 3 000 refusals stored
// within a moment (a flood of made-up app keys), on a store whose scans
// are slow, are trimmed under MaxBytes within seconds, with the
// writer's own intervals. Each chunk and tick walked again from the
// last settled minute to the flood, a walk longer than a tick's budget:
// nothing was deleted for 30-45 s in Caddy, until the flood's minute
// settled.
func TestADenseFloodOfTheLastMinuteIsTrimmedAtOnce(t *testing.T) {
	// Serial: it bounds how long the trimming takes (40 s; 15 s under the race detector beside two busy loops).
	const maxBytes = 256 << 10
	st := slowScans{badgerStore(t), 200 * time.Microsecond}
	l := New(st, zap.NewNop(), Options{Settings: Settings{RefusalsPerMinute: everyRefusal.RefusalsPerMinute, MaxBytes: maxBytes}})
	t.Cleanup(l.Close)
	l.Record(Event{Time: time.Now().UTC().Truncate(time.Hour), Kind: KindAdmin, Username: "alice", Outcome: OutcomeSuccess, Reason: "created"})
	for i := range 3000 {
		l.Record(refusal(time.Now().UTC(), "192.0.2.1", "", "/", strconv.Itoa(i)))
	}
	l.Flush()
	start := time.Now()
	for l.Bytes() > maxBytes || l.trimming.Load() {
		if time.Since(start) > 40*time.Second { // generous for a busy machine: 15 s under the race detector beside two busy loops; without the pass's position, nothing goes until the flood's minute settles
			t.Fatalf("%d bytes (MaxBytes %d) and %d refusals deleted %v after the flood", l.Bytes(), maxBytes, l.Trimmed(), time.Since(start))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("under MaxBytes %v after the flood: %d bytes, %d refusals deleted", time.Since(start), l.Bytes(), l.Trimmed())
}

// lostLockAnswers is a store whose first write of trimLockKey of the
// given kind (taking it: old nil; giving it back: new nil) is lost on
// the way back: taking it applies, giving it back does not, and both
// answer ErrUnavailable (a Redis timeout on a loaded machine).
type lostLockAnswers struct {
	storage.Store
	take bool
	lost atomic.Bool
}

func (s *lostLockAnswers) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	if key == trimLockKey && (old == nil) == s.take && (new == nil) != s.take && s.lost.CompareAndSwap(false, true) {
		if s.take {
			_, _ = s.Store.CompareAndSwap(ctx, key, old, new, ttl)
		}
		return false, storage.ErrUnavailable
	}
	return s.Store.CompareAndSwap(ctx, key, old, new, ttl)
}

// TestALostAnswerOfTheTrimLockDoesNotStopTheTrimming: a writer whose
// taking of the trim lock applied though its answer was lost, or whose
// giving it back was lost, goes on deleting at its next tick: the lock
// is still its own. It waited for the lock's minute to pass, and the log
// stayed over MaxBytes (TestInstancesSharingAStoreTakeTurns on a loaded
// machine: nothing deleted for 20 s).
func TestALostAnswerOfTheTrimLockDoesNotStopTheTrimming(t *testing.T) {
	parallel(t)
	for name, take := range map[string]bool{"taking it": true, "giving it back": false} {
		t.Run(name, func(t *testing.T) {
			parallel(t)
			st := &lostLockAnswers{Store: badgerStore(t), take: take}
			l, _, _ := cappedLogOn(t, st, 64<<10)
			base := time.Now().UTC().Add(-3 * time.Hour)
			for i := range 2000 {
				l.Record(refusal(base.Add(time.Duration(i)*time.Second), "192.0.2.1", "", "/", strconv.Itoa(i)))
			}
			if size := settled(t, l); !st.lost.Load() || size > 64<<10 || size != storedBytes(t, st) {
				t.Fatalf("the audit log holds %d bytes (%d stored; an answer lost: %v), over MaxBytes %d", size, storedBytes(t, st), st.lost.Load(), 64<<10)
			}
		})
	}
}
