package redis

import (
	"context"
	"sync"
	"testing"

	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// TestAnnouncedNewsReachesTheOtherInstances: news one instance announces
// reaches the Listen listeners of the others, not its own, and neither
// instance's invalidation listeners (no record changed); a listener
// stopped hears nothing more.
func TestAnnouncedNewsReachesTheOtherInstances(t *testing.T) {
	parallel(t)
	srv := redistest.Start(t)
	a, b := open(t, srv.URL(), ""), open(t, srv.URL(), "")
	defer a.Close()
	defer b.Close()
	var mu sync.Mutex
	var heard []string
	listen := func(who string, s *Store) func() {
		s.OnInvalidate(func(key string) {
			if key != "" {
				mu.Lock()
				heard = append(heard, who+" invalidated "+key)
				mu.Unlock()
			}
		})
		return s.Listen(func(news string) {
			mu.Lock()
			heard = append(heard, who+" heard "+news)
			mu.Unlock()
		})
	}
	listen("a", a)
	stopB := listen("b", b)
	got := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), heard...)
	}
	waitFor(t, "both subscribed", func() bool { return a.Coherent() && b.Coherent() })
	ctx := context.Background()
	if err := a.Announce(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b hears the news", func() bool { return len(got()) > 0 })
	stopB()
	if err := a.Announce(ctx, "second"); err != nil {
		t.Fatal(err)
	}
	// A write's invalidation, published after the second news, comes
	// after it: once b has it, the second news would have come too.
	if err := a.Put(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b sees the write", func() bool { return len(got()) > 1 })
	if h := got(); len(h) != 2 || h[0] != "b heard first" || h[1] != "b invalidated k" {
		t.Fatalf("heard %q; want b hear the first news alone, then the write", h)
	}
}
