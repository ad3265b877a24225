package redis

import (
	"context"
	"sync/atomic"

	goredis "github.com/redis/go-redis/v9"
)

// Instances counts the Gatehouse instances running on the store, for the
// offline tools, which refuse to change a store in use: those that
// announced themselves within instanceTimeout (epoch.go: every running
// instance does each second, whether or not its subscription is up), or,
// where more, the connections subscribed to the store's invalidation
// channel on every node of a Redis Cluster (an older version's instance,
// which does not announce itself, holds one while it runs; Pub/Sub is
// server-wide, so an instance with the same prefix on another database of
// the server counts too). An instance killed counts until instanceTimeout
// has passed, and its subscription until Redis drops its connection.
func (s *Store) Instances(ctx context.Context) (int64, error) {
	announced, err := countScript.Run(ctx, s.client, []string{s.instancesKey}, instanceTimeout.Milliseconds()).Int64()
	if err != nil {
		return 0, s.failed("counting the instances", err)
	}
	subscribed, err := s.subscribers(ctx)
	if err != nil {
		return 0, s.failed("PUBSUB NUMSUB", err)
	}
	return max(announced, subscribed), nil
}

// subscribers counts the connections subscribed to the store's
// invalidation channel, on every node of a Redis Cluster.
func (s *Store) subscribers(ctx context.Context) (int64, error) {
	count := func(ctx context.Context, n goredis.UniversalClient) (int64, error) {
		subs, err := n.PubSubNumSub(ctx, s.channel).Result()
		return subs[s.channel], err
	}
	c, ok := s.client.(*goredis.ClusterClient)
	if !ok {
		return count(ctx, s.client)
	}
	var total atomic.Int64
	err := c.ForEachShard(ctx, func(ctx context.Context, n *goredis.Client) error {
		k, err := count(ctx, n)
		total.Add(k)
		return err
	})
	return total.Load(), err
}
