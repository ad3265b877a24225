package redis

import "testing"

// parallel lets t run beside the package's other parallel tests (go test
// runs -parallel of them at a time, GOMAXPROCS by default). A test calls
// it only when it owns everything it uses: its own redis-server
// processes (redistest: Sentinels and clusters too, on ports from
// testport, never one handed out twice in the process, cluster bus ports
// included), its own stores and prefixes, and no package state it
// changes. Such a test spends most of its time waiting on those servers
// (a cluster's start and failover, a replica's sync) and on polls with
// generous deadlines, so a few of them overlap well even on two cores.
//
// A test that asserts a duration, or relies on something happening
// within a second or a few (a cache that must rejoin or drop in time, a
// read bounded by one timeout), does not call it: go test runs those
// first, one at a time, before any parallel test starts, so no other
// test of the package runs beside them (each says why in a "Serial:"
// comment).
func parallel(t *testing.T) {
	t.Helper()
	t.Parallel()
}
