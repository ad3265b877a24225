package redis

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// blackhole is a TCP proxy to a server that, once frozen, keeps every
// connection open and accepts new ones but passes nothing on, as a
// partition that drops packets does.
type blackhole struct {
	addr   string
	frozen atomic.Bool
}

// startBlackhole proxies a loopback port to target until the test ends.
func startBlackhole(t *testing.T, target string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{addr: ln.Addr().String()}
	var conns sync.WaitGroup
	accepting := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-accepting // no conns.Go once Wait runs
		b.frozen.Store(false)
		conns.Wait()
	})
	go func() {
		defer close(accepting)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			conns.Go(func() { b.pipe(u, c) })
			conns.Go(func() { b.pipe(c, u) })
		}
	}()
	return b
}

// pipe copies src to dst while not frozen, and closes both when src ends.
func (b *blackhole) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		_ = src.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := src.Read(buf)
		if n > 0 && !b.frozen.Load() {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			return
		}
	}
}

// TestFrozenServerCostsOneTimeout: with the server silent (a blackholing
// proxy in front), a read fails within one timeout, one at a time or
// many at once. It took two: go-redis waited one out for RESP3 push
// notifications before reading the reply, and a call waiting for a pooled
// connection added that wait.
func TestFrozenServerCostsOneTimeout(t *testing.T) {
	// Serial: it bounds how long a read from a frozen server takes (1.7 s).
	const timeout = time.Second // two were what a read cost; the bound leaves room for a busy machine
	bh := startBlackhole(t, redistest.Start(t).Addr())
	s, err := Open(context.Background(), "redis://"+bh.addr+"/0", Options{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if err := s.Put(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	bh.frozen.Store(true)
	read := func() time.Duration {
		start := time.Now()
		if _, err := s.Get(ctx, "k"); !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("Get from a frozen server: %v; want ErrUnavailable", err)
		}
		return time.Since(start)
	}
	var mu sync.Mutex
	var slowest time.Duration
	note := func(d time.Duration) { mu.Lock(); slowest = max(slowest, d); mu.Unlock() }
	for range 4 {
		note(read())
	}
	var wg sync.WaitGroup
	for range 40 { // more than the pool holds
		wg.Go(func() { note(read()) })
	}
	wg.Wait()
	t.Logf("slowest refused read: %v (timeout %v)", slowest.Round(time.Millisecond), timeout)
	if slowest > timeout*17/10 {
		t.Fatalf("a read from a frozen server took %v; want one timeout (%v)", slowest, timeout)
	}
}
