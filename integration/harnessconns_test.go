package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// TestHarnessLeavesNoConnectionHoldingTheStop: neither Start's wait for
// the HTTPS site nor a harness.Client whose test has ended keeps a
// connection open to the instance. Caddy's stop gives a client holding an
// idle HTTP/2 connection a second to close it after GOAWAY, which Go's
// client does not: one such connection added a second to every stop and
// restart of the suite.
func TestHarnessLeavesNoConnectionHoldingTheStop(t *testing.T) {
	parallel(t)
	inst := harness.Start(t, basicSite, harness.Options{})
	port := inst.Ports.HTTPSPort
	if n := establishedTo(t, port); n != 0 {
		t.Fatalf("after Start, %d connections to the HTTPS port are still open", n)
	}
	t.Run("client", func(t *testing.T) {
		resp, err := harness.Client(t, nil).Get(inst.HTTPSURL() + "/public/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("the client spoke %s; want HTTP/2, whose idle connections hold the stop", resp.Proto)
		}
		if n := establishedTo(t, port); n == 0 {
			t.Fatal("no connection seen open after a request: establishedTo sees none")
		}
	})
	if n := establishedTo(t, port); n != 0 {
		t.Fatalf("after the client's test ended, %d connections to the HTTPS port are still open", n)
	}
}

// establishedTo counts the established TCP connections, over IPv4 and
// IPv6, whose remote end is the loopback port: the client sides of the
// connections to it.
func establishedTo(t *testing.T, port int) int {
	t.Helper()
	remote := fmt.Sprintf(":%04X", port)
	n := 0
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		raw, err := os.ReadFile(table)
		if err != nil {
			t.Skipf("reading %s: %v", table, err)
		}
		for _, line := range strings.Split(string(raw), "\n")[1:] {
			// sl local_address rem_address st ...; st 01 is ESTABLISHED
			if f := strings.Fields(line); len(f) > 3 && strings.HasSuffix(f[2], remote) && f[3] == "01" {
				n++
			}
		}
	}
	return n
}
