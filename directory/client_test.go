package directory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse-auth/gatehouse/directory/slapdtest"
)

// TestOpenConnectionsAreBounded: against a real slapd, a flood of password
// checks (each a search and a bind on a fresh connection) never has more
// connections open than the pool's places, all of them answered, and
// every place is given back afterwards; when every place stays taken a
// check fails closed (ErrUnavailable) after the timeout instead of opening
// another connection.
func TestOpenConnectionsAreBounded(t *testing.T) {
	s := slapdtest.Start(t)
	s.AddUser("alice", "alice password", "", slapdtest.OperatorsDN)
	var mu sync.Mutex
	open, peak := 0, 0
	d, err := New(Config{
		URLs: []string{s.TLSURL}, CAFile: s.CAFile, Flavor: OpenLDAP,
		BindDN: slapdtest.ServiceDN, BindPassword: slapdtest.ServicePassword, BaseDN: slapdtest.BaseDN,
		StatusTTL: caddy.Duration(time.Hour), Timeout: caddy.Duration(time.Second),
	}, func(op string, _ time.Time, err error) {
		if op == "connect" && err == nil {
			mu.Lock()
			open++
			mu.Unlock()
		}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const places = 3
	d.pool.open = make(chan struct{}, places)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // the places taken, sampled while the flood runs
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			peak = max(peak, len(d.pool.open))
			mu.Unlock()
			time.Sleep(100 * time.Microsecond)
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			password := "alice password"
			if i%2 == 1 {
				password = fmt.Sprint("wrong ", i)
			}
			_, err := d.Bind(context.Background(), "alice", password)
			if (i%2 == 0) != (err == nil) || err != nil && !errors.Is(err, ErrWrongPassword) {
				errs <- fmt.Errorf("check %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	close(stop)
	<-sampled
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if peak > places || open < 20 {
		t.Fatalf("peak %d places taken of %d, %d connections opened; want at most %d at once, and a fresh one per bind", peak, places, open, places)
	}
	if taken, idle := len(d.pool.open), len(d.pool.idle); taken != idle {
		t.Fatalf("%d places taken after the flood, %d connections idle: a place was not given back", taken, idle)
	}

	// Every place held (and no idle connection to close for one): a check
	// waits the timeout, then fails closed.
	d.pool.close()
	for range places {
		d.pool.open <- struct{}{}
	}
	began := time.Now()
	if _, err := d.Bind(context.Background(), "alice", "alice password"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("every place held: %v; want ErrUnavailable", err)
	}
	if waited := time.Since(began); waited < 900*time.Millisecond {
		t.Fatalf("every place held: refused after %v; want the 1s timeout waited", waited)
	}
}
