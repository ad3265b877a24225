package storetest

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/gatehouse-auth/gatehouse/storage"
)

// ScanCounter is a store that counts the entries its scans (Scan and
// ScanFrom) hand out whose key starts with Prefix: what tells a page of
// a listing that reads about what it shows from one that reads every
// record. ScanFrom is passed on (storage.ScanFrom), so that a store
// that seeks still seeks.
type ScanCounter struct {
	storage.Store
	// Prefix is the start of the keys counted.
	Prefix string
	// Read is how many such entries the scans handed out.
	Read atomic.Int64
}

// count is fn, counting the entries it is handed.
func (c *ScanCounter) count(fn func(storage.Entry) error) func(storage.Entry) error {
	return func(e storage.Entry) error {
		if strings.HasPrefix(e.Key, c.Prefix) {
			c.Read.Add(1)
		}
		return fn(e)
	}
}

// Scan implements storage.Store, counting.
func (c *ScanCounter) Scan(ctx context.Context, prefix string, fn func(storage.Entry) error) error {
	return c.Store.Scan(ctx, prefix, c.count(fn))
}

// ScanFrom implements storage.RangeScanner, counting.
func (c *ScanCounter) ScanFrom(ctx context.Context, prefix, from string, fn func(storage.Entry) error) error {
	return storage.ScanFrom(ctx, c.Store, prefix, from, c.count(fn))
}

// ScanContaining implements storage.ContainsScanner, counting the
// entries handed out (those holding the needles: a store that checks
// them on its side reads only those).
func (c *ScanCounter) ScanContaining(ctx context.Context, prefix, from, to string, needles [][]byte, fn func(storage.Entry) error) error {
	return storage.ScanContaining(ctx, c.Store, prefix, from, to, needles, c.count(fn))
}
