package audit

import "testing"

// parallel lets t run beside the package's other parallel tests (go test
// runs -parallel of them at a time, GOMAXPROCS by default). A test calls
// it only when it owns everything it uses: its own Log, Badger store in
// its own temporary directory or Redis server (redistest, on a port
// never handed out twice in the process), and no package variable it
// changes (sizeReadInterval is an Options field for that reason). Most
// of these tests wait on the writer's ticks and on polls with generous
// deadlines, so a few of them overlap well even on two cores.
//
// A test that asserts a duration, or changes a package variable every
// Log reads (spaceFree, storePause, failLineInterval, decodeEvent), does
// not call it: go test runs those first, one at a time, before any
// parallel test starts, so no other test of the package runs beside
// them (each says why in a "Serial:" comment).
func parallel(t *testing.T) {
	t.Helper()
	t.Parallel()
}
