package console

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/plugin/appkey"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// TestListPagesAtScale measures the users and application keys pages
// over GATEHOUSE_CONSOLE_SCALE users (two keys each; e.g. 50000), written
// straight into the store (batched account records, appkey.Seed): each
// page's median time over 3 views, the bytes allocated a view and the
// process's resident memory. It is skipped unless the variable is set:
//
//	GATEHOUSE_CONSOLE_SCALE=50000 go test -run TestListPagesAtScale -v ./console
func TestListPagesAtScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("GATEHOUSE_CONSOLE_SCALE"))
	if n <= 0 {
		t.Skip("set GATEHOUSE_CONSOLE_SCALE to a number of users (e.g. 50000) to measure the list pages at scale")
	}
	e, b, _ := listBrowser(t)
	start := time.Now()
	keys := seedUsersAndKeys(t, e, n)
	t.Logf("seeded %d users and %d keys in %v", n, keys, time.Since(start).Round(time.Millisecond))
	last := strconv.Itoa((n + 2 + perPage - 1) / perPage) // root and bob too
	mid := fmt.Sprintf("user-%05d", n/2)
	for _, path := range []string{"users", "users?page=" + last, "users?q=" + mid, "users?q=user-1",
		"appkeys", "appkeys?page=" + strconv.Itoa(2*n/perPage), "appkeys?q=" + mid, "appkeys?q=key-0001", "appkeys?q=user-1"} {
		var times []time.Duration
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		var caption string
		for range 3 {
			t0 := time.Now()
			page := b.get(Prefix + path)
			times = append(times, time.Since(t0))
			_, c, _ := strings.Cut(page, `<caption class="muted">`)
			caption, _, _ = strings.Cut(c, "</caption>")
		}
		runtime.ReadMemStats(&after)
		slices.Sort(times)
		t.Logf("%-28s %-34s median %8v  allocated %6.1f MB a view  RSS %4d MB", path, caption, times[1].Round(time.Millisecond),
			float64(after.TotalAlloc-before.TotalAlloc)/3/1e6, rssMB())
	}
}

// seedUsersAndKeys writes n users (user-00000, …) straight into e's
// store, in batches of 500, and two application keys for each
// (appkey.Seed), and returns how many keys it wrote.
func seedUsersAndKeys(t *testing.T, e *engine.Engine, n int) int {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	var ops []storage.Op
	var keys []appkey.SeedKey
	for i := range n {
		u := account.User{Username: fmt.Sprintf("user-%05d", i), ID: fmt.Sprintf("%032x", i+1), Roles: []string{}, Status: account.StatusActive, CreatedAt: now, UpdatedAt: now}
		raw, err := json.Marshal(u)
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: "user/" + u.Username, Value: raw})
		if len(ops) == 500 || i == n-1 {
			if err := e.Store.Batch(ctx, ops); err != nil {
				t.Fatal(err)
			}
			ops = ops[:0]
		}
		for j := range 2 {
			keys = append(keys, appkey.SeedKey{Name: fmt.Sprintf("key-%06d", 2*i+j), Username: u.Username, UserID: u.ID, ExpiresAt: now.Add(24 * time.Hour)})
		}
	}
	if _, err := appkey.Seed(ctx, e.Store, e.Keystore, keys); err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

// rssMB is the process's resident memory (Linux; 0 elsewhere).
func rssMB() int {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kb / 1024
		}
	}
	return 0
}
