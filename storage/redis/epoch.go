package redis

import (
	"context"
	"crypto/rand"
	"errors"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// The store's epoch. A cache in front of the store learns of writes from
// the invalidation channel, and of a server that restarted from its
// run_id (noticeRestart); records removed behind Gatehouse's back on a
// server that stays up (FLUSHALL, FLUSHDB, a dump restored over the
// database) send neither, and the cache would go on answering from what
// it holds, deleted users and revoked keys too, until its entries expire.
// So Open writes a random value under epochKey when there is none (SET
// NX) and keeps the one it finds (openEpoch; the watcher's first read
// when the server refused it then); a subscribed instance reads it every
// epochInterval, and when it is gone or another, drops everything cached
// (the empty-key invalidation) and says so.

// epochInterval is how often a subscribed instance checks the epoch.
const epochInterval = time.Second

// watchEpoch checks the store's epoch every epochInterval until Close
// (see above); it runs beside the subscriber.
func (s *Store) watchEpoch() {
	t := time.NewTicker(epochInterval)
	defer t.Stop()
	known := s.openEpoch
	for {
		if current, err := s.epoch(s.ctx); err == nil {
			if known != "" && current != known {
				s.log.Error("the Redis store's records were removed or replaced behind Gatehouse's back (FLUSHALL, FLUSHDB, "+
					"a restored dump): every cached record was dropped. Users, keys, tokens and sessions are now what the "+
					"server holds; restore the store from a backup if this was not meant",
					zap.String("epoch", current), zap.String("previous_epoch", known))
				s.notify("")
			}
			known = current
		} else if s.ctx.Err() == nil {
			s.log.Debug("reading the store's epoch failed", zap.Error(err))
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

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
