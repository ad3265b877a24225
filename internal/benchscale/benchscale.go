// Package benchscale sizes the benchmarks that fill a store or a cache
// with many keys: their default is the scale they measure (up to a
// million keys), and GATEHOUSE_BENCH_KEYS overrides it, so that `make
// test` can run every benchmark once, small, to keep them working.
package benchscale

import (
	"os"
	"strconv"
)

// Keys is the number of keys a benchmark uses: GATEHOUSE_BENCH_KEYS when
// it is a positive number, otherwise def.
func Keys(def int) int {
	if v, err := strconv.Atoi(os.Getenv("GATEHOUSE_BENCH_KEYS")); err == nil && v > 0 {
		return v
	}
	return def
}
