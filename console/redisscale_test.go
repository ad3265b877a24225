package console

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/plugin/appkey"
	"github.com/gatehouse-auth/gatehouse/plugin/connector"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/redis"
)

// redisCounts are a Redis server's totals that a measurement compares:
// the commands it ran and the bytes it sent.
type redisCounts struct{ commands, sent int64 }

// readRedisCounts reads the totals from INFO (the INFO command itself
// counts one command).
func readRedisCounts(t *testing.T, c *goredis.Client) redisCounts {
	t.Helper()
	info, err := c.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out redisCounts
	for line := range strings.Lines(info) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "total_commands_processed":
			out.commands = n
		case "total_net_output_bytes":
			out.sent = n
		}
	}
	return out
}

// TestAdminPlaneAtScaleOnRedis measures the console's pages and the
// admin API's listings over a Redis store holding GATEHOUSE_CONSOLE_SCALE
// users (two application keys each), GATEHOUSE_SCALE_CONNECTORS
// connectors (default 0) and GATEHOUSE_SCALE_AUDIT audit events (default
// 0; a rare user's 3 events are the oldest), written straight into the
// store: each view's median time over 3, the bytes allocated, and the
// Redis commands run (those a script runs included) and bytes sent a
// view; then the p50/p99 of a cache-hot read and of a read from Redis
// while lists are read in a loop. It is skipped unless
// GATEHOUSE_CONSOLE_SCALE and GATEHOUSE_SCALE_REDIS (the URL of a Redis
// server the test may FLUSHDB) are set:
//
//	GATEHOUSE_SCALE_REDIS=redis://127.0.0.1:22379/0 GATEHOUSE_CONSOLE_SCALE=50000 \
//	  GATEHOUSE_SCALE_CONNECTORS=2000 GATEHOUSE_SCALE_AUDIT=650000 \
//	  go test -run TestAdminPlaneAtScaleOnRedis -v -timeout 60m ./console
func TestAdminPlaneAtScaleOnRedis(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("GATEHOUSE_CONSOLE_SCALE"))
	url := os.Getenv("GATEHOUSE_SCALE_REDIS")
	if n <= 0 || url == "" {
		t.Skip("set GATEHOUSE_CONSOLE_SCALE and GATEHOUSE_SCALE_REDIS to measure the admin plane on Redis at scale")
	}
	connectors, _ := strconv.Atoi(os.Getenv("GATEHOUSE_SCALE_CONNECTORS"))
	events, _ := strconv.Atoi(os.Getenv("GATEHOUSE_SCALE_AUDIT"))
	ctx := context.Background()
	opt, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rc := goredis.NewClient(opt)
	defer rc.Close()
	if err := rc.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	st, err := redis.Open(ctx, url, redis.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	testBackend = st
	defer func() { testBackend = nil }()

	e, b := newBrowser(t)
	keys := appkey.NewService(e, appkey.Options{})
	t.Cleanup(func() { keys.Close() })
	p := connectorPlugin(t, e, nil)
	admin := adminapi.NewHandler(e, adminapi.NewCore(e), keys, p)
	b.c.admin = admin
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := e.Store.Backend().Get(ctx, "appkeyuser-indexed"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the application keys were not indexed by account in 60 s")
		}
	}

	start := time.Now()
	keyCount := seedUsersAndKeys(t, e, n)
	t.Logf("seeded %d users and %d keys in %v", n, keyCount, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	for i := range connectors {
		if _, err := p.Create(ctx, connector.CreateRequest{Name: fmt.Sprintf("conn-%04d", i), Username: "bob"}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seeded %d connectors in %v", connectors, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	now := time.Now().UTC()
	var ops []storage.Op
	// Events as the audit log keys them: the inverted time in 16 hex
	// digits, then 16 random ones; the rare user's 3 are the oldest.
	oldest := now.Add(-24 * time.Hour)
	for i := range events {
		at := oldest.Add(time.Duration(i) * 100 * time.Millisecond)
		name := fmt.Sprintf("user-%05d", i%max(n, 1))
		if i < 3 {
			name = "rare-user"
		}
		raw, err := json.Marshal(audit.Event{Time: at, Kind: audit.KindRequest, Username: name, Outcome: audit.OutcomeDenied,
			Credential: "basic", Reason: "invalid credentials", Method: "GET", Path: "/api/items/" + strconv.Itoa(i), RemoteIP: "192.0.2.7"})
		if err != nil {
			t.Fatal(err)
		}
		var tb, rb [8]byte
		binary.BigEndian.PutUint64(tb[:], math.MaxInt64-uint64(at.UnixNano()))
		_, _ = rand.Read(rb[:])
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: "audit/" + hex.EncodeToString(tb[:]) + hex.EncodeToString(rb[:]), Value: raw})
		if len(ops) == 1000 || i == events-1 {
			if err := e.Store.Batch(ctx, ops); err != nil {
				t.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	t.Logf("seeded %d audit events in %v", events, time.Since(start).Round(time.Millisecond))

	measure := func(what string, view func() string) {
		t.Helper()
		var times []time.Duration
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r0 := readRedisCounts(t, rc)
		var note string
		for range 3 {
			t0 := time.Now()
			note = view()
			times = append(times, time.Since(t0))
		}
		r1 := readRedisCounts(t, rc)
		runtime.ReadMemStats(&after)
		slices.Sort(times)
		t.Logf("%-52s %-30s median %8v  alloc %7.1f MB  redis %7d cmds %8.2f MB sent a view", what, note, times[1].Round(time.Millisecond),
			float64(after.TotalAlloc-before.TotalAlloc)/3/1e6, (r1.commands-r0.commands-1)/3, float64(r1.sent-r0.sent)/3/1e6)
	}
	page := func(path string) func() string {
		return func() string {
			body := b.get(Prefix + path)
			_, c, _ := strings.Cut(body, `<caption class="muted">`)
			c, _, _ = strings.Cut(c, "</caption>")
			return fmt.Sprintf("%s (%d KB)", c, len(body)/1000)
		}
	}
	api := func(path string) func() string {
		return func() string {
			w := httptest.NewRecorder()
			admin.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
			if w.Code != http.StatusOK {
				t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
			}
			return fmt.Sprintf("%.1f KB", float64(w.Body.Len())/1000)
		}
	}
	last := strconv.Itoa((n + 2 + perPage - 1) / perPage)
	mid := fmt.Sprintf("user-%05d", n/2)
	for _, path := range []string{"", "users", "users?page=" + last, "users?q=" + mid, "users?q=user-1",
		"appkeys", "appkeys?page=" + strconv.Itoa(2*n/perPage), "appkeys?q=" + mid, "appkeys?q=key-0001", "appkeys?q=user-1",
		"connectors", "connectors?page=" + strconv.Itoa(max(1, connectors/perPage)), "audit", "audit?username=rare-user"} {
		measure("console "+path, page(path))
	}
	for _, path := range []string{"/gatehouse/users?limit=100&after=" + mid, "/gatehouse/appkeys?limit=100&after=key-050000",
		"/gatehouse/connectors?limit=100&after=conn-1000", "/gatehouse/audit?username=rare-user", "/gatehouse/users", "/gatehouse/appkeys"} {
		measure("api "+path, api(path))
	}

	// A cache-hot read (what the data plane serves a known credential
	// from), and a read that reaches Redis (a cache miss: what another
	// instance's request waits for behind a listing's transaction or
	// script), while lists are read in a loop.
	timed := func(read func() error) (p50, p99 time.Duration) {
		var d []time.Duration
		for range 1000 {
			t0 := time.Now()
			if err := read(); err != nil {
				t.Fatal(err)
			}
			d = append(d, time.Since(t0))
			time.Sleep(time.Millisecond)
		}
		slices.Sort(d)
		return d[len(d)/2], d[len(d)*99/100]
	}
	hot := func() error { _, err := e.Store.Get(ctx, "user/bob"); return err }
	miss := func() error { _, err := st.Get(ctx, "user/bob"); return err }
	while := func(what string, load func()) {
		var stop atomic.Bool
		done := make(chan struct{})
		if load != nil {
			go func() {
				defer close(done)
				for !stop.Load() {
					load()
				}
			}()
		} else {
			close(done)
		}
		h50, h99 := timed(hot)
		m50, m99 := timed(miss)
		stop.Store(true)
		<-done
		t.Logf("%-40s cache-hot read p50 %8v p99 %8v; read from Redis p50 %8v p99 %8v", what, h50, h99, m50, m99)
	}
	while("quiet", nil)
	while("while whole lists run", func() { api("/gatehouse/users")(); api("/gatehouse/appkeys")() })
	while("while users and keys pages run", func() { page("users")(); page("appkeys")() })
	while("while the rare user's audit is read", func() { api("/gatehouse/audit?username=rare-user")() })
}
