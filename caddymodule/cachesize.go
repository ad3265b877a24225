package caddymodule

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
)

// CacheSize is the size of the in-memory state cache: a number of bytes
// (JSON "256MiB", "1GB") or, as before, a number of records (JSON 100000,
// or the string "100000").
type CacheSize struct {
	// Bytes is the size in bytes, when given as one.
	Bytes uint64
	// Records is the number of records, when given as one.
	Records int
}

// cacheRecordBytes is what one cached record costs the heap, counted for
// a cache sized in bytes: a cached application key is about 700 bytes
// (plugin/appkey's entry), with the cache's own entry, its LRU node and
// the key string it is filed under about 1 KiB.
const cacheRecordBytes = 1024

// defaultCacheRecords is the cache's size when none is configured.
const defaultCacheRecords = 100_000

// records is the number of records the cache keeps.
func (s CacheSize) records() int {
	switch {
	case s.Bytes > 0:
		return int(max(s.Bytes/cacheRecordBytes, 1)) //nolint:gosec // G115: bytes / 1 KiB fits an int on 64-bit platforms
	case s.Records > 0:
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
		return CacheSize{Records: n}, nil // 0 is the default, as before
	}
	if s == "" || s[0] < '0' || s[0] > '9' {
		return CacheSize{}, fmt.Errorf("cache_size %q: want a size such as 256MiB or a number of records", s)
	}
	b, err := humanize.ParseBytes(s)
	if err != nil || b < cacheRecordBytes {
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
