package appkey

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/benchscale"
	"github.com/gatehouse-auth/gatehouse/internal/reccodec"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

// generatedKeys is a store holding, under every index key, a record as
// Seed writes it (a name, a 64-digit index, a user, a sealed key of the
// usual size, no metadata): made up on each read, so that filling a cache
// with a million of them costs no store of that size. Only GetEntry works.
type generatedKeys struct{ storage.Store }

// GetEntry implements storage.Store for index keys.
func (generatedKeys) GetEntry(_ context.Context, key string) (storage.Entry, error) {
	index, ok := strings.CutPrefix(key, indexPrefix)
	if !ok {
		return storage.Entry{}, storage.ErrNotFound
	}
	n := strconv.Itoa(int(index[0])<<8 | int(index[1]))
	now := reccodec.Stamp(time.Now())
	rec := record{Name: "bench-" + index[:8], Index: index, Username: "keyuser-" + n, UserID: "01JEXAMPLE0USER0ID" + index[:8],
		SealedKey: make([]byte, 76), ExpiresAt: now.Add(time.Hour), Metadata: Metadata{Tags: []string{}},
		CreatedAt: now, LastModifiedAt: now}
	return storage.Entry{Key: key, Value: rec.encode()}, nil
}

// cachedIndex is the i-th made-up index (64 hex digits).
func cachedIndex(i int) string {
	sum := sha256.Sum256(strconv.AppendInt(nil, int64(i), 10))
	return hex.EncodeToString(sum[:])
}

// BenchmarkCachedKeyHeap is the heap cached application keys cost the
// process, cache bookkeeping included, filled the way the data plane's
// lookup fills the cache, the live heap and heap objects compared before
// and after, each after a full collection:
//
//	go test -run '^$' -bench CachedKeyHeap -benchtime 1x ./plugin/appkey
//
// keys: a cache sized for a million keys holds a million
// (GATEHOUSE_BENCH_KEYS overrides the count); bytes/key is the heap per
// key. 256MiB: a cache of cache_size 256MiB offered as many; heap-MiB is
// what it then holds, and held-keys how many keys (a cache bounded in
// bytes should hold about its budget).
func BenchmarkCachedKeyHeap(b *testing.B) {
	n := benchscale.Keys(1_000_000)
	indexes := make([]string, n)
	for i := range indexes {
		indexes[i] = cachedIndex(i)
	}
	ctx := context.Background()
	fill := func(b *testing.B, c *cache.Cache, order []string) {
		for _, index := range order {
			if _, err := cache.LoadJoinedCompact(c, ctx, indexPrefix, index, compactEntry); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("keys", func(b *testing.B) {
		for b.Loop() {
			heap0, objects0 := liveHeap()
			c := cache.New(generatedKeys{}, n)
			fill(b, c, indexes)
			heap1, objects1 := liveHeap()
			runtime.KeepAlive(c)
			b.ReportMetric(float64(heap1-heap0)/float64(n), "bytes/key")
			b.ReportMetric(float64(objects1-objects0)/float64(n), "objects/key")
		}
	})
	b.Run("256MiB", func(b *testing.B) {
		for b.Loop() {
			heap0, _ := liveHeap()
			c := cache.NewBytes(generatedKeys{}, 256<<20)
			fill(b, c, indexes)
			heap1, _ := liveHeap()
			hits := c.Hits()
			// Newest first: the keys held are hits before any miss evicts one.
			newestFirst := slices.Clone(indexes)
			slices.Reverse(newestFirst)
			fill(b, c, newestFirst)
			b.ReportMetric(float64(heap1-heap0)/(1<<20), "heap-MiB")
			b.ReportMetric(float64(c.Hits()-hits), "held-keys")
		}
	})
}

// liveHeap is the heap's live bytes and objects after a full collection.
func liveHeap() (bytes, objects uint64) {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/objects:objects"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}
