package redis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// The store's epoch, and the instances' heartbeats.
//
// A cache in front of the store learns of writes from the invalidation
// channel, and of a server that restarted from its run_id
// (noticeRestart); records removed behind Gatehouse's back on a server
// that stays up (FLUSHALL, FLUSHDB, a dump restored over the database)
// send neither, and the cache would go on answering from what it holds,
// deleted users and revoked keys too, until its entries expire. So the
// store keeps two markers beside its records: a random epoch, written
// once (SET NX), and a sequence every subscribed instance increments
// every epochInterval. An instance that finds the epoch gone or another,
// or the sequence not past the value it last saw (a flush, or an older
// dump of the same store), drops everything cached (the empty-key
// invalidation) and says so.
//
// Every subscribed instance also scores its ID with the time in the
// instances set on each round (removed at Close): the offline tools count
// the instances running on the store with it (Instances), those whose
// subscription is down too. The time is the Redis server's (TIME, in a
// script), so that the clocks of the instances' and the tools' machines
// do not matter.

const (
	// epochInterval is how often a subscribed instance checks the epoch
	// and announces itself.
	epochInterval = time.Second
	// instanceTimeout is how long an instance that stopped announcing
	// itself (killed) still counts as running.
	instanceTimeout = 10 * time.Second
	// clockSkewLimit is how far this instance's clock may lie from the
	// Redis server's, beyond the uncertainty of the round trip that read
	// the server's, before watchEpoch warns: NTP keeps clocks within
	// milliseconds, and the instances of a cluster compare the times they
	// write into records with their own clocks.
	clockSkewLimit = 2 * time.Second
)

// watchEpoch checks the store's epoch and sequence, and announces the
// instance, every epochInterval until Close (see above); it runs beside
// the subscriber.
func (s *Store) watchEpoch() {
	t := time.NewTicker(epochInterval)
	defer t.Stop()
	known, seen := s.openEpoch, s.openSeq
	var warned, skewWarned time.Time
	for {
		epoch, seq, skew, err := s.epochRound(s.ctx)
		switch {
		case err == nil:
			skewWarned = s.noteSkew(skew, skewWarned)
			switch {
			case known != "" && epoch != known:
				s.log.Error("the Redis store's records were removed or replaced behind Gatehouse's back (FLUSHALL, FLUSHDB, "+
					"a restored dump of another store): every cached record was dropped. Users, keys, tokens and sessions are "+
					"now what the server holds; restore the store from a backup if this was not meant",
					zap.String("epoch", epoch), zap.String("previous_epoch", known))
				s.notify("")
			case known != "" && seq <= seen:
				s.log.Warn("the Redis store went back to an earlier state (a failover or restart that lost its latest "+
					"writes, or an older dump of this store restored over it): every cached record was dropped",
					zap.Int64("sequence", seq), zap.Int64("sequence_seen", seen))
				s.notify("")
			}
			known, seen = epoch, seq
		case s.ctx.Err() != nil:
		case isReply(err) && time.Since(warned) >= time.Minute:
			// Redis answers, but refuses: the watch is off until it
			// does not (an ACL, a read-only replica).
			warned = time.Now()
			s.log.Warn("the store's epoch could not be checked: records removed behind Gatehouse's back (FLUSHALL) would "+
				"be served from the cache until its entries expire", zap.Error(err))
		default:
			s.log.Debug("checking the store's epoch failed", zap.Error(err))
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// epochRound is one round of watchEpoch: the instance announced, the
// sequence incremented, and the epoch (written when there is none), the
// sequence and this instance's clock skew (clockSkew) returned.
func (s *Store) epochRound(ctx context.Context) (epoch string, seq int64, skew time.Duration, err error) {
	sent := s.now()
	res, err := announceScript.Run(ctx, s.client, []string{s.instancesKey, s.seqKey}, s.id, instanceTimeout.Milliseconds()).Int64Slice()
	if err != nil {
		return "", 0, 0, err
	}
	if len(res) != 2 {
		return "", 0, 0, fmt.Errorf("announcing the instance: %d values in the reply, want 2", len(res))
	}
	skew = clockSkew(sent, s.now(), res[1])
	epoch, err = s.epoch(ctx)
	return epoch, res[0], skew, err
}

// clockSkew is how far ahead of the server's time serverMillis (negative:
// behind) this instance's clock was, read at sent and got either side of
// the call that read it, beyond the uncertainty of that round trip (half
// of it, and the millisecond the server's time is rounded to): zero when
// within it.
func clockSkew(sent, got time.Time, serverMillis int64) time.Duration {
	rtt := got.Sub(sent)
	within := rtt/2 + time.Millisecond
	switch d := sent.Add(rtt / 2).Sub(time.UnixMilli(serverMillis)); {
	case d > within:
		return d - within
	case d < -within:
		return d + within
	}
	return 0
}

// noteSkew warns, at most once a minute (since warned, which it returns
// updated), while this instance's clock lies further than clockSkewLimit
// from the Redis server's, and says when it is back within it.
func (s *Store) noteSkew(skew time.Duration, warned time.Time) time.Time {
	s.skewed.Store(skew.Abs() > clockSkewLimit)
	switch {
	case skew.Abs() > clockSkewLimit && (warned.IsZero() || time.Since(warned) >= time.Minute):
		s.log.Warn("this instance's clock and the Redis server's differ: run NTP (or chrony) on both. Authenticator-app "+
			"codes are judged by this clock (a skew beyond 30 seconds refuses right codes, which count toward the lockout), "+
			"and the instances of a cluster compare the expiry and activity times they write into records with their own "+
			"clocks (application keys, sessions, connector tokens, SMS codes)",
			zap.Duration("ahead_of_redis", skew.Round(time.Millisecond)))
		return time.Now()
	case skew.Abs() <= clockSkewLimit && !warned.IsZero():
		s.log.Info("this instance's clock is back in step with the Redis server's", zap.Duration("ahead_of_redis", skew.Round(time.Millisecond)))
		return time.Time{}
	}
	return warned
}

// ClockInStep implements storage.ClockChecker: false while the latest
// heartbeat found this instance's clock further than clockSkewLimit from
// the server's (see noteSkew); true before the first.
func (s *Store) ClockInStep() bool { return !s.skewed.Load() }

// announceScript scores the instance ARGV[1] in the instances set
// KEYS[1] with the server's time in milliseconds, drops those older than
// ARGV[2] ms, and increments the sequence KEYS[2], returning it and the
// server's time.
var announceScript = goredis.NewScript(serverMillis + `
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return {redis.call('INCR', KEYS[2]), now}`)

// countScript counts the members of the instances set KEYS[1] scored
// within the last ARGV[1] ms of the server's time.
var countScript = goredis.NewScript(serverMillis + `
return redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[1]), '+inf')`)

// serverMillis starts a script with now, the server's time in
// milliseconds. A script that writes after TIME must replicate its
// effects, not itself: Redis 5 and later do so by default, Redis 3.2 and 4
// when asked (redis.replicate_commands; a no-op, still defined, later).
const serverMillis = `redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

// epoch returns the store's epoch, writing a new one when there is none.
func (s *Store) epoch(ctx context.Context) (string, error) {
	v, err := s.client.Get(ctx, s.epochKey).Result()
	if !errors.Is(err, goredis.Nil) {
		return v, err
	}
	if err := s.client.SetNX(ctx, s.epochKey, rand.Text(), 0).Err(); err != nil {
		return "", err
	}
	return s.client.Get(ctx, s.epochKey).Result()
}

// openMarkers reads, at Open, the epoch (written when there is none) and
// the sequence the watcher starts from; a server that refuses the write
// for now (NOREPLICAS while its replicas catch up) leaves it to the
// watcher's first round.
func (s *Store) openMarkers(ctx context.Context) {
	s.openEpoch, _ = s.epoch(ctx)
	s.openSeq, _ = s.client.Get(ctx, s.seqKey).Int64() // none yet: 0
}

// leave removes the instance from the instances set, at Close: the
// offline tools need not wait for it to time out.
func (s *Store) leave(ctx context.Context) {
	s.client.ZRem(ctx, s.instancesKey, s.id)
}

// isReply reports whether err is Redis's answer (an ACL's NOPERM, a
// replica's READONLY), rather than no answer.
func isReply(err error) bool {
	var reply goredis.Error
	return errors.As(err, &reply) && !errors.Is(err, goredis.Nil)
}
