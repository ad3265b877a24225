package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/internal/storeutil"
)

// The key index. Redis has no ordered keyspace: SCAN visits every key of
// the database, in no order, so a prefix scan on it costs O(all keys) and
// must sort what it found. The store therefore keeps, next to the data,
// two sorted sets naming every key it holds (under reservedPrefix):
//
//   - the lexical index (every member scored 0, so ZRANGE … BYLEX walks the
//     keys in byte order), which Scan pages through, prefix-bounded;
//   - the expiry index, scored with the Unix milliseconds at which a key
//     with a TTL expires, which the sweeper uses to drop the members of
//     keys Redis has expired.
//
// Every write updates both in the same MULTI/EXEC or script as the data.
// A member whose key is gone (expired, or deleted by a reader's race) is
// harmless: Scan skips it and removes it, but only with a script that
// checks, atomically, that the key still does not exist, so a concurrent
// write is never un-indexed.

// reservedPrefix starts the store's own keys (the indexes and the
// marker), inside the prefix, so that an ACL limited to "<prefix>*" covers
// them; callers' keys may not start with it (Gatehouse's never do).
const reservedPrefix = "\x00"

const (
	// indexPage is how many index members one Scan round trip reads.
	indexPage = 256
	// sweepInterval is how often the sweeper drops expired members.
	sweepInterval = 30 * time.Second
	// sweepBatch bounds the members one sweep round trip handles.
	sweepBatch = 1000
	// maxIndexBackoff bounds the wait between attempts at indexing.
	maxIndexBackoff = 30 * time.Second
)

// checkKey validates a caller's key.
func checkKey(key string) error {
	if err := storeutil.CheckReserved(key, reservedPrefix, "the Redis store"); err != nil {
		return err
	}
	return storeutil.CheckKey(key)
}

// indexPut queues the index updates of a put of key with ttl.
func (s *Store) indexPut(ctx context.Context, p goredis.Pipeliner, key string, ttl time.Duration, now time.Time) {
	p.ZAdd(ctx, s.lexIndex, goredis.Z{Member: key})
	if ttl > 0 {
		p.ZAdd(ctx, s.expiryIndex, goredis.Z{Score: float64(expiresAtMillis(now, ttl)), Member: key})
	} else {
		p.ZRem(ctx, s.expiryIndex, key)
	}
}

// indexDelete queues the index updates of a deletion of key.
func (s *Store) indexDelete(ctx context.Context, p goredis.Pipeliner, key string) {
	p.ZRem(ctx, s.lexIndex, key)
	p.ZRem(ctx, s.expiryIndex, key)
}

// dropAbsentScript removes from both indexes (KEYS[1], KEYS[2]) each member
// ARGV[2..] whose data key (ARGV[1] followed by the member) does not exist,
// and returns how many it removed.
var dropAbsentScript = goredis.NewScript(`
local n = 0
for i = 2, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. ARGV[i]) == 0 then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
`)

// dropAbsent removes the index members among keys whose data is gone.
func (s *Store) dropAbsent(ctx context.Context, keys []string) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	args := make([]any, 0, len(keys)+1)
	args = append(args, s.prefix)
	for _, k := range keys {
		args = append(args, k)
	}
	return dropAbsentScript.Run(ctx, s.client, []string{s.lexIndex, s.expiryIndex}, args...).Int()
}

// Scan implements storage.Store. It pages through the lexical index from
// prefix, in byte order, reading each page's entries in one transaction:
// entries are individually consistent, keys written during the scan may or
// may not be visited, and the cost grows with the keys under prefix, not
// with the whole database. Index members whose key has expired are
// skipped and removed. Until a database written without the index has
// been indexed (see startIndex), Scan walks the keyspace instead.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(storage.Entry) error) error {
	return s.ScanFrom(ctx, prefix, prefix, fn)
}

// ScanFrom implements storage.RangeScanner: the lexical index is read
// from the key from on; until the database has been indexed, the
// keyspace walk passes over the keys below from.
func (s *Store) ScanFrom(ctx context.Context, prefix, from string, fn func(storage.Entry) error) error {
	from = max(from, prefix)
	var err error
	if s.indexed.Load() {
		err = s.scanIndex(ctx, prefix, from, fn)
	} else {
		err = s.scanKeyspace(ctx, prefix, func(e storage.Entry) error {
			if e.Key < from {
				return nil
			}
			return fn(e)
		})
	}
	if errors.Is(err, storage.ErrStopScan) {
		return nil // fn ended the scan
	}
	return err
}

// scanIndex is ScanFrom on the lexical index, a page at a time.
func (s *Store) scanIndex(ctx context.Context, prefix, from string, fn func(storage.Entry) error) error {
	min, max := "["+from, prefixEnd(prefix)
	for {
		keys, err := s.client.ZRangeByLex(ctx, s.lexIndex, &goredis.ZRangeBy{Min: min, Max: max, Count: indexPage}).Result()
		if err != nil {
			return s.failed("scan", err)
		}
		if err := s.visit(ctx, keys, fn); err != nil {
			return err
		}
		if len(keys) < indexPage {
			return nil
		}
		min = "(" + keys[len(keys)-1]
	}
}

// keysPage is how many index members one ScanKeys round trip reads.
// The script holds the server while it checks them, and a request of
// another instance waits meanwhile: about 0.5 ms for 256 on a busy
// 2-core machine (2 ms for 1 000), as long as a Scan's transaction of
// indexPage keys (0.4 ms).
const keysPage = 256

// liveMembersScript reads up to ARGV[4] members of the lexical index
// KEYS[1] from ARGV[2] to ARGV[3] (ZRANGEBYLEX bounds) and returns the
// last member read (empty when none was), how many were read, and those
// whose data key (ARGV[1] followed by the member) exists, in order; the
// others it removes from both indexes (KEYS[1], KEYS[2]), as
// dropAbsentScript does. No value is read: a page of keys costs one
// round trip and the bytes of its names.
var liveMembersScript = goredis.NewScript(`
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
local live = {}
for _, m in ipairs(members) do
  if redis.call('EXISTS', ARGV[1] .. m) == 1 then
    live[#live + 1] = m
  else
    redis.call('ZREM', KEYS[1], m)
    redis.call('ZREM', KEYS[2], m)
  end
end
return {members[#members] or '', #members, live}
`)

// ScanKeys implements storage.KeyScanner: the lexical index is read a
// page of keysPage members at a time, each page's members checked for
// their keys' existence on the server (liveMembersScript), so that no
// value is read and a page costs one round trip. Until the database has
// been indexed, it is Scan with the values dropped.
func (s *Store) ScanKeys(ctx context.Context, prefix string, fn func(key string) error) error {
	var err error
	if s.indexed.Load() {
		err = s.scanIndexKeys(ctx, prefix, fn)
	} else {
		err = s.scanKeyspace(ctx, prefix, func(e storage.Entry) error { return fn(e.Key) })
	}
	if errors.Is(err, storage.ErrStopScan) {
		return nil // fn ended the scan
	}
	return err
}

// scanIndexKeys is ScanKeys on the lexical index.
func (s *Store) scanIndexKeys(ctx context.Context, prefix string, fn func(key string) error) error {
	min, max := "["+prefix, prefixEnd(prefix)
	for {
		res, err := liveMembersScript.Run(ctx, s.client, []string{s.lexIndex, s.expiryIndex}, s.prefix, min, max, keysPage).Slice()
		if err != nil {
			return s.failed("scan", err)
		}
		last, read, live, ok := liveMembers(res)
		if !ok {
			return s.failed("scan", fmt.Errorf("unexpected answer of the key scan script: %v", res))
		}
		for _, k := range live {
			if err := fn(k); err != nil {
				return err
			}
		}
		if read < keysPage {
			return nil
		}
		min = "(" + last
	}
}

// liveMembers reads liveMembersScript's answer.
func liveMembers(res []any) (last string, read int64, live []string, ok bool) {
	if len(res) != 3 {
		return "", 0, nil, false
	}
	last, ok1 := res[0].(string)
	read, ok2 := res[1].(int64)
	members, ok3 := res[2].([]any)
	if !ok1 || !ok2 || !ok3 {
		return "", 0, nil, false
	}
	live = make([]string, 0, len(members))
	for _, m := range members {
		k, ok := m.(string)
		if !ok {
			return "", 0, nil, false
		}
		live = append(live, k)
	}
	return last, read, live, true
}

// containingScript reads up to ARGV[4] members of the lexical index
// KEYS[1] from ARGV[2] to ARGV[3] (ZRANGEBYLEX bounds), and returns the
// last member read (empty when none was), how many were read, and, for
// each member whose value (at ARGV[1] followed by the member) holds
// every one of ARGV[5..], the member, its value and its PTTL, in order;
// the members whose key is gone it removes from both indexes (KEYS[1],
// KEYS[2]). Only the candidates' values leave the server.
var containingScript = goredis.NewScript(`
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
local found = {}
for _, m in ipairs(members) do
  local k = ARGV[1] .. m
  local v = redis.call('GET', k)
  if not v then
    redis.call('ZREM', KEYS[1], m)
    redis.call('ZREM', KEYS[2], m)
  else
    local all = true
    for i = 5, #ARGV do
      if not string.find(v, ARGV[i], 1, true) then
        all = false
        break
      end
    end
    if all then
      found[#found + 1] = m
      found[#found + 1] = v
      found[#found + 1] = redis.call('PTTL', k)
    end
  end
end
return {members[#members] or '', #members, found}
`)

// containingPage is how many index members one ScanContaining round
// trip reads: the script holds the server while it reads and checks
// their values, about 0.5 ms for 128 on a busy 2-core machine (1.5 ms
// for 512; a Scan's transaction of indexPage keys takes 0.4 ms).
const containingPage = 128

// ScanContaining implements storage.ContainsScanner: the lexical index
// is read from from on, a page at a time, by a script that reads each
// page's values on the server and sends back only those holding every
// needle. Until the database has been indexed, it is ScanFrom, passing
// over the other values here.
func (s *Store) ScanContaining(ctx context.Context, prefix, from, to string, needles [][]byte, fn func(storage.Entry) error) error {
	from = max(from, prefix)
	end := prefixEnd(prefix)
	if to != "" {
		if to <= from {
			return nil
		}
		if strings.HasPrefix(to, prefix) {
			end = "(" + to
		}
	}
	if !strings.HasPrefix(from, prefix) {
		return nil // from lies past every key of prefix
	}
	if !s.indexed.Load() {
		return s.ScanFrom(ctx, prefix, from, func(e storage.Entry) error {
			if to != "" && e.Key >= to {
				return storage.ErrStopScan
			}
			for _, n := range needles {
				if !bytes.Contains(e.Value, n) {
					return nil
				}
			}
			return fn(e)
		})
	}
	args := []any{s.prefix, "", end, containingPage}
	for _, n := range needles {
		args = append(args, n)
	}
	min := "[" + from
	for {
		args[1] = min
		start := time.Now() // an expiry computed from it errs early, never late
		res, err := containingScript.Run(ctx, s.client, []string{s.lexIndex, s.expiryIndex}, args...).Slice()
		if err != nil {
			return s.failed("scan", err)
		}
		last, read, found, ok := containing(res, start)
		if !ok {
			return s.failed("scan", fmt.Errorf("unexpected answer of the scan script: %v", res))
		}
		for _, e := range found {
			if err := fn(e); err != nil {
				if errors.Is(err, storage.ErrStopScan) {
					return nil
				}
				return err
			}
		}
		if read < containingPage {
			return nil
		}
		min = "(" + last
	}
}

// containing reads containingScript's answer.
func containing(res []any, start time.Time) (last string, read int64, found []storage.Entry, ok bool) {
	if len(res) != 3 {
		return "", 0, nil, false
	}
	last, ok1 := res[0].(string)
	read, ok2 := res[1].(int64)
	flat, ok3 := res[2].([]any)
	if !ok1 || !ok2 || !ok3 || len(flat)%3 != 0 {
		return "", 0, nil, false
	}
	found = make([]storage.Entry, 0, len(flat)/3)
	for i := 0; i < len(flat); i += 3 {
		key, ok1 := flat[i].(string)
		value, ok2 := flat[i+1].(string)
		ttl, ok3 := flat[i+2].(int64)
		if !ok1 || !ok2 || !ok3 {
			return "", 0, nil, false
		}
		e := storage.Entry{Key: key, Value: []byte(value)}
		if ttl > 0 {
			e.ExpiresAt = start.Add(time.Duration(ttl) * time.Millisecond)
		}
		found = append(found, e)
	}
	return last, read, found, true
}

// visit reads keys (unprefixed, in order) in one transaction and calls fn
// for each that exists, dropping the index members of those that do not;
// fn's error, storage.ErrStopScan included, ends it.
func (s *Store) visit(ctx context.Context, keys []string, fn func(storage.Entry) error) error {
	entries, missing, err := s.fetch(ctx, keys)
	if err != nil {
		return s.failed("scan", err)
	}
	if _, err := s.dropAbsent(ctx, missing); err != nil { // a failure only leaves them for the sweeper or a later scan
		s.log.Debug("dropping index members of vanished keys failed", zap.Error(err))
	}
	for _, e := range entries {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// prefixEnd is the exclusive ZRANGEBYLEX bound just past every string
// starting with prefix ("+", the end, when there is none).
func prefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return "(" + string(b[:i+1])
		}
	}
	return "+"
}

// eachKey SCANs the keyspace for the keys under prefix and calls fn with
// each (without the store's prefix; reserved keys left out; SCAN may
// repeat a key); fn's error ends it.
func (s *Store) eachKey(ctx context.Context, prefix string, fn func(key string) error) error {
	full := s.key(prefix)
	n, err := s.node(ctx)
	if err != nil {
		return err
	}
	it := n.Scan(ctx, 0, globEscaper.Replace(full)+"*", scanCount).Iterator()
	for it.Next(ctx) {
		if k := it.Val(); strings.HasPrefix(k, full) && !strings.HasPrefix(k[len(s.prefix):], reservedPrefix) {
			if err := fn(k[len(s.prefix):]); err != nil {
				return err
			}
		}
	}
	return it.Err()
}

// scanKeyspace is Scan for a database not indexed yet: SCAN every string
// key under the prefix, sort, then read them in pages. Memory grows with
// the number of matching keys.
func (s *Store) scanKeyspace(ctx context.Context, prefix string, fn func(storage.Entry) error) error {
	var keys []string
	if err := s.eachKey(ctx, prefix, func(k string) error { keys = append(keys, k); return nil }); err != nil {
		return s.failed("scan", err)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys) // SCAN may return a key more than once
	for chunk := range slices.Chunk(keys, indexPage) {
		if err := s.visit(ctx, chunk, fn); err != nil {
			return err
		}
	}
	return nil
}

// sweep keeps the indexes from growing with expired keys: every
// sweepInterval it drops the members whose recorded expiry has passed and
// whose key is gone (a key re-written meanwhile keeps its members).
func (s *Store) sweep() {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			err := s.checkIndex(s.ctx)
			if err == nil {
				err = s.sweepOnce(s.ctx)
			}
			if err != nil && s.ctx.Err() == nil {
				s.log.Debug("sweeping the key index failed", zap.Error(err))
			}
		}
	}
}

// sweepOnce drops the index members of every key that has expired by now.
func (s *Store) sweepOnce(ctx context.Context) error {
	max := strconv.FormatInt(time.Now().UnixMilli(), 10)
	for offset := int64(0); ; {
		keys, err := s.client.ZRangeByScore(ctx, s.expiryIndex, &goredis.ZRangeBy{Min: "-inf", Max: max,
			Offset: offset, Count: sweepBatch}).Result()
		if err != nil {
			return err
		}
		dropped, err := s.dropAbsent(ctx, keys)
		if err != nil {
			return err
		}
		if len(keys) < sweepBatch {
			return nil
		}
		offset += int64(len(keys) - dropped) // the members kept (re-written keys) are still in range
	}
}

// checkIndex builds the key index again when it is gone while the store
// reads it (an eviction, or a DEL behind Gatehouse's back; Redis deletes
// an emptied sorted set too): scans would list nothing, and deletions
// that cascade through them would leave records behind. Scans walk the
// keyspace until it is built.
func (s *Store) checkIndex(ctx context.Context) error {
	if !s.indexed.Load() {
		return nil
	}
	n, err := s.client.Exists(ctx, s.lexIndex, s.indexedMarker).Result()
	if err != nil || n == 2 {
		return err
	}
	s.indexed.Store(false)
	start := time.Now()
	added, err := s.buildIndex(ctx)
	if err != nil {
		return err
	}
	s.indexed.Store(true)
	if added > 0 {
		s.log.Warn("the Redis key index was gone (evicted, or deleted behind Gatehouse's back); it was built again: maxmemory-policy noeviction is required",
			zap.Int64("keys", added), zap.Duration("took", time.Since(start)))
	}
	return nil
}

// startIndex makes Scan use the index: at once when the marker says the
// database is indexed, else once buildIndex has run in the background
// (retried until it succeeds or the store closes), so that Open never
// waits for a walk of the whole database.
func (s *Store) startIndex(ctx context.Context) error {
	n, err := s.client.Exists(ctx, s.indexedMarker).Result()
	if err != nil {
		return err
	}
	if n == 1 {
		s.indexed.Store(true)
		return nil
	}
	s.wg.Go(func() {
		for backoff := minBackoff; ; backoff = min(2*backoff, maxIndexBackoff) {
			added, err := s.buildIndex(s.ctx)
			if added > 0 {
				s.log.Info("indexed keys written without the key index", zap.Int64("keys", added))
			}
			if err == nil {
				s.indexed.Store(true)
				return
			}
			if s.ctx.Err() != nil {
				return
			}
			s.log.Warn("indexing the keys of the store failed; scans walk the keyspace until it succeeds", zap.Error(err))
			if !s.pause(backoff) {
				return
			}
		}
	})
	return nil
}

// buildIndex indexes every key under the prefix (a database that versions
// before the index wrote), then sets the marker; added counts the keys
// that were not indexed. Writers index their keys
// as they go and ZADD is idempotent, so concurrent writes and concurrent
// builds are safe; a key deleted during the build may leave a member,
// which scans and the sweeper drop.
func (s *Store) buildIndex(ctx context.Context) (added int64, _ error) {
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		ttls := make([]*goredis.DurationCmd, len(batch))
		if _, err := s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, k := range batch {
				ttls[i] = p.PTTL(ctx, s.key(k))
			}
			return nil
		}); err != nil {
			return err
		}
		now := time.Now()
		adds := make([]*goredis.IntCmd, len(batch))
		_, err := s.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			for i, k := range batch {
				// Only ever add: a writer may have given the key a TTL since PTTL.
				adds[i] = p.ZAdd(ctx, s.lexIndex, goredis.Z{Member: k})
				if ttl := ttls[i].Val(); ttl > 0 { // negative: no TTL, or gone
					p.ZAdd(ctx, s.expiryIndex, goredis.Z{Score: float64(expiresAtMillis(now, ttl)), Member: k})
				}
			}
			return nil
		})
		for _, a := range adds {
			added += a.Val()
		}
		batch = batch[:0]
		return err
	}
	if err := s.eachKey(ctx, "", func(k string) error {
		if batch = append(batch, k); len(batch) == scanCount {
			return flush()
		}
		return nil
	}); err != nil {
		return added, err
	}
	if err := flush(); err != nil {
		return added, err
	}
	return added, s.client.Set(ctx, s.indexedMarker, "1", 0).Err()
}

// globEscaper escapes the characters SCAN MATCH patterns treat specially.
var globEscaper = strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)
