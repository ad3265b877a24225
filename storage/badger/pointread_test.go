package badger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	badgerdb "github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/internal/benchscale"
)

// pointReadKeys is the number of records BenchmarkPointRead reads from
// at random (GATEHOUSE_BENCH_KEYS overrides it).
const pointReadKeys = 1_000_000

// pointReadKey is the i-th record's key: shaped like an application key's
// index record (a prefix and 64 hex digits, in no particular order).
func pointReadKey(buf []byte, i int) []byte {
	sum := sha256.Sum256(strconv.AppendInt(nil, int64(i), 10))
	return hex.AppendEncode(append(buf[:0], "appkeyidx/"...), sum[:])
}

// BenchmarkPointRead is a random GetEntry among a million records of 400
// bytes (an application key record's size) in a store that has settled
// after the writes, as a cache miss on the request path reads it:
//
//	go test -run '^$' -bench PointRead -benchmem -benchtime 300000x ./storage/badger
//
// Each sub-benchmark writes its own store, with Open's options (open) or
// with one change (GATEHOUSE_BENCH_VARIANTS=1), reads every record once,
// and then times random reads; cpu-ns/op is the process's CPU time per
// read (the steadier figure on a shared machine).
func BenchmarkPointRead(b *testing.B) {
	n := benchscale.Keys(pointReadKeys)
	variants := []struct {
		name   string
		change func(badgerdb.Options) badgerdb.Options
	}{
		{"open", func(o badgerdb.Options) badgerdb.Options { return o }},
	}
	if os.Getenv("GATEHOUSE_BENCH_VARIANTS") != "" {
		variants = append(variants, pointReadVariants...)
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			s := seedPointReads(b, v.change(badgerOptions(b.TempDir(), zap.NewNop())), n)
			defer s.Close()
			ctx := context.Background()
			var buf []byte
			for i := range n { // every table page touched once, as in a store long in use
				buf = pointReadKey(buf, i)
				if _, err := s.GetEntry(ctx, string(buf)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			cpu0 := processCPU(b)
			b.ResetTimer()
			for b.Loop() {
				buf = pointReadKey(buf, rand.IntN(n))
				if _, err := s.GetEntry(ctx, string(buf)); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the CPU time the process has used, in ns: on a shared
// machine a steadier figure than the wall time per read.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// pointReadVariants are the options tried against Open's
// (GATEHOUSE_BENCH_VARIANTS=1).
var pointReadVariants = []struct {
	name   string
	change func(badgerdb.Options) badgerdb.Options
}{
	{"bloom0.01", func(o badgerdb.Options) badgerdb.Options { return o.WithBloomFalsePositive(0.01) }},
	{"indexCache32MiB", func(o badgerdb.Options) badgerdb.Options { return o.WithIndexCacheSize(32 << 20) }},
	{"blockCache64MiB", func(o badgerdb.Options) badgerdb.Options { return o.WithBlockCacheSize(64 << 20) }},
	{"block1KiB", func(o badgerdb.Options) badgerdb.Options { return o.WithBlockSize(1024) }},
	{"baseTable2MiB", func(o badgerdb.Options) badgerdb.Options { return o.WithBaseTableSize(2 << 20) }},
}

// seedPointReads writes n records with the options bo (unsynced, in
// batches), closes the store so that its memtables go to tables, reopens
// it and waits until compaction has settled (the table set unchanged for
// 3 s), so that reads meet the layout of a store at rest.
func seedPointReads(b *testing.B, bo badgerdb.Options, n int) *Store {
	b.Helper()
	t0 := time.Now()
	s, err := openWith(bo.WithSyncWrites(false), zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	wb := s.db.NewWriteBatch()
	value := make([]byte, 400)
	var key []byte
	for i := range n {
		key = pointReadKey(key, i)
		for j := range value {
			value[j] = byte(i + j)
		}
		if err := wb.Set(slices.Clone(key), slices.Clone(value)); err != nil {
			b.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if s, err = openWith(bo, zap.NewNop()); err != nil {
		b.Fatal(err)
	}
	last, stable := "", time.Now()
	for time.Since(stable) < 3*time.Second && time.Since(t0) < 10*time.Minute {
		time.Sleep(500 * time.Millisecond)
		var ids []uint64
		levels := make([]int, 8)
		for _, t := range s.db.Tables() {
			ids = append(ids, t.ID)
			levels[t.Level]++
		}
		slices.Sort(ids)
		if now := fmt.Sprint(ids); now != last {
			last, stable = now, time.Now()
		}
		if time.Since(stable) >= 3*time.Second {
			b.Logf("%d records written and settled in %s; tables per level %v", n, time.Since(t0).Round(time.Second), levels)
		}
	}
	return s
}
