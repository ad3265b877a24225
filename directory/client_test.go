package directory

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/go-ldap/ldap/v3"

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
	for len(d.pool.idle) > 0 {
		d.pool.discard(<-d.pool.idle)
	}
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

// TestClosedPoolParksNothing: a connection put back after the pool closed
// (an operation of a replaced config that was still running) is closed
// and its place freed, not parked in a pool nobody drains; operations
// after the close fail at once (ErrUnavailable), and so does one that was
// waiting for a place.
func TestClosedPoolParksNothing(t *testing.T) {
	p, err := newPool(Config{Timeout: caddy.Duration(time.Hour)}, func(string, time.Time, error) {})
	if err != nil {
		t.Fatal(err)
	}
	p.open = make(chan struct{}, 1)
	client, server := net.Pipe()
	defer server.Close()
	c := ldap.NewConn(client, false)
	c.Start()
	p.open <- struct{}{} // c's place, as get gives it
	waiting := make(chan error)
	go func() { _, err := p.get(); waiting <- err }() // no place free: waits
	p.close()
	select {
	case err := <-waiting:
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("a get waiting for a place when the pool closed: %v; want ErrUnavailable", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("a get waiting for a place when the pool closed still waits")
	}
	p.put(c)
	if len(p.idle) != 0 || !c.IsClosing() {
		t.Fatalf("a connection put back after the close: %d idle, closed %v; want it closed, none idle", len(p.idle), c.IsClosing())
	}
	if len(p.open) != 0 {
		t.Fatal("the place of a connection put back after the close was not freed")
	}
	if _, err := p.get(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("get after the close: %v; want ErrUnavailable", err)
	}
}
