package redis

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/internal/redisinfo"
)

// message is the invalidation published for a write of key.
func (s *Store) message(key string) string { return s.id + ":" + key }

// publishCheckKey is the key named by the invalidation checkPublish
// sends: reserved (see reservedPrefix), so no cache holds it, and the
// other instances drop nothing when they receive it.
const publishCheckKey = reservedPrefix + "publish-check"

// checkPublish publishes an invalidation that changes nothing, at Open:
// every write publishes its keys, and fails when Redis refuses that, so a
// user whose ACL lacks the channel (or a server without pub/sub) could
// write nothing. Open refuses such a store with the reason, rather than
// leaving every write to fail with it. It publishes on the node that
// holds the store's keys, where the writes publish (a cluster client
// would pick any node, dialing one Open has no other use for).
func (s *Store) checkPublish(ctx context.Context) error {
	n, err := s.node(ctx)
	if err != nil {
		return err
	}
	return n.Publish(ctx, s.channel, s.message(publishCheckKey)).Err()
}

// channelRefused reports whether err is Redis's refusal of the invalidation
// channel to the user's ACL: NOPERM for a PUBLISH or SUBSCRIBE, or a
// script's refused PUBLISH.
func channelRefused(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "channel") && (strings.Contains(msg, "NOPERM") || strings.Contains(msg, "can't publish"))
}

// channelHint is what an error of channelRefused adds: which permission
// the user lacks.
func (s *Store) channelHint() string {
	return " (the URL's Redis user may not use the invalidation channel " + s.channel +
		": its ACL needs the channel permission &" + s.prefix + "*; every write is refused until it has it)"
}

// OnInvalidate implements storage.Invalidator: fn is called, from a
// background goroutine, with every key another instance (using the same
// prefix) writes, and with the empty key whenever the subscription to
// those changes is established, lost or re-established, when changes may
// have been missed, and when the store's records were removed behind
// Gatehouse's back (epoch.go). fn must not block for long.
func (s *Store) OnInvalidate(fn func(key string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.listeners = append(s.listeners, fn)
	s.startSubscriber()
}

// startSubscriber starts the subscriber and the epoch watcher with the
// first listener, of invalidations or of news. s.mu must be held.
func (s *Store) startSubscriber() {
	if s.subscribed {
		return
	}
	s.subscribed = true
	s.wg.Go(s.subscribe)
	s.wg.Go(s.watchEpoch)
}

// newsPrefix starts the key of an invalidation message that carries news
// (Announce) rather than a written key: reserved (see reservedPrefix), so
// that an instance of a version without news drops nothing for it.
const newsPrefix = reservedPrefix + "news/"

// Announce implements storage.Announcer: news is published on the
// invalidation channel, where the other instances' subscribers take it
// for their Listen listeners.
func (s *Store) Announce(ctx context.Context, news string) error {
	n, err := s.node(ctx)
	if err != nil {
		return err
	}
	if err := n.Publish(ctx, s.channel, s.message(newsPrefix+news)).Err(); err != nil {
		return s.failed("redis announce", err)
	}
	return nil
}

// Listen implements storage.Announcer.
func (s *Store) Listen(fn func(news string)) (stop func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return func() {}
	}
	if s.newsListeners == nil {
		s.newsListeners = map[*func(string)]struct{}{}
	}
	s.newsListeners[&fn] = struct{}{}
	s.startSubscriber()
	return func() {
		s.mu.Lock()
		delete(s.newsListeners, &fn)
		s.mu.Unlock()
	}
}

// tell calls every news listener with news.
func (s *Store) tell(news string) {
	s.mu.Lock()
	listeners := make([]func(string), 0, len(s.newsListeners))
	for fn := range s.newsListeners {
		listeners = append(listeners, *fn)
	}
	s.mu.Unlock()
	for _, fn := range listeners {
		fn(news)
	}
}

// notify calls every listener with key.
func (s *Store) notify(key string) {
	s.mu.Lock()
	listeners := s.listeners
	s.mu.Unlock()
	for _, fn := range listeners {
		fn(key)
	}
}

// pause waits d, and reports false instead if the store closes meanwhile.
func (s *Store) pause(d time.Duration) bool {
	select {
	case <-s.ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// Coherent implements storage.Invalidator: true from the subscription's
// confirmation until it fails.
func (s *Store) Coherent() bool { return s.coherent.Load() }

// subscribe keeps a subscription to the invalidation channel until Close,
// resubscribing with backoff whenever it fails. While there is none, the
// store is not Coherent, and a warning says so at most once a minute.
func (s *Store) subscribe() {
	backoff := minBackoff
	down, warned := time.Now(), time.Time{}
	for {
		ps := s.client.Subscribe(s.ctx, s.channel)
		stop := context.AfterFunc(s.ctx, func() { ps.Close() })
		established, err := s.listen(ps)
		s.coherent.Store(false) // before the purge: nothing read from now on is kept
		stop()
		ps.Close()
		if s.ctx.Err() != nil {
			return
		}
		switch now := time.Now(); {
		case established:
			s.notify("") // changes made from now on until resubscribed are missed
			backoff, down, warned = minBackoff, now, now
			s.log.Warn("lost the Redis invalidation subscription; resubscribing (until then the cache is bypassed)", zap.Error(err))
		case now.Sub(warned) >= time.Minute:
			warned = now
			msg := "the Redis invalidation subscription is not established; the cache is bypassed, every read goes to Redis"
			if channelRefused(err) {
				msg += s.channelHint()
			}
			s.log.Warn(msg, zap.Duration("for", now.Sub(down).Round(time.Millisecond)), zap.Error(err))
		}
		s.reloadSlotMap()
		if !s.pause(backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// listen delivers invalidations from ps until it fails; established
// reports whether the subscription was confirmed at all.
func (s *Store) listen(ps *goredis.PubSub) (established bool, err error) {
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(s.ctx, healthInterval)
		var ne net.Error
		switch {
		case err == nil:
		case !pinged && errors.As(err, &ne) && ne.Timeout():
			// Quiet channel: check the connection is alive.
			if err := ps.Ping(s.ctx); err != nil {
				return established, err
			}
			pinged = true
			continue
		default:
			return established, err
		}
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" {
				established = true
				s.coherent.Store(true) // before the purge: what is kept from now on is invalidated
				s.notify("")           // changes made before now may have been missed
				s.noticeRestart()
			}
		case *goredis.Message:
			s.deliver(m.Payload)
		case *goredis.Pong:
			pinged = false
		}
	}
}

// noticeRestart runs as a subscription is confirmed: when the server's
// run_id differs from the one last seen, the server restarted (or another
// took its place, after a failover), and it may have come back with less
// than it had acknowledged (an older snapshot, writes its replica had not
// received), so noticeRestart says so and checks the server's settings
// again. A server that does not answer INFO is not checked.
func (s *Store) noticeRestart() {
	n, err := s.node(s.ctx)
	if err != nil {
		return
	}
	info, err := n.Info(s.ctx, "server").Result()
	id := redisinfo.Field(info, "run_id")
	if err != nil || id == "" || id == s.runID {
		return
	}
	if s.runID != "" {
		s.log.Warn("the Redis server restarted (run_id changed): state written since its last persisted snapshot may be lost; revocations made in that window may have come back",
			zap.String("run_id", id), zap.String("previous_run_id", s.runID))
		id = orDefault(s.checkDurability(s.ctx), id)
	}
	s.runID = id
}

// deliver passes on one invalidation message, "<instance id>:<key>",
// unless this instance sent it: to the news listeners when key is news
// (Announce), else to the invalidation listeners. A malformed message
// purges everything.
func (s *Store) deliver(payload string) {
	id, key, ok := strings.Cut(payload, ":")
	switch {
	case !ok || len(id) != idLen || key == "":
		s.log.Warn("malformed message on the Redis invalidation channel; dropping all cached entries")
		s.notify("")
	case id == s.id:
	case strings.HasPrefix(key, newsPrefix):
		s.tell(key[len(newsPrefix):])
	default:
		s.notify(key)
	}
}
