package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/internal/storeutil"
)

// millis rounds a TTL up to whole milliseconds, Redis's resolution, so a
// key never expires before its TTL; zero stays zero (no expiry).
func millis(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		return 0
	}
	return (ttl + time.Millisecond - 1).Truncate(time.Millisecond)
}

// expiresAtMillis is the Unix millisecond at which a key written at now
// with ttl expires, as the expiry index records it (0 when ttl is none).
func expiresAtMillis(now time.Time, ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	return now.Add(millis(ttl)).UnixMilli()
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	e, err := s.GetEntry(ctx, key)
	return e.Value, err
}

// GetEntry implements storage.Store.
func (s *Store) GetEntry(ctx context.Context, key string) (storage.Entry, error) {
	if err := checkKey(key); err != nil {
		return storage.Entry{}, err
	}
	entries, _, err := s.fetch(ctx, []string{key})
	if err != nil {
		return storage.Entry{}, s.failed("get", err)
	}
	if len(entries) == 0 {
		return storage.Entry{}, storage.ErrNotFound
	}
	return entries[0], nil
}

// GetMany implements storage.Store: one MGET, atomic as every key of the
// store is in one hash slot.
func (s *Store) GetMany(ctx context.Context, keys []string, fn func(i int, value []byte) error) error {
	if len(keys) == 0 {
		return nil
	}
	full := make([]string, len(keys))
	for i, key := range keys {
		if err := checkKey(key); err != nil {
			return err
		}
		full[i] = s.key(key)
	}
	values, err := s.client.MGet(ctx, full...).Result()
	if err != nil {
		return s.failed("get", err)
	}
	for i, v := range values {
		if value, ok := v.(string); ok { // nil: absent or expired
			if err := fn(i, []byte(value)); err != nil {
				return err
			}
		}
	}
	return nil
}

// fetch reads the live entries among keys (unprefixed), in order, in one
// transaction: values and expiries come from one consistent moment.
// missing are the keys it did not find.
func (s *Store) fetch(ctx context.Context, keys []string) (entries []storage.Entry, missing []string, err error) {
	type pending struct {
		value *goredis.StringCmd
		ttl   *goredis.DurationCmd
	}
	cmds := make([]pending, len(keys))
	start := time.Now() // an expiry computed from it errs early, never late
	_, err = s.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = pending{p.Get(ctx, s.key(k)), p.PTTL(ctx, s.key(k))}
		}
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, nil, err
	}
	entries = make([]storage.Entry, 0, len(keys))
	for i, c := range cmds {
		v, err := c.value.Bytes()
		if errors.Is(err, goredis.Nil) {
			missing = append(missing, keys[i]) // absent, or expired since the scan listed it
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		e := storage.Entry{Key: keys[i], Value: v}
		if ttl := c.ttl.Val(); ttl > 0 {
			e.ExpiresAt = start.Add(ttl)
		}
		entries = append(entries, e)
	}
	return entries, missing, nil
}

// Put implements storage.Store.
func (s *Store) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.write(ctx, "put", []storage.Op{{Kind: storage.OpPut, Key: key, Value: value, TTL: ttl}})
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.write(ctx, "delete", []storage.Op{{Kind: storage.OpDelete, Key: key}})
}

// Batch implements storage.Store.
func (s *Store) Batch(ctx context.Context, ops []storage.Op) error {
	if err := storeutil.CheckOps(ops, checkKey); err != nil {
		return err
	}
	if len(ops) == 0 {
		return nil
	}
	return s.write(ctx, "batch", ops)
}

// write applies validated ops, updates the key index and publishes their
// keys in one MULTI/EXEC transaction (SET, DEL, ZADD, ZREM and PUBLISH
// cannot fail halfway through one). A command the user's ACL refuses (a
// PUBLISH without the channel permission) is refused as it is queued, and
// Redis then discards the whole transaction (EXECABORT): nothing is
// written that the other instances would not hear of.
func (s *Store) write(ctx context.Context, what string, ops []storage.Op) error {
	now := time.Now()
	cmds, err := s.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for _, op := range ops {
			if op.Kind == storage.OpPut {
				p.Set(ctx, s.key(op.Key), op.Value, millis(op.TTL))
				s.indexPut(ctx, p, op.Key, op.TTL, now)
			} else {
				p.Del(ctx, s.key(op.Key))
				s.indexDelete(ctx, p, op.Key)
			}
		}
		for _, op := range ops {
			p.Publish(ctx, s.channel, s.message(op.Key))
		}
		return nil
	})
	if err != nil {
		return s.failed(what, queuedError(cmds, err))
	}
	return nil
}

// queuedError is the error of a MULTI/EXEC transaction that failed with
// err: for EXECABORT, which gives no reason, the first command Redis
// refused as it was queued (an ACL's NOPERM), so that the error says why.
func queuedError(cmds []goredis.Cmder, err error) error {
	const abort = "EXECABORT"
	if !strings.HasPrefix(err.Error(), abort) {
		return err
	}
	for _, c := range cmds {
		if cerr := c.Err(); cerr != nil && !strings.HasPrefix(cerr.Error(), abort) {
			return cerr
		}
	}
	return err
}

// casScript swaps KEYS[1] from ARGV[2] (absent when ARGV[1] is "0") to
// ARGV[4] (delete when ARGV[3] is "0") with a TTL of ARGV[5] ms (0: none),
// updates the lexical and expiry indexes KEYS[2] and KEYS[3] for member
// ARGV[8] (expiring at Unix ms ARGV[9]), and publishes ARGV[7] on channel
// ARGV[6]. It returns 1 if it swapped.
//
// It publishes before it writes: a script that fails halfway keeps what
// it wrote, so a PUBLISH refused after the SET (an ACL without the
// channel) would leave a change applied that the caller is told failed
// and that the other instances' caches never hear of. Refused first, it
// changes nothing. The other instances read the key only once the script
// is over (Redis runs it alone), so they never see the value before it.
var casScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if cur then return 0 end
elseif cur ~= ARGV[2] then
  return 0
end
redis.call('PUBLISH', ARGV[6], ARGV[7])
if ARGV[3] == '0' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[8])
  redis.call('ZREM', KEYS[3], ARGV[8])
else
  if ARGV[5] ~= '0' then
    redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
    redis.call('ZADD', KEYS[3], ARGV[9], ARGV[8])
  else
    redis.call('SET', KEYS[1], ARGV[4])
    redis.call('ZREM', KEYS[3], ARGV[8])
  end
  redis.call('ZADD', KEYS[2], 0, ARGV[8])
end
return 1
`)

// flag encodes whether a CAS operand is given (non-nil).
func flag(b []byte) string {
	if b == nil {
		return "0"
	}
	return "1"
}

// CompareAndSwap implements storage.Store.
func (s *Store) CompareAndSwap(ctx context.Context, key string, oldValue, newValue []byte, ttl time.Duration) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, err
	}
	n, err := casScript.Run(ctx, s.client, []string{s.key(key), s.lexIndex, s.expiryIndex},
		flag(oldValue), oldValue, flag(newValue), newValue, millis(ttl).Milliseconds(),
		s.channel, s.message(key), key, expiresAtMillis(time.Now(), ttl)).Int()
	if err != nil {
		return false, s.failed("compare-and-swap", err)
	}
	return n == 1, nil
}

// incrScript adds ARGV[1] to KEYS[1] and, if it created the key, sets a
// TTL of ARGV[2] ms (0: none). It indexes the key as member ARGV[5] in the
// lexical index KEYS[2] every time (idempotent, so a key some other writer
// left out is indexed too) and, on creation, records its expiry (Unix ms
// ARGV[6]) in KEYS[3] or removes a stale one. It publishes ARGV[4] on
// channel ARGV[3] and returns the new value as a string (exact beyond
// Lua's 2^53). It returns nil, changing nothing, if the value is not an
// integer or would overflow; any other refusal of INCRBY (a server that
// became a read-only replica, one out of memory, an ACL) is its error,
// which Incr answers as the store unavailable, not as a value that is no
// counter. As casScript, it publishes before it writes;
// an increment that then fails has sent an invalidation of a key it left
// as it was, which costs the other instances one read.
var incrScript = goredis.NewScript(`
redis.call('PUBLISH', ARGV[3], ARGV[4])
local existed = redis.call('EXISTS', KEYS[1])
local r = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(r) == 'table' and r.err then
  if string.find(r.err, 'not an integer', 1, true) or string.find(r.err, 'overflow', 1, true) or string.find(r.err, 'WRONGTYPE', 1, true) then
    return false
  end
  return r
end
if existed == 0 then
  if ARGV[2] ~= '0' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
  else
    redis.call('ZREM', KEYS[3], ARGV[5])
  end
end
redis.call('ZADD', KEYS[2], 0, ARGV[5])
return redis.call('GET', KEYS[1])
`)

// Incr implements storage.Store.
func (s *Store) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	v, err := incrScript.Run(ctx, s.client, []string{s.key(key), s.lexIndex, s.expiryIndex},
		delta, millis(ttl).Milliseconds(), s.channel, s.message(key), key, expiresAtMillis(time.Now(), ttl)).Text()
	if errors.Is(err, goredis.Nil) {
		return 0, storeutil.ErrNotInteger
	}
	if err != nil {
		return 0, s.failed("incr", err)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, s.failed("incr", fmt.Errorf("INCRBY left a non-integer: %w", err))
	}
	return n, nil
}
