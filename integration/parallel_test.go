package integration

import "testing"

// parallel lets t run beside the package's other parallel tests (go test
// runs -parallel of them at a time, GOMAXPROCS by default). A test calls
// it only when it owns everything it starts and reads: its own
// bin/caddy instances, Redis and slapd servers and upstreams, on ports
// from testport (never one handed out twice in the process), in its own
// temporary directories, with no t.Setenv and no package state it
// changes. Such a test spends most of its time waiting on those
// processes and on polls with generous deadlines, so a few of them
// overlap well even on two cores.
//
// A test that asserts a duration, or relies on something happening
// within a few seconds (a lifetime or grace it must use in time, a
// measurement of how long a credential outlives its revocation, a
// CPU-bound flood whose fairness it judges), does not call it: go test
// runs those first, one at a time, before any parallel test starts, so
// no other test of the package runs beside them (each says why in a
// "Serial:" comment).
func parallel(t *testing.T) {
	t.Helper()
	t.Parallel()
}
