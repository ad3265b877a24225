package redis

import (
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// scanKeys returns the keys Scan visits under prefix, stopping after limit
// (0: all).
func scanKeys(t *testing.T, s *Store, prefix string, limit int) []string {
	t.Helper()
	var keys []string
	err := s.Scan(t.Context(), prefix, func(e storage.Entry) error {
		keys = append(keys, e.Key)
		if limit > 0 && len(keys) == limit {
			return storage.ErrStopScan
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// privateStore is a store with the default prefix on a redis-server of
// its own, closed when the test ends.
func privateStore(t *testing.T) *Store {
	t.Helper()
	s := open(t, redistest.Start(t).URL(), "")
	t.Cleanup(func() { s.Close() })
	return s
}

// commandCalls is how many times the server ran cmd since the last
// CONFIG RESETSTAT.
func commandCalls(t *testing.T, c goredis.UniversalClient, cmd string) int {
	t.Helper()
	info, err := c.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls="); ok {
			var n int
			if _, err := fmt.Sscanf(rest, "%d", &n); err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	return 0
}

// bytesSent is how many bytes the server sent since the last CONFIG
// RESETSTAT.
func bytesSent(t *testing.T, c goredis.UniversalClient) int {
	t.Helper()
	info, err := c.Info(t.Context(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var sent int
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_net_output_bytes:"); ok {
			fmt.Sscanf(v, "%d", &sent) //nolint:errcheck // 0 fails the caller's check
		}
	}
	return sent
}

// TestScanReadsOnlyThePrefix: a scan of a small prefix in a large store
// pages through the index (no SCAN of the keyspace), in byte order, and
// stops early when asked.
func TestScanReadsOnlyThePrefix(t *testing.T) {
	// Serial: its one batch of 5 000 keys passed the store's 1 s timeout
	// beside the other tests' servers (each fsyncs every write).
	s := privateStore(t)
	ctx := t.Context()
	var ops []storage.Op
	for i := range 5000 {
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: fmt.Sprintf("other/%05d", i), Value: []byte("x")})
	}
	for i := range 2*indexPage + 7 { // more than two pages
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: fmt.Sprintf("audit/%05d", 999-i), Value: []byte("e")})
	}
	if err := s.Batch(ctx, ops); err != nil {
		t.Fatal(err)
	}
	if err := s.client.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	all := scanKeys(t, s, "audit/", 0)
	if len(all) != 2*indexPage+7 || all[0] != fmt.Sprintf("audit/%05d", 999-2*indexPage-6) || all[len(all)-1] != "audit/00999" {
		t.Fatalf("Scan(audit/) = %d keys from %q to %q", len(all), all[0], all[len(all)-1])
	}
	for i := 1; i < len(all); i++ {
		if all[i-1] >= all[i] {
			t.Fatalf("Scan is out of order at %d: %q then %q", i, all[i-1], all[i])
		}
	}
	if n := commandCalls(t, s.client, "scan"); n != 0 {
		t.Errorf("Scan ran SCAN %d times; want the index only", n)
	}
	if first := scanKeys(t, s, "audit/", 3); len(first) != 3 || first[2] != all[2] {
		t.Errorf("Scan stopped after 3 = %v; want %v", first, all[:3])
	}
	if got := scanKeys(t, s, "audit/0099", 0); len(got) != 10 || got[0] != "audit/00990" {
		t.Errorf("Scan(audit/0099) = %v; want audit/00990 … audit/00999", got)
	}
	if got := scanKeys(t, s, "nothing/", 0); len(got) != 0 {
		t.Errorf("Scan(nothing/) = %v", got)
	}
}

// TestIndexFollowsEveryWriteKind: puts, deletes, batches, swaps and
// counters keep the index exact, so scans see exactly the live keys.
func TestIndexFollowsEveryWriteKind(t *testing.T) {
	parallel(t)
	s := privateStore(t)
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Put(ctx, "k/put", []byte("1"), 0))
	must(s.Put(ctx, "k/gone", []byte("1"), 0))
	must(s.Delete(ctx, "k/gone"))
	must(s.Batch(ctx, []storage.Op{{Kind: storage.OpPut, Key: "k/batch", Value: []byte("1")}, {Kind: storage.OpDelete, Key: "k/put"}}))
	if ok, err := s.CompareAndSwap(ctx, "k/cas", nil, []byte("1"), 0); !ok || err != nil {
		t.Fatalf("CAS create = %v, %v", ok, err)
	}
	if ok, err := s.CompareAndSwap(ctx, "k/casdel", nil, []byte("1"), 0); !ok || err != nil {
		t.Fatalf("CAS create = %v, %v", ok, err)
	}
	if ok, err := s.CompareAndSwap(ctx, "k/casdel", []byte("1"), nil, 0); !ok || err != nil {
		t.Fatalf("CAS delete = %v, %v", ok, err)
	}
	if _, err := s.Incr(ctx, "k/counter", 2, time.Hour); err != nil {
		t.Fatal(err)
	}
	want := []string{"k/batch", "k/cas", "k/counter"}
	if got := scanKeys(t, s, "k/", 0); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Scan = %v; want %v", got, want)
	}
	members, err := s.client.ZRange(ctx, s.lexIndex, 0, -1).Result()
	if err != nil || fmt.Sprint(members) != fmt.Sprint(want) {
		t.Errorf("index members = %v, %v; want exactly %v", members, err, want)
	}
	if expiring, _ := s.client.ZRange(ctx, s.expiryIndex, 0, -1).Result(); fmt.Sprint(expiring) != "[k/counter]" {
		t.Errorf("expiry index = %v; want [k/counter]", expiring)
	}
	if err := s.Put(ctx, "\x00index", []byte("x"), 0); err == nil {
		t.Error("a key in the store's reserved namespace was accepted")
	}
}

// TestIncrIndexesAndClearsStaleExpiry: an increment indexes its key even
// when another writer left it out, and a counter re-created without a TTL
// loses the expiry its expired predecessor had.
func TestIncrIndexesAndClearsStaleExpiry(t *testing.T) {
	parallel(t)
	s := privateStore(t)
	ctx := t.Context()
	if err := s.client.Set(ctx, s.key("c/unindexed"), "5", 0).Err(); err != nil { // as an older version would
		t.Fatal(err)
	}
	if n, err := s.Incr(ctx, "c/unindexed", 1, 0); err != nil || n != 6 {
		t.Fatalf("Incr = %d, %v", n, err)
	}
	if _, err := s.Incr(ctx, "c/counter", 1, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := s.Incr(ctx, "c/counter", 1, 0); err != nil { // re-created, now without TTL
		t.Fatal(err)
	}
	if got := scanKeys(t, s, "c/", 0); fmt.Sprint(got) != "[c/counter c/unindexed]" {
		t.Errorf("Scan(c/) = %v", got)
	}
	if m, _ := s.client.ZRange(ctx, s.expiryIndex, 0, -1).Result(); len(m) != 0 {
		t.Errorf("expiry index = %v; want none", m)
	}
}

func TestPrefixEnd(t *testing.T) {
	parallel(t)
	for prefix, want := range map[string]string{"": "+", "a/": "(a0", "a\xff": "(b", "\xff\xff": "+", "x\xffy": "(x\xffz"} {
		if got := prefixEnd(prefix); got != want {
			t.Errorf("prefixEnd(%q) = %q; want %q", prefix, got, want)
		}
	}
}

// TestExpiredKeysLeaveTheIndex: scans skip and drop the members of expired
// keys, and the sweeper drops those no scan visits, but never a key that
// was written again.
func TestExpiredKeysLeaveTheIndex(t *testing.T) {
	parallel(t)
	s := privateStore(t)
	ctx := t.Context()
	for _, k := range []string{"a/1", "a/2", "b/1", "b/2", "b/again"} {
		if err := s.Put(ctx, k, []byte("v"), 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, "a/live", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if err := s.Put(ctx, "b/again", []byte("v"), 0); err != nil { // re-written after it expired, now without TTL
		t.Fatal(err)
	}
	if got := scanKeys(t, s, "a/", 0); fmt.Sprint(got) != "[a/live]" {
		t.Fatalf("Scan(a/) = %v; want [a/live]", got)
	}
	members := func() string {
		m, err := s.client.ZRange(ctx, s.lexIndex, 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(m)
	}
	if got := members(); got != "[a/live b/1 b/2 b/again]" {
		t.Errorf("after the scan the index holds %s; want the scanned prefix cleaned only", got)
	}
	if err := s.sweepOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := members(); got != "[a/live b/again]" {
		t.Errorf("after a sweep the index holds %s; want [a/live b/again]", got)
	}
	if n, _ := s.client.ZCard(ctx, s.expiryIndex).Result(); n != 0 {
		t.Errorf("the expiry index still holds %d members", n)
	}
}

// TestOpenIndexesAStoreWrittenWithoutTheIndex: keys an earlier version
// wrote (no index) are indexed at the first Open, TTLs included.
func TestOpenIndexesAStoreWrittenWithoutTheIndex(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t)
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer raw.Close()
	ctx := t.Context()
	for _, k := range []string{"user/alice", "user/bob", "role/admin"} {
		if err := raw.Set(ctx, DefaultPrefix+k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := raw.Set(ctx, DefaultPrefix+"session/x", "v", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if err := raw.Set(ctx, "someone-else:user/carol", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s := open(t, srv.URL(), "")
	defer s.Close()
	if got := scanKeys(t, s, "user/", 0); fmt.Sprint(got) != "[user/alice user/bob]" { // walks the keyspace, or the index if built
		t.Errorf("Scan(user/) before the index is built = %v", got)
	}
	waitFor(t, "the index build", s.indexed.Load)
	if got := scanKeys(t, s, "user/", 0); fmt.Sprint(got) != "[user/alice user/bob]" {
		t.Errorf("Scan(user/) = %v; want the keys written before the index", got)
	}
	if got := scanKeys(t, s, "", 0); len(got) != 4 {
		t.Errorf("Scan() = %v; want the 4 keys under the prefix", got)
	}
	if expiring, _ := s.client.ZRange(ctx, s.expiryIndex, 0, -1).Result(); fmt.Sprint(expiring) != "[session/x]" {
		t.Errorf("expiry index = %v; want [session/x]", expiring)
	}
	// Once built, it is not rebuilt: a key written behind the store's back
	// is not picked up by a second Open.
	if err := raw.Set(ctx, DefaultPrefix+"user/dave", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, srv.URL(), "")
	defer s2.Close()
	if got := scanKeys(t, s2, "user/", 0); len(got) != 2 {
		t.Errorf("second Open rebuilt the index: Scan(user/) = %v", got)
	}
}

// TestDropAbsentKeepsLiveKeys: the clean-up that scans and the sweeper use
// removes the members of absent keys only, whatever it is asked.
func TestDropAbsentKeepsLiveKeys(t *testing.T) {
	parallel(t)
	s := privateStore(t)
	ctx := t.Context()
	if err := s.Put(ctx, "d/live", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "d/expired", []byte("v"), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	n, err := s.dropAbsent(ctx, []string{"d/live", "d/expired", "d/never"})
	if err != nil || n != 2 {
		t.Fatalf("dropAbsent = %d, %v; want the 2 absent keys", n, err)
	}
	if m, _ := s.client.ZRange(ctx, s.lexIndex, 0, -1).Result(); fmt.Sprint(m) != "[d/live]" {
		t.Errorf("lexical index = %v; want [d/live]", m)
	}
	if m, _ := s.client.ZRange(ctx, s.expiryIndex, 0, -1).Result(); fmt.Sprint(m) != "[d/live]" {
		t.Errorf("expiry index = %v; want [d/live]", m)
	}
}

// TestLostIndexIsBuiltAgain: a key index evicted or deleted behind the
// store's back (the marker still there, or gone too) made scans list
// nothing — no users, no keys of a user to delete with it — until a
// restart; the sweeper's check now builds it again.
func TestLostIndexIsBuiltAgain(t *testing.T) {
	parallel(t)
	s := open(t, redistest.Start(t).URL(), "")
	defer s.Close()
	ctx := t.Context()
	for _, k := range []string{"user/alice", "user/bob"} {
		if err := s.Put(ctx, k, []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the index build", s.indexed.Load)
	for _, lost := range [][]string{{s.lexIndex}, {s.lexIndex, s.indexedMarker}} {
		if err := s.client.Del(ctx, lost...).Err(); err != nil {
			t.Fatal(err)
		}
		if got := scanKeys(t, s, "user/", 0); len(got) != 0 {
			t.Fatalf("Scan with the index gone = %v; the test no longer loses it", got)
		}
		if err := s.checkIndex(ctx); err != nil {
			t.Fatal(err)
		}
		if got := scanKeys(t, s, "user/", 0); fmt.Sprint(got) != "[user/alice user/bob]" || !s.indexed.Load() {
			t.Fatalf("Scan after %v was lost and checked = %v; want both users", lost, got)
		}
	}
}

// TestScanKeysReadsNoValue: a keys-only scan (storage.ScanKeys) reads
// the index, a page of keysPage members a round trip, and no value: no
// GET, few bytes sent whatever the values weigh. It lists the live keys
// in byte order, leaves out (and un-indexes) a member whose key is gone,
// and stops when asked.
func TestScanKeysReadsNoValue(t *testing.T) {
	parallel(t)
	s := privateStore(t)
	ctx := t.Context()
	big := strings.Repeat("v", 2000)
	const n = 2*keysPage + 10
	var ops []storage.Op
	for i := range n {
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: fmt.Sprintf("k/%05d", i), Value: []byte(big)})
	}
	ops = append(ops, storage.Op{Kind: storage.OpPut, Key: "other", Value: []byte(big)})
	if err := s.Batch(ctx, ops); err != nil {
		t.Fatal(err)
	}
	// A key gone behind the store's back (evicted) leaves its member.
	if err := s.client.Del(ctx, s.key("k/00007")).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.client.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := storage.ScanKeys(ctx, s, "k/", func(key string) error { keys = append(keys, key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != n-1 || keys[0] != "k/00000" || keys[7] != "k/00008" || keys[n-2] != fmt.Sprintf("k/%05d", n-1) {
		t.Fatalf("ScanKeys listed %d keys from %v; want the %d live ones, k/00007 left out", len(keys), keys[:min(len(keys), 9)], n-1)
	}
	if gets, trips := commandCalls(t, s.client, "get"), commandCalls(t, s.client, "evalsha"); gets != 0 || trips != 3 {
		t.Errorf("ScanKeys of %d keys ran GET %d times and %d scripts; want no GET, 3 round trips", n, gets, trips)
	}
	if sent := bytesSent(t, s.client); sent == 0 || sent > 100_000 { // the values alone weigh 4 MB
		t.Errorf("ScanKeys had the server send %d bytes; want the names' (~30 KB), not the values'", sent)
	}
	if n, err := s.client.ZScore(ctx, s.lexIndex, "k/00007").Result(); err == nil {
		t.Errorf("the member of the vanished key is still indexed (score %v)", n)
	}
	var visited []string
	if err := storage.ScanKeys(ctx, s, "k/", func(key string) error {
		if visited = append(visited, key); len(visited) == 2 {
			return storage.ErrStopScan
		}
		return nil
	}); err != nil || len(visited) != 2 || visited[1] != "k/00001" {
		t.Errorf("ScanKeys stopped after %v, %v; want [k/00000 k/00001], nil", visited, err)
	}
}

// TestScanContainingSendsOnlyCandidates: storage.ScanContaining on Redis
// checks the values on the server: of 1 500 values of 2 KB, only the 3
// holding the needle leave it (not 3 MB), with their expiry, in key
// order, bounded by to; a member whose key is gone is un-indexed.
func TestScanContainingSendsOnlyCandidates(t *testing.T) {
	parallel(t)
	s := privateStore(t)
	ctx := t.Context()
	big := strings.Repeat("v", 2000)
	var ops []storage.Op
	for i := range 1500 {
		v := big
		if i%500 == 7 {
			v += `"username":"rare"`
		}
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: fmt.Sprintf("e/%05d", i), Value: []byte(v), TTL: time.Hour})
	}
	if err := s.Batch(ctx, ops); err != nil {
		t.Fatal(err)
	}
	if err := s.client.Del(ctx, s.key("e/00008")).Err(); err != nil { // gone behind the store's back
		t.Fatal(err)
	}
	if err := s.client.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := storage.ScanContaining(ctx, s, "e/", "e/", "e/01000", [][]byte{[]byte(`"username":"rare"`)}, func(e storage.Entry) error {
		if !strings.HasSuffix(string(e.Value), `"username":"rare"`) || time.Until(e.ExpiresAt) < 59*time.Minute || time.Until(e.ExpiresAt) > time.Hour {
			t.Errorf("entry %s: value ending %q, expiring in %v", e.Key, e.Value[len(e.Value)-20:], time.Until(e.ExpiresAt))
		}
		got = append(got, e.Key)
		return nil
	})
	if err != nil || strings.Join(got, " ") != "e/00007 e/00507" {
		t.Fatalf("ScanContaining = %v, %v; want [e/00007 e/00507]", got, err)
	}
	if sent := bytesSent(t, s.client); sent == 0 || sent > 50_000 { // the values read weigh 2 MB
		t.Errorf("ScanContaining had the server send %d bytes; want the candidates' (~4 KB)", sent)
	}
	if _, err := s.client.ZScore(ctx, s.lexIndex, "e/00008").Result(); err == nil {
		t.Error("the member of the vanished key is still indexed")
	}
}
