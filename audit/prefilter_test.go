package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/storetest"
)

// TestFilteredQueryDecodesOnlyCandidates: a query filtered by user, kind
// or outcome decodes only the events whose stored JSON holds the filter's
// values, not every event it passes (decoding was most of its time), and
// answers what decoding every event would: since still ends the scan,
// and a value some encoder escapes (&, non-ASCII) is matched by decoding,
// as are events another encoder wrote (json.Marshal escapes & too).
func TestFilteredQueryDecodesOnlyCandidates(t *testing.T) {
	// Serial: it replaces decodeEvent, which every Log's queries call, and counts its calls.
	var decoded atomic.Int64
	defer func(d func([]byte, *Event) error) { decodeEvent = d }(decodeEvent)
	decodeEvent = func(raw []byte, ev *Event) error { decoded.Add(1); return json.Unmarshal(raw, ev) }

	l := badgerLog(t)
	ctx := context.Background()
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	for i := range 300 {
		l.Record(Event{Time: base.Add(time.Duration(i) * time.Second), Kind: KindRequest, Username: "bob", Outcome: OutcomeDenied, Reason: "alice"})
	}
	for i, name := range []string{"alice", "a&b", "josé"} {
		l.Record(Event{Time: base.Add(time.Duration(400+i) * time.Second), Kind: KindAdmin, Username: name, Outcome: OutcomeSuccess})
	}
	l.Flush()
	// One event as json.Marshal writes it (an older writer, or another
	// tool), for a name it escapes.
	old := Event{Time: base.Add(500 * time.Second), Kind: KindAdmin, Username: "c&d", Outcome: OutcomeSuccess}
	raw, _ := json.Marshal(old)
	if err := l.store.Put(ctx, eventKey(old.Time, false), raw, 0); err != nil {
		t.Fatal(err)
	}

	query := func(f Filter) []string {
		t.Helper()
		decoded.Store(0)
		events, err := l.Query(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, ev := range events {
			names = append(names, fmt.Sprintf("%s/%s", ev.Username, ev.Kind))
		}
		return names
	}
	if got := query(Filter{Username: "alice"}); !slices.Equal(got, []string{"alice/admin"}) || decoded.Load() > 2 {
		t.Errorf("username alice: %v after decoding %d events; want alice's one event, decoding at most 2 of 304", got, decoded.Load())
	}
	if got := query(Filter{Kind: KindAdmin, Outcome: OutcomeSuccess, Limit: 10}); len(got) != 4 || decoded.Load() > 4 {
		t.Errorf("kind admin: %v after decoding %d events; want 4 events, 4 decoded", got, decoded.Load())
	}
	if got := query(Filter{Username: "bob", Limit: 5}); len(got) != 5 || decoded.Load() != 5 {
		t.Errorf("bob, limit 5: %d events after decoding %d", len(got), decoded.Load())
	}
	for _, name := range []string{"a&b", "josé", "c&d"} {
		if got := query(Filter{Username: name}); !slices.Equal(got, []string{name + "/admin"}) {
			t.Errorf("username %s: %v", name, got)
		}
	}
	// since ends the scan at the first older key, decoded or not.
	if got := query(Filter{Username: "nobody", Since: base.Add(350 * time.Second)}); len(got) != 0 || decoded.Load() != 0 {
		t.Errorf("nobody since: %v after decoding %d", got, decoded.Load())
	}
	var visited int
	since := base.Add(350 * time.Second)
	_ = l.scanOlder(ctx, time.Time{}, func(e storage.Entry) error {
		visited++
		if t, ok := timeOfKey(e.Key); !ok || t.Before(since) {
			return storage.ErrStopScan
		}
		return nil
	})
	if visited != 5 {
		t.Errorf("timeOfKey: the scan from the newest stopped after %d keys; want 5 (4 newer than since, then the first older)", visited)
	}
}

// TestFilteredQueryLetsTheStorePassOverEvents: a query filtered by user
// is read from the store with storage.ScanContaining, so that a store
// that checks values on its side (Redis) hands out only the events whose
// JSON holds the filter's values, bounded by since: a user's one event
// among 300 costs one entry read, not 300 — from the newest, after
// until, and since a time. Unfiltered, it still reads them all.
func TestFilteredQueryLetsTheStorePassOverEvents(t *testing.T) {
	parallel(t)
	counting := &storetest.ScanCounter{Store: badgerStore(t), Prefix: keyPrefix}
	l := New(counting, zap.NewNop(), Options{Settings: everyRefusal})
	t.Cleanup(l.Close)
	ctx := context.Background()
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	for i := range 300 {
		name := "bob"
		if i == 100 {
			name = "alice"
		}
		l.Record(Event{Time: base.Add(time.Duration(i) * time.Second), Kind: KindRequest, Username: name, Outcome: OutcomeDenied})
	}
	l.Flush()
	for _, tc := range []struct {
		f          Filter
		want, read int
	}{
		{Filter{Username: "alice"}, 1, 1},
		{Filter{Username: "alice", Until: base.Add(200 * time.Second)}, 1, 1},
		{Filter{Username: "alice", Since: base.Add(150 * time.Second)}, 0, 0},
		{Filter{Username: "alice", Since: base.Add(100 * time.Second)}, 1, 1},
		{Filter{Username: "bob", Limit: 5}, 5, 5},
		{Filter{Limit: 300}, 300, 300},
	} {
		counting.Read.Store(0)
		events, err := l.Query(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != tc.want || counting.Read.Load() != int64(tc.read) {
			t.Errorf("%+v: %d events, %d read from the store; want %d, %d read", tc.f, len(events), counting.Read.Load(), tc.want, tc.read)
		}
	}
}
