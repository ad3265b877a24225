package redis

import (
	"context"
	"sync/atomic"

	goredis "github.com/redis/go-redis/v9"
)

// Listeners counts the connections subscribed to the store's
// invalidation channel, on every node of a Redis Cluster: a running
// Gatehouse instance holds one for as long as it runs (its cache's
// subscription, see subscribe), so a count above zero means that
// instances are using the store. The offline tools refuse to change a
// store in use with it. An instance cut off from Redis is still counted
// until Redis drops its connection (tcp-keepalive, 300 s by default); one
// that lost its subscription is not counted until it subscribes again.
func (s *Store) Listeners(ctx context.Context) (int64, error) {
	count := func(ctx context.Context, n goredis.UniversalClient) (int64, error) {
		subs, err := n.PubSubNumSub(ctx, s.channel).Result()
		return subs[s.channel], err
	}
	c, ok := s.client.(*goredis.ClusterClient)
	if !ok {
		n, err := count(ctx, s.client)
		if err != nil {
			return 0, s.failed("PUBSUB NUMSUB", err)
		}
		return n, nil
	}
	var total atomic.Int64
	err := c.ForEachShard(ctx, func(ctx context.Context, n *goredis.Client) error {
		k, err := count(ctx, n)
		total.Add(k)
		return err
	})
	if err != nil {
		return 0, s.failed("PUBSUB NUMSUB", err)
	}
	return total.Load(), nil
}
