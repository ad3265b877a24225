package account

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/gatehouse-auth/gatehouse/directory/slapdtest"
	"github.com/gatehouse-auth/gatehouse/internal/testport"
)

// stallingProxy forwards TCP to upstream, counting the LDAP binds that
// name marker, and while stall is set holds the answers on a connection
// that sent one for hold: a directory that checks the password but
// answers too late.
type stallingProxy struct {
	addr   string
	binds  atomic.Int64
	stall  atomic.Bool
	marker []byte
	hold   time.Duration
}

func startStallingProxy(t *testing.T, upstream, marker string, hold time.Duration) *stallingProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(testport.Free(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &stallingProxy{addr: l.Addr().String(), marker: []byte(marker), hold: hold}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			var held atomic.Bool
			go func() {
				defer u.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if bytes.Contains(buf[:n], p.marker) && bytes.Contains(buf[:n], []byte{0x60}) { // a BindRequest
							p.binds.Add(1)
							held.Store(p.stall.Load())
						}
						_, _ = u.Write(buf[:n])
					}
					if err != nil {
						return
					}
				}
			}()
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := u.Read(buf)
					if n > 0 {
						if held.Load() {
							time.Sleep(p.hold)
						}
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return p
}

// TestSlowBindsCountAgainstTheBound: a bind the directory checks but
// answers after the timeout is neither sent again nor taken back from
// failed_binds, so a slow directory gets no more wrong binds for a name
// than the bound (an outside review had 12 reach slapd with a bound of 2:
// each slow guess was sent twice and counted as never checked).
func TestSlowBindsCountAgainstTheBound(t *testing.T) {
	srv := slapdtest.Start(t)
	srv.AddUser("dora", "dora password", "", slapdtest.OperatorsDN)
	p := startStallingProxy(t, strings.TrimPrefix(srv.URL, "ldap://"), "uid=dora,", 2*time.Second)
	cfg := slapdConfig(srv)
	cfg.URLs, cfg.CAFile, cfg.Timeout, cfg.FailedBinds = []string{"ldap://" + p.addr}, "", caddy.Duration(time.Second), 2
	s, _ := serviceWithDirectory(t, cfg, nil)
	ctx := context.Background()
	p.stall.Store(true)
	for i := range 4 {
		_, _ = s.SignIn(ctx, "dora", fmt.Sprintf("slow guess %d", i), gate(GateOpen)) // 503s, then throttled
	}
	p.stall.Store(false)
	for i := range 3 {
		if res, err := s.SignIn(ctx, "dora", fmt.Sprintf("guess %d", i), gate(GateOpen)); err != nil || res.Outcome != OutcomeThrottled {
			t.Errorf("guess %d after 2 slow ones: %+v, %v; want throttled", i, res, err)
		}
	}
	if n := p.binds.Load(); n != 2 {
		t.Errorf("%d binds as dora reached the directory; want failed_binds (2)", n)
	}
}
