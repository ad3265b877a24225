package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/redis"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

func TestRecordQueryNewestFirstWithFilters(t *testing.T) {
	parallel(t)
	st, err := badger.Open(filepath.Join(t.TempDir(), "db"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	core, logs := observer.New(zap.InfoLevel)
	l := New(st, zap.New(core), Options{})
	defer l.Close()

	base := time.Now().UTC().Add(-time.Hour)
	for i := range 10 {
		user := "alice"
		if i%2 == 1 {
			user = "bob"
		}
		l.Record(Event{Time: base.Add(time.Duration(i) * time.Minute), Kind: "request", Username: user, Outcome: OutcomeDenied, Reason: fmt.Sprint(i)})
	}
	l.Record(Event{Time: base.Add(20 * time.Minute), Kind: "admin", Username: "alice", Outcome: OutcomeSuccess})

	all, err := l.Query(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 11 || all[0].Kind != "admin" || all[1].Reason != "9" || all[10].Reason != "0" {
		t.Fatalf("not newest first: %+v", all)
	}
	bob, _ := l.Query(context.Background(), Filter{Username: "bob", Limit: 2})
	if len(bob) != 2 || bob[0].Reason != "9" || bob[1].Reason != "7" {
		t.Fatalf("username+limit filter: %+v", bob)
	}
	recent, _ := l.Query(context.Background(), Filter{Kind: "request", Since: base.Add(7*time.Minute + time.Second)})
	if len(recent) != 2 {
		t.Fatalf("since+kind filter: %+v", recent)
	}
	if logs.FilterMessage("audit").Len() != 11 {
		t.Fatalf("structured log lines: %d", logs.FilterMessage("audit").Len())
	}
}

func TestRefusalsAreNeverDroppedUnderLoad(t *testing.T) {
	parallel(t)
	st, err := badger.Open(filepath.Join(t.TempDir(), "db"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l := New(st, zap.NewNop(), Options{Buffer: 4, BatchSize: 8})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				l.Record(Event{Kind: "request", Username: fmt.Sprint(g), Outcome: OutcomeDenied, Reason: fmt.Sprint(i)})
				l.Record(Event{Kind: "request", Username: fmt.Sprint(g), Outcome: OutcomeAllowed})
			}
		}()
	}
	wg.Wait()
	events, err := l.Query(context.Background(), Filter{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	denied, refusals := 0, 0 // events, and the refusals they stand for
	for _, e := range events {
		if e.Outcome == OutcomeDenied {
			denied++
			refusals += max(e.Count, 1)
		}
	}
	if refusals != 400 {
		t.Fatalf("%d of 400 refusals written (in %d events)", refusals, denied)
	}
	if uint64(len(events)-denied)+l.Dropped() != 400 {
		t.Fatalf("allowed events: %d written + %d dropped != 400", len(events)-denied, l.Dropped())
	}
	l.Close()
}

// TestDeadStoreNeverStallsRefusals: with the store down, recording
// refusals stays fast (the writer stops retrying while events queue up),
// and every event still reaches the structured log.
func TestDeadStoreNeverStallsRefusals(t *testing.T) {
	// Serial: it bounds the time 5 000 refusals take against a dead store
	// (15 s: under a second idle, 3.8 s serial at a load of 12; a writer
	// that retried each batch, or waited storePause for it, would take
	// minutes: 625 batches).
	st, err := badger.Open(filepath.Join(t.TempDir(), "db"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close() // every write now fails with storage.ErrUnavailable
	core, logs := observer.New(zap.InfoLevel)
	l := New(st, zap.New(core), Options{Buffer: 64, BatchSize: 8, Settings: everyRefusal})
	t.Cleanup(l.Close) // its writer must not outlive a failure into the next test, which may change storePause
	start := time.Now()
	for i := range 5000 {
		l.Record(Event{Kind: "request", Username: "alice", Outcome: OutcomeDenied, Reason: fmt.Sprint(i)})
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("recording 5000 refusals against a dead store took %v", d)
	}
	l.Close()
	if n := logs.FilterMessage("audit").Len(); n != 5000 {
		t.Fatalf("%d of 5000 refusals in the structured log", n)
	}
	if logs.FilterMessage("audit events could not be written to the store; they remain in this log and are kept to be written when it answers").Len() == 0 {
		t.Fatal("the store failure was not logged")
	}
}

// TestEventsRefusedDuringAnOutageAreWrittenAfterIt: with Redis down,
// refusals queue in memory; once it is back they are in the store, in
// order, with the rest. Beyond the backlog the oldest are dropped (they
// stay in the structured log).
func TestEventsRefusedDuringAnOutageAreWrittenAfterIt(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t)
	st, err := redis.Open(context.Background(), srv.URL(), redis.Options{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	core, logs := observer.New(zap.InfoLevel)
	// Events of one size (fixed-width times and names), so the byte limit
	// holds exactly 150 of them.
	base := time.Date(2026, 12, 1, 9, 0, 0, 1, time.UTC)
	event := func(i int) Event {
		return Event{Time: base.Add(time.Duration(i) * time.Second), Kind: "request", Username: fmt.Sprintf("during-%03d", i), Outcome: OutcomeDenied}
	}
	sample := event(0)
	raw, _ := json.Marshal(&sample)
	l := New(st, zap.New(core), Options{FlushInterval: 20 * time.Millisecond, BacklogBytes: 150 * len(raw), Settings: Settings{Retention: 24 * time.Hour * 365 * 10}})
	defer l.Close()
	l.Record(Event{Time: base.Add(-time.Second), Kind: "request", Username: "before", Outcome: OutcomeDenied})
	l.Flush()
	srv.Kill()
	for i := range 200 {
		l.Record(event(i))
	}
	l.Flush()
	if logs.FilterMessage("audit events could not be written to the store; they remain in this log and are kept to be written when it answers").Len() == 0 {
		t.Fatal("the outage was not logged")
	}
	srv.Restart()
	var got []Event
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if got, err = l.Query(context.Background(), Filter{Limit: 1000}); err == nil && len(got) == 151 {
			break
		}
	}
	if len(got) != 151 {
		t.Fatalf("after the outage the store holds %d events (%v); want the one before and the last 150 of the outage", len(got), err)
	}
	if got[0].Username != "during-199" || got[149].Username != "during-050" || got[150].Username != "before" {
		t.Errorf("events out of order or the wrong ones kept: newest %q, 150th %q, oldest %q", got[0].Username, got[149].Username, got[150].Username)
	}
	if recovered := logs.FilterMessage("the store accepts audit events again; those it refused are written (those past their retention skipped)"); recovered.Len() != 1 ||
		recovered.All()[0].ContextMap()["dropped_from_memory"] != uint64(50) {
		t.Errorf("the recovery was not logged once with the 50 events dropped: %v", recovered.All())
	}
	if n := logs.FilterMessage("audit").Len(); n != 201 {
		t.Errorf("%d events in the structured log; want all 201", n)
	}
}

// applyThenFail is a real store whose first batches are applied but
// answered with an error, like a write whose reply was lost.
type applyThenFail struct {
	storage.Store
	failures atomic.Int32
}

func (s *applyThenFail) Batch(ctx context.Context, ops []storage.Op) error {
	if err := s.Store.Batch(ctx, ops); err != nil {
		return err
	}
	if s.failures.Add(-1) >= 0 {
		return errors.New("reply lost")
	}
	return nil
}

// TestAmbiguousFailuresDoNotDuplicateEvents: an event whose write was
// applied but reported failed is written again under the same key.
func TestAmbiguousFailuresDoNotDuplicateEvents(t *testing.T) {
	parallel(t)
	st, err := badger.Open(filepath.Join(t.TempDir(), "db"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	flaky := &applyThenFail{Store: st}
	flaky.failures.Store(5)
	l := New(flaky, zap.NewNop(), Options{FlushInterval: 20 * time.Millisecond})
	defer l.Close()
	l.Record(Event{Kind: "request", Username: "alice", Outcome: OutcomeDenied})
	var got []Event
	// Past the failures and the writer's pause, the backlog is written:
	// polled, as a busy machine may take a while.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got, err = l.Query(context.Background(), Filter{}); flaky.failures.Load() <= 0 && err == nil && len(got) > 0 {
			break
		}
	}
	if got, err = l.Query(context.Background(), Filter{}); err != nil || len(got) != 1 {
		t.Fatalf("Query = %d events, %v; want the one refusal once", len(got), err)
	}
}

// TestLongFieldsAreClipped: a client-controlled path of a megabyte is
// stored as 1 KB of valid UTF-8, marked as cut.
func TestLongFieldsAreClipped(t *testing.T) {
	parallel(t)
	l := badgerLog(t)
	l.Record(Event{Kind: "request", Username: strings.Repeat("é", 2000), Path: "/" + strings.Repeat("a", 1<<20), Outcome: OutcomeDenied, Reason: "short"})
	got, err := l.Query(context.Background(), Filter{})
	if err != nil || len(got) != 1 {
		t.Fatalf("Query = %v, %v", got, err)
	}
	e := got[0]
	for name, v := range map[string]string{"path": e.Path, "username": e.Username} {
		if len(v) > maxField || !strings.HasSuffix(v, "…") || !utf8.ValidString(v) {
			t.Errorf("%s: %d bytes, valid UTF-8 %v, ends %q; want at most %d, marked as cut", name, len(v), utf8.ValidString(v), v[len(v)-8:], maxField)
		}
	}
	if e.Reason != "short" {
		t.Errorf("a short field changed: %q", e.Reason)
	}
}

// TestPathParameterValuesAreHidden: a key put in a path parameter
// (";appKey=…", or "?appKey=…" decoded from %3F) is refused as no
// credential, and the refusal's record keeps the parameter's name, not
// its value; a key of Gatehouse's own format is hidden wherever it is:
// path, Basic username or host.
func TestPathParameterValuesAreHidden(t *testing.T) {
	parallel(t)
	l := badgerLog(t)
	for path, want := range map[string]string{
		"/api/items":                         "/api/items",
		"/api;appKey=gak_secret/items":       "/api;appKey=REDACTED/items",
		"/a;x=1;jsessionid=s3cret;flag/b;v=": "/a;x=REDACTED;jsessionid=REDACTED;flag/b;v=REDACTED",
		"/end;appkey=gak_secret":             "/end;appkey=REDACTED",
		";=gak_secret;;":                     ";=REDACTED;;",
		// A whole URL percent-encoded: its query decoded into the path.
		"/y?appKey=gak_secret&lang=en": "/y?appKey=REDACTED&lang=REDACTED",
		"/y?flag&t=s3cret":             "/y?flag&t=REDACTED",
		// A key of Gatehouse's own anywhere, in any case, even without a name.
		"/keys/ghak_HAsRZIMmSTUxtLR3KTH0_w5sEI-5kqtl70l27ks_kLwlZScX/x": "/keys/ghak_REDACTED/x",
		"/t/GCT_abcdefghijklmnopqrstuvwxyz0123":                         "/t/GCT_REDACTED",
		"/ghak_short/gcr_":                                              "/ghak_short/gcr_",
	} {
		l.Record(Event{Kind: "request", Path: path, Outcome: OutcomeDenied, Reason: want})
	}
	// A key sent as a Basic username, which the record keeps lower-cased.
	l.Record(Event{Kind: "request", Username: "ghak_hasrzimmstuxtlr3kth0_w5sei-5kqtl70l27ks_klwlzscx", Outcome: OutcomeDenied,
		Reason: "username"})
	// And as the host a request named (a catch-all site takes any Host).
	l.Record(Event{Kind: "request", Host: "GHAK_HAsRZIMmSTUxtLR3KTH0_w5sEI-5kqtl70l27ks_kLwlZScX:443", Outcome: OutcomeDenied,
		Reason: "host"})
	got, err := l.Query(context.Background(), Filter{})
	if err != nil || len(got) != 12 {
		t.Fatalf("Query = %v, %v", got, err)
	}
	for _, e := range got {
		if e.Reason == "username" {
			if e.Username != "ghak_REDACTED" {
				t.Errorf("username recorded as %q; want ghak_REDACTED", e.Username)
			}
			continue
		}
		if e.Reason == "host" {
			if e.Host != "GHAK_REDACTED:443" {
				t.Errorf("host recorded as %q; want GHAK_REDACTED:443", e.Host)
			}
			continue
		}
		if e.Path != e.Reason || strings.Contains(e.Path, "s3cret") || strings.Contains(e.Path, "secret") {
			t.Errorf("path recorded as %q; want %q", e.Path, e.Reason)
		}
	}
}

// TestEventsShapedToBloatJSONAreStillWritten: a batch of refusals whose
// client-chosen fields grow sixfold in JSON ('&' → \u0026, invalid bytes
// → \ufffd) must not exceed what one Badger transaction takes, or the
// audit log would stop reaching the store.
func TestEventsShapedToBloatJSONAreStillWritten(t *testing.T) {
	parallel(t)
	l := badgerLog(t)
	method, path := strings.Repeat("&", 2000), "/"+strings.Repeat("\xff", 2000)
	for range 256 {
		l.Record(Event{Kind: "request", Method: method, Path: path, Username: strings.Repeat("<", 2000), Outcome: OutcomeDenied})
	}
	l.Record(Event{Kind: "request", Username: "after", Outcome: OutcomeDenied})
	got, err := l.Query(context.Background(), Filter{Limit: 1000})
	if err != nil || len(got) != 257 || got[0].Username != "after" {
		t.Fatalf("Query = %d events, %v; want all 257, the harmless one newest", len(got), err)
	}
}

// everyRefusal stores every refusal as an event of its own, for the tests
// of how events reach the store (flood_test.go has the summaries').
var everyRefusal = Settings{RefusalsPerMinute: -1}

// badgerLog is a Log storing every refusal on its own on a fresh Badger
// store, both closed when the test ends.
func badgerLog(t *testing.T) *Log {
	t.Helper()
	l := New(badgerStore(t), zap.NewNop(), Options{Settings: everyRefusal})
	t.Cleanup(l.Close) // before the store closes: cleanups run last first
	return l
}

// slowStore is a real store that can be made to fail (down) or to take
// delay for each batch.
type slowStore struct {
	storage.Store
	down  atomic.Bool
	delay atomic.Int64
}

func (s *slowStore) Batch(ctx context.Context, ops []storage.Op) error {
	if s.down.Load() {
		return storage.ErrUnavailable
	}
	time.Sleep(time.Duration(s.delay.Load()))
	return s.Store.Batch(ctx, ops)
}

// TestCloseDoesNotWaitOnASlowStore: a store that answers, but slowly,
// holds Close for about CloseTimeout, not for as long as writing
// everything would take: neither the backlog an outage left nor the
// events still queued. What was not written is counted in the log.
func TestCloseDoesNotWaitOnASlowStore(t *testing.T) {
	// Serial: it bounds how long Close takes (2 s).
	const n = 20 // at 300 ms a write, 6 s in all
	for _, after := range []string{"an outage", "a burst"} {
		t.Run(after, func(t *testing.T) {
			st, err := badger.Open(filepath.Join(t.TempDir(), "db"), badger.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			slow := &slowStore{Store: st}
			core, logs := observer.New(zap.ErrorLevel)
			l := New(slow, zap.New(core), Options{FlushInterval: 10 * time.Millisecond, BatchSize: 1, CloseTimeout: 500 * time.Millisecond})
			record := func() {
				for i := range n {
					l.Record(Event{Kind: "request", Username: fmt.Sprintf("user-%02d", i), Outcome: OutcomeDenied})
				}
			}
			if after == "an outage" {
				slow.down.Store(true)
				record()
				if pending := l.Flush(); pending != n {
					t.Fatalf("Flush with the store down left %d events pending; want %d", pending, n)
				}
				slow.down.Store(false)
			}
			slow.delay.Store(int64(300 * time.Millisecond))
			if after == "a burst" {
				record()
			}
			start := time.Now()
			l.Close()
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("Close took %v with a slow store; want about CloseTimeout (0.5 s) plus one write", took)
			}
			written := 0
			if err := st.Scan(context.Background(), keyPrefix, func(storage.Entry) error { written++; return nil }); err != nil {
				t.Fatal(err)
			}
			if written == 0 || written == n {
				t.Fatalf("Close wrote %d of the %d events; want some (it tried) but not all (it gave up)", written, n)
			}
			lines := logs.FilterMessage("audit events the store refused were never written to it; they are only in this log").All()
			if len(lines) != 1 || lines[0].ContextMap()["events"] != uint64(n-written) {
				t.Fatalf("the events left were not counted once as %d: %v", n-written, lines)
			}
		})
	}
}

// spillLog is a Log on store that keeps its backlog in the spill file
// path as well, flushing every 10 ms.
func spillLog(t *testing.T, store storage.Store, path string, logger *zap.Logger) *Log {
	t.Helper()
	l := New(store, logger, Options{FlushInterval: 10 * time.Millisecond, SpillFile: path, Settings: everyRefusal})
	t.Cleanup(l.Close)
	return l
}

// badgerStore is a fresh Badger store, closed when the test ends.
func badgerStore(t *testing.T) storage.Store {
	t.Helper()
	st, err := badger.Open(filepath.Join(t.TempDir(), "db"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// refusedWhileDown records n refusals (user-000, …) through a Log whose
// store is down and that spills to a new file, and returns once they are
// in it: the store behind the failing one, the failing one, the Log and
// the spill file.
func refusedWhileDown(t *testing.T, n int) (st storage.Store, down *slowStore, l *Log, spillPath string) {
	t.Helper()
	st = badgerStore(t)
	down = &slowStore{Store: st}
	down.down.Store(true)
	spillPath = filepath.Join(t.TempDir(), "spill.jsonl")
	l = spillLog(t, down, spillPath, zap.NewNop())
	for i := range n {
		l.Record(Event{Kind: "request", Username: fmt.Sprintf("user-%03d", i), Outcome: OutcomeDenied})
	}
	if pending := l.Flush(); pending != n {
		t.Fatalf("%d events pending with the store down; want %d", pending, n)
	}
	return st, down, l, spillPath
}

// copyFile copies the spill file as a crash would leave it on disk.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSpilledEventsSurviveACrashAndAreWrittenOnce: with the store down,
// every refused event is in the spill file once Flush returns; a writer
// started on that file (as after kill -9) writes them all to the store,
// and a second one started on the same file (a crash before it was
// emptied) adds no copy. The file is empty once the store holds them.
func TestSpilledEventsSurviveACrashAndAreWrittenOnce(t *testing.T) {
	parallel(t)
	st, _, _, spillPath := refusedWhileDown(t, 300)
	// kill -9 now: the file is all that is left of the 300 events.
	dir := filepath.Dir(spillPath)
	atCrash := filepath.Join(dir, "at-crash.jsonl")
	copyFile(t, spillPath, atCrash)
	again := filepath.Join(dir, "again.jsonl")
	copyFile(t, spillPath, again)

	core, logs := observer.New(zap.InfoLevel)
	restarted := spillLog(t, st, atCrash, zap.New(core))
	got, err := restarted.Query(context.Background(), Filter{Limit: 1000})
	if err != nil || len(got) != 300 {
		t.Fatalf("after the restart the store holds %d events (%v); want the 300 spilled", len(got), err)
	}
	if logs.FilterMessage("audit events a previous run could not write to the store are written now").Len() != 1 {
		t.Error("the replay was not logged")
	}
	if info, err := os.Stat(atCrash); err != nil || info.Size() != 0 {
		t.Fatalf("the spill file was not emptied once the store held its events: %v %v", info.Size(), err)
	}
	// A crash after the store took them but before the file was emptied.
	twice := spillLog(t, st, again, zap.NewNop())
	if got, err := twice.Query(context.Background(), Filter{Limit: 1000}); err != nil || len(got) != 300 {
		t.Fatalf("replayed twice, the store holds %d events (%v); want 300", len(got), err)
	}
	// An emptied file replays nothing.
	restarted.Close()
	once := spillLog(t, st, atCrash, zap.NewNop())
	if got, err := once.Query(context.Background(), Filter{Limit: 1000}); err != nil || len(got) != 300 {
		t.Fatalf("after a clean restart the store holds %d events (%v); want 300", len(got), err)
	}
}

// TestSpillFileLeavesTheStoreItsRoom: the spill file shares data_dir's
// file system with the Badger store, which refuses writes while less than
// badger.MinFreeSpace is free there; the events it refuses then must not
// be appended into that room (Badger's memtable flush at Close, or a
// compaction, writing into a full file system ends the process with
// SIGBUS). A batch that would leave less than SpillKeepFree is kept in
// memory only, counted in the error line, which names the directory;
// with room again, batches are appended again.
func TestSpillFileLeavesTheStoreItsRoom(t *testing.T) {
	// Serial: it replaces spaceFree, which every Log's spill file reads.
	const keep = 1 << 20
	var free atomic.Uint64
	free.Store(2 * keep)
	saved := spaceFree
	spaceFree = func(string) (uint64, bool) { return free.Load(), true }
	t.Cleanup(func() { spaceFree = saved })
	down := &slowStore{Store: badgerStore(t)}
	down.down.Store(true)
	dir := t.TempDir()
	path := filepath.Join(dir, "spill.jsonl")
	core, logs := observer.New(zap.ErrorLevel)
	l := New(down, zap.New(core), Options{FlushInterval: 10 * time.Millisecond, SpillFile: path, SpillKeepFree: keep, Settings: everyRefusal})
	t.Cleanup(l.Close)
	recorded := 0
	recordTen := func() {
		for range 10 {
			l.Record(Event{Kind: "request", Username: fmt.Sprintf("user-%03d", recorded), Outcome: OutcomeDenied})
			recorded++
		}
		if pending := l.Flush(); pending != recorded {
			t.Fatalf("%d events pending with the store down; want all %d, in memory", pending, recorded)
		}
	}
	spilled := func() int {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Count(b, []byte("\n"))
	}
	recordTen()
	if n := spilled(); n != 10 {
		t.Fatalf("%d events in the spill file with room; want 10", n)
	}
	free.Store(keep + 100) // less than the ten lines
	recordTen()
	if n := spilled(); n != 10 {
		t.Fatalf("%d events in the spill file; want the 10 from before: the next ten would have taken the room kept for the store", n)
	}
	lines := logs.FilterMessageSnippet("could not be kept in the spill file").All()
	if len(lines) != 1 || !strings.Contains(fmt.Sprint(lines[0].ContextMap()["error"]), dir) {
		t.Fatalf("the events not spilled were not logged once naming %s: %v", dir, lines)
	}
	free.Store(2 * keep)
	recordTen()
	if n := spilled(); n != 20 {
		t.Fatalf("%d events in the spill file once space was freed; want 20", n)
	}
}

// TestSpillFileCutShortByACrash: a last line a crash cut in the middle is
// dropped with a warning; the whole lines before it are written, and
// appends after it start on a line of their own.
func TestSpillFileCutShortByACrash(t *testing.T) {
	parallel(t)
	st, down, first, spillPath := refusedWhileDown(t, 3)
	first.Close()
	raw, err := os.ReadFile(spillPath)
	if err != nil || strings.Count(string(raw), "\n") != 3 {
		t.Fatalf("spill file after 3 refused events: %q %v", raw, err)
	}
	torn := string(raw) + string(raw[:len(raw)/5]) // half a line, no newline
	if err := os.WriteFile(spillPath, []byte(torn), 0o600); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	second := spillLog(t, down, spillPath, zap.New(core))
	second.Record(Event{Kind: "request", Username: "user-3", Outcome: OutcomeDenied})
	second.Flush()
	second.Close()
	if logs.FilterMessage("the end of the audit spill file was cut short (a crash while it was written) and is dropped").Len() != 1 {
		t.Error("the torn line was not reported")
	}
	down.down.Store(false)
	third := spillLog(t, st, spillPath, zap.NewNop())
	got, err := third.Query(context.Background(), Filter{Limit: 100})
	if err != nil || len(got) != 4 || got[0].Username != "user-3" || got[3].Username != "user-000" {
		t.Fatalf("store after the torn file was replayed: %+v %v; want user-3 … user-000", got, err)
	}
}

// TestSpillFileIsPrivate: the spill file holds audit events (usernames,
// addresses, what they did): it is created 0600, and one found readable
// to others is made 0600 before anything is appended to it.
func TestSpillFileIsPrivate(t *testing.T) {
	parallel(t)
	dir := t.TempDir()
	for name, before := range map[string]os.FileMode{"new": 0, "world-readable": 0o644} {
		path := filepath.Join(dir, name+".jsonl")
		if before != 0 {
			if err := os.WriteFile(path, nil, before); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, before); err != nil { // past the umask
				t.Fatal(err)
			}
		}
		s, _, _, _, err := openSpill(path, 1<<20, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.f.Close()
		if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s spill file: mode %v, %v; want 0600", name, info.Mode().Perm(), err)
		}
	}
}

// TestSpillFileRefusesALinkAndForgedLines: a spill file name that is a
// symbolic link (planted by whoever may write to the data directory) is
// not followed: the file it points at is left as it was, and the writer
// keeps its backlog in memory. With a tagger, a line whose tag does not
// verify (planted, or an untagged one) is not replayed; the writer's own
// lines are.
func TestSpillFileRefusesALinkAndForgedLines(t *testing.T) {
	parallel(t)
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("not the writer's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, link := range []struct {
		kind string
		make func(oldname, newname string) error
	}{{"symbolic", os.Symlink}, {"hard", os.Link}} {
		name := filepath.Join(dir, link.kind+".jsonl")
		if err := link.make(victim, name); err != nil {
			t.Fatal(err)
		}
		if _, _, _, _, err := openSpill(name, 1<<20, 0, nil); err == nil {
			t.Fatalf("a spill file name that is a %s link to another file was opened", link.kind)
		}
		if b, err := os.ReadFile(victim); err != nil || string(b) != "not the writer's\n" {
			t.Fatalf("the %s-linked file after the open: %q, %v", link.kind, b, err)
		}
		if info, err := os.Stat(victim); err != nil || info.Mode().Perm() != 0o644 {
			t.Fatalf("the %s-linked file's mode changed: %v, %v", link.kind, info.Mode().Perm(), err)
		}
	}

	tag := SpillTagger(func(key string, event []byte) []byte {
		sum := sha256.Sum256(append([]byte("secret\x00"+key+"\x00"), event...))
		return sum[:16]
	})
	path := filepath.Join(dir, "tagged.jsonl")
	s, _, _, _, err := openSpill(path, 1<<20, 0, tag)
	if err != nil {
		t.Fatal(err)
	}
	own := pending{key: eventKey(time.Now(), false), raw: []byte(`{"time":"2026-12-06T10:00:00Z","kind":"admin","reason":"own"}`)}
	if _, err := s.add([]pending{own}); err != nil {
		t.Fatal(err)
	}
	s.f.Close()
	forged := `{"key":"` + eventKey(time.Now(), false) + `","event":{"time":"2026-12-06T10:00:00Z","kind":"admin","reason":"FORGED"},"tag":"00112233445566778899aabbccddeeff"}` + "\n" +
		`{"key":"` + eventKey(time.Now(), false) + `","event":{"time":"2026-12-06T10:00:00Z","kind":"admin","reason":"FORGED, no tag"}}` + "\n"
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(forged); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s, events, _, dropped, err := openSpill(path, 1<<20, 0, tag)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, _, err := openSpill(path, 1<<20, 0, tag); err == nil {
		t.Fatal("a second writer opened the spill file another holds")
	}
	s.f.Close()
	if len(events) != 1 || !bytes.Contains(events[0].raw, []byte(`"own"`)) || dropped != 2 {
		t.Fatalf("replayed %d events (%v), dropped %d; want the writer's own, 2 dropped", len(events), events, dropped)
	}
	if b, err := os.ReadFile(path + ".rejected"); err != nil || string(b) != forged {
		t.Fatalf("the lines set aside: %q, %v; want the two that did not verify", b, err)
	}
}

// TestEventsRecordedAfterCloseAreCounted: an event recorded after Close
// cannot reach the store; an error line counts it.
func TestEventsRecordedAfterCloseAreCounted(t *testing.T) {
	parallel(t)
	core, logs := observer.New(zap.InfoLevel)
	l := New(badgerStore(t), zap.New(core), Options{})
	l.Close()
	l.Record(Event{Kind: "request", Username: "late", Outcome: OutcomeDenied})
	lines := logs.FilterMessage("audit events recorded after the audit writer closed were not written to the store; they are only in this log").All()
	if len(lines) != 1 || lines[0].ContextMap()["events"] != int64(1) {
		t.Fatalf("the late event was not counted: %v", lines)
	}
	if logs.FilterMessage("audit").Len() != 1 {
		t.Fatal("the late event is not in the log")
	}
}

// acceptingStore takes every batch and holds nothing.
type acceptingStore struct{ storage.Store }

func (acceptingStore) Batch(context.Context, []storage.Op) error { return nil }

// Scan finds nothing: the writer's first tick reads the log's size. (It
// was the nil Store's, and a Log that lived past its first tick, on a
// loaded machine, panicked.)
func (acceptingStore) Scan(context.Context, string, func(storage.Entry) error) error { return nil }

func (acceptingStore) Incr(context.Context, string, int64, time.Duration) (int64, error) {
	return 0, nil
}

// TestAWriterTicksOnAStoreThatHoldsNothing: a Log on acceptingStore
// (TestRecordRacingCloseIsNeverLost's rounds, which may outlive the
// writer's first tick on a loaded machine) reads the log's size at its
// ticks, finds nothing and writes what it is given. Its Scan was the nil
// Store's, and such a round panicked.
func TestAWriterTicksOnAStoreThatHoldsNothing(t *testing.T) {
	parallel(t)
	core, logs := observer.New(zap.InfoLevel)
	l := New(acceptingStore{}, zap.New(core), Options{Settings: everyRefusal, FlushInterval: time.Millisecond})
	time.Sleep(50 * time.Millisecond) // some ticks
	l.Record(Event{Kind: KindAdmin, Outcome: OutcomeSuccess, Reason: "after the ticks"})
	if pending := l.Flush(); pending != 0 {
		t.Fatalf("%d events pending on a store that takes every batch", pending)
	}
	l.Close()
	if n := logs.FilterMessage("audit").Len(); n != 1 {
		t.Fatalf("%d events written; want 1", n)
	}
}

// TestRecordRacingCloseIsNeverLost: an event recorded while Close runs is
// written (logged here) or, once the writer is gone, logged as late; never
// lost without a trace. Each round races three recorders with Close.
func TestRecordRacingCloseIsNeverLost(t *testing.T) {
	parallel(t)
	for round := range 1000 {
		core, logs := observer.New(zap.InfoLevel)
		l := New(acceptingStore{}, zap.New(core), Options{Settings: everyRefusal})
		var recorded atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 3 {
			wg.Go(func() {
				<-start
				for range 20 {
					l.Record(Event{Kind: "admin", Outcome: OutcomeFailure})
					recorded.Add(1)
					runtime.Gosched()
				}
			})
		}
		close(start)
		for range round % 7 {
			runtime.Gosched()
		}
		l.Close()
		wg.Wait()
		if got := int64(logs.FilterMessage("audit").Len()); got != recorded.Load() {
			t.Fatalf("round %d: %d events recorded, %d written or logged as late", round, recorded.Load(), got)
		}
	}
}

// countingStore counts the entries its scans visit.
type countingStore struct {
	storage.Store
	visited atomic.Int64
}

func (s *countingStore) Scan(ctx context.Context, prefix string, fn func(storage.Entry) error) error {
	return s.Store.Scan(ctx, prefix, func(e storage.Entry) error {
		s.visited.Add(1)
		return fn(e)
	})
}

// TestQueryUntilAndOutcome: Until keeps the events strictly older than
// it, whatever the digits of its key (checked against every event's own
// time, a nanosecond either side, and times between), and the store is
// read from there on: a page far back visits only the events it returns.
// Outcome keeps that outcome's events.
func TestQueryUntilAndOutcome(t *testing.T) {
	parallel(t)
	st := &countingStore{Store: badgerStore(t)}
	l := New(st, zap.NewNop(), Options{Settings: everyRefusal})
	t.Cleanup(l.Close)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Now().UTC()
	var times []time.Time // newest first
	for i := range 300 {
		// Spread over a day down to the nanosecond, so that the times'
		// keys differ at every digit.
		at := now.Add(-time.Duration(rng.Int64N(int64(24 * time.Hour))))
		if i%3 == 0 {
			at = now.Add(-time.Duration(rng.Int64N(int64(time.Millisecond))))
		}
		outcome := OutcomeSuccess
		if i%4 == 0 {
			outcome = OutcomeFailure
		}
		l.Record(Event{Time: at, Kind: KindAdmin, Outcome: outcome, Reason: at.Format(time.RFC3339Nano)})
		times = append(times, at)
	}
	slices.SortFunc(times, func(a, b time.Time) int { return b.Compare(a) })
	l.Flush()

	var untils []time.Time
	for i := 0; i < len(times); i += 7 {
		untils = append(untils, times[i], times[i].Add(time.Nanosecond), times[i].Add(-time.Nanosecond), times[i].Add(-time.Minute))
	}
	untils = append(untils, now.Add(time.Hour), now.Add(-48*time.Hour), time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC))
	for _, until := range untils {
		var want []string
		for _, at := range times {
			if at.Before(until) {
				want = append(want, at.Format(time.RFC3339Nano))
			}
		}
		if until.Year() > 2262 {
			want = nil // after what a key can hold: no bound
			for _, at := range times {
				want = append(want, at.Format(time.RFC3339Nano))
			}
		}
		got, err := l.Query(ctx, Filter{Until: until, Limit: 10000})
		if err != nil {
			t.Fatal(err)
		}
		var reasons []string
		for _, ev := range got {
			reasons = append(reasons, ev.Reason)
		}
		if strings.Join(reasons, " ") != strings.Join(want, " ") {
			t.Fatalf("until %s: %d events\n%v\nwant %d\n%v", until.Format(time.RFC3339Nano), len(reasons), reasons, len(want), want)
		}
	}

	st.visited.Store(0)
	page, err := l.Query(ctx, Filter{Until: times[199], Limit: 5})
	if err != nil || len(page) != 5 || !page[0].Time.Equal(times[200]) || !page[4].Time.Equal(times[204]) {
		t.Fatalf("a page far back: %+v %v", page, err)
	}
	if n := st.visited.Load(); n != 5 {
		t.Errorf("a page of 5 events 200 back visited %d events", n)
	}

	failures, err := l.Query(ctx, Filter{Outcome: OutcomeFailure, Until: times[100], Limit: 10000})
	if err != nil || len(failures) == 0 {
		t.Fatalf("failures: %+v %v", failures, err)
	}
	for _, ev := range failures {
		if ev.Outcome != OutcomeFailure || !ev.Time.Before(times[100]) {
			t.Errorf("outcome failure until %s: %+v", times[100], ev)
		}
	}
}

// TestChangesAreLoggedBeforeTheyAreStored: a change's log line is written
// when it is recorded, not when the writer stores it (up to a flush
// interval later), so that a process killed in between still leaves a
// trace of it; and written once. An allowed request and a refusal wait
// for the writer (which may drop the first and summarise the second).
func TestChangesAreLoggedBeforeTheyAreStored(t *testing.T) {
	parallel(t)
	st, err := badger.Open(filepath.Join(t.TempDir(), "db"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	core, logs := observer.New(zap.InfoLevel)
	l := New(st, zap.New(core), Options{FlushInterval: time.Hour})
	l.Record(Event{Kind: KindAdmin, Username: "eve", Outcome: OutcomeSuccess, Reason: "user created"})
	l.Record(Event{Kind: KindTwoFactor, Username: "eve", Outcome: OutcomeFailure, Summarise: SummariseNever, Reason: "wrong code"})
	l.Record(Event{Kind: KindRequest, Username: "eve", Outcome: OutcomeDenied, Reason: "no role allows it"})
	l.Record(Event{Kind: KindRequest, Username: "eve", Outcome: OutcomeAllowed})
	reasons := func() []string {
		var out []string
		for _, entry := range logs.FilterMessage("audit").All() {
			out = append(out, entry.ContextMap()["reason"].(string))
		}
		return out
	}
	if got := reasons(); !slices.Equal(got, []string{"user created", "wrong code"}) {
		t.Fatalf("logged before the writer stored anything: %q; want the change and the second-factor failure", got)
	}
	l.Close()
	if got := reasons(); len(got) != 4 || !slices.Equal(got[:2], []string{"user created", "wrong code"}) {
		t.Fatalf("logged once stored: %q; want each of the four once", got)
	}
}

// downStore is a real store whose batches fail while down is set,
// counting the attempts.
type downStore struct {
	storage.Store
	down     atomic.Bool
	attempts atomic.Int64
}

func (s *downStore) Batch(ctx context.Context, ops []storage.Op) error {
	if s.down.Load() {
		s.attempts.Add(1)
		return fmt.Errorf("no space left: %w", storage.ErrUnavailable)
	}
	return s.Store.Batch(ctx, ops)
}

// TestAnOutageIsLoggedOnceAMinute: the writer tries a failing store every
// second, and logged an error line each time, with or without traffic:
// 3 600 lines an hour of a full disk (seen with bin/caddy). Now an
// outage's first failure is logged at once, the later ones at most once a
// minute, and the next outage's first at once again.
func TestAnOutageIsLoggedOnceAMinute(t *testing.T) {
	// Serial: it shortens storePause and lengthens failLineInterval, which every Log reads.
	// The retries the test waits for come every 20 ms, not every second;
	// and no second line comes from the interval passing while the test
	// waits (a minute is near its deadlines), so that only the end of an
	// outage lets the next one's first failure be logged at once.
	savedPause, savedInterval := storePause, failLineInterval
	storePause, failLineInterval = 20*time.Millisecond, time.Hour
	t.Cleanup(func() { storePause, failLineInterval = savedPause, savedInterval })
	st := &downStore{Store: badgerStore(t)}
	core, logs := observer.New(zap.InfoLevel)
	l := New(st, zap.New(core), Options{FlushInterval: 20 * time.Millisecond, Settings: everyRefusal})
	t.Cleanup(l.Close)
	const line = "audit events could not be written to the store; they remain in this log and are kept to be written when it answers"
	for outage := range 2 {
		st.down.Store(true)
		l.Record(Event{Kind: "request", Username: "alice", Outcome: OutcomeDenied, Reason: fmt.Sprint(outage)})
		for deadline := time.Now().Add(60 * time.Second); logs.FilterMessage(line).Len() < outage+1; {
			if time.Now().After(deadline) {
				t.Fatalf("outage %d: its first failure was not logged in 60 s", outage)
			}
			time.Sleep(50 * time.Millisecond)
		}
		before := st.attempts.Load()
		for deadline := time.Now().Add(60 * time.Second); st.attempts.Load() < before+3; {
			if time.Now().After(deadline) {
				t.Fatalf("outage %d: the writer tried the store %d more times in 60 s; want 3", outage, st.attempts.Load()-before)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if n := logs.FilterMessage(line).Len(); n != outage+1 {
			t.Fatalf("outage %d: %d lines for the store's failures after 3 more attempts; want %d", outage, n, outage+1)
		}
		st.down.Store(false)
		for deadline := time.Now().Add(60 * time.Second); logs.FilterMessageSnippet("accepts audit events again").Len() < outage+1; {
			if time.Now().After(deadline) {
				t.Fatalf("outage %d: the end of the outage was not logged in 60 s", outage)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
