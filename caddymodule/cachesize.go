package caddymodule

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

// CacheSize is the size of the in-memory state cache: a number of bytes
// (JSON "256MiB", "1GB") or a number of records (JSON 100000, or the
// string "100000").
type CacheSize struct {
	// Bytes is the size in bytes, when given as one.
	Bytes uint64
	// Records is the number of records, when given as one.
	Records int
}

// minCacheBytes is the least size in bytes accepted.
const minCacheBytes = 1024

// defaultCacheRecords is the cache's size when none is configured.
const defaultCacheRecords = 100_000

// newCache wraps records with the state cache of this size, with opts:
// bounded by the memory its entries hold when the size is in bytes
// (storage/cache's NewBytes), else by their number.
func (s CacheSize) newCache(records storage.Store, opts ...cache.Option) *cache.Cache {
	if s.Bytes > 0 {
		return cache.NewBytes(records, int64(min(s.Bytes, math.MaxInt64)), opts...) //nolint:gosec // G115: clamped
	}
	return cache.New(records, s.records(), opts...)
}

// records is the number of records a cache sized in records keeps.
func (s CacheSize) records() int {
	if s.Records > 0 {
		return s.Records
	}
	return defaultCacheRecords
}

// ParseCacheSize reads "256MiB", "1GB", "512 KiB" (bytes, IEC or SI
// units) or a plain whole number (records; 0 is the default).
func ParseCacheSize(s string) (CacheSize, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return CacheSize{}, fmt.Errorf("cache_size %q: want a number of records (0: the default) or a size such as 256MiB", s)
		}
		return CacheSize{Records: n}, nil // 0: the default
	}
	if s == "" || s[0] < '0' || s[0] > '9' {
		return CacheSize{}, fmt.Errorf("cache_size %q: want a size such as 256MiB or a number of records", s)
	}
	b, err := humanize.ParseBytes(s)
	if err != nil || b < minCacheBytes {
		return CacheSize{}, fmt.Errorf("cache_size %q: want a size of at least 1KiB such as 256MiB, or a number of records", s)
	}
	return CacheSize{Bytes: b}, nil
}

// String is the size as ParseCacheSize reads it ("" when unset).
func (s CacheSize) String() string {
	switch {
	case s.Bytes > 0:
		return humanize.IBytes(s.Bytes)
	case s.Records > 0:
		return strconv.Itoa(s.Records)
	}
	return ""
}

// MarshalJSON implements json.Marshaler: a size in bytes as a string,
// a number of records as a number.
func (s CacheSize) MarshalJSON() ([]byte, error) {
	if s.Bytes > 0 {
		return json.Marshal(strconv.FormatUint(s.Bytes, 10) + "B")
	}
	return json.Marshal(s.Records)
}

// UnmarshalJSON implements json.Unmarshaler: a number (records) or a
// string (ParseCacheSize).
func (s *CacheSize) UnmarshalJSON(raw []byte) error {
	var text string
	if err := json.Unmarshal(raw, &text); err != nil {
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return fmt.Errorf("cache_size: want a size such as \"256MiB\" or a number of records")
		}
		text = n.String()
	}
	v, err := ParseCacheSize(text)
	if err != nil {
		return err
	}
	*s = v
	return nil
}
