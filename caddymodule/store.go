package caddymodule

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
	"github.com/gatehouse-auth/gatehouse/storage/redis"
)

// storePool keeps open stores across config reloads, keyed by location: a
// reload shares the open Badger DB (and its warm cache) instead of reopening it.
var storePool = caddy.NewUsagePool()

type pooledStore struct {
	backend storage.Store
	cache   *cache.Cache
}

// Destruct implements caddy.Destructor: the last user closes the store.
func (p *pooledStore) Destruct() error { return p.backend.Close() }

func validateStorage(spec string) error {
	switch {
	case spec == "" || spec == "badger":
		return nil
	case isRedisURL(spec):
		return redis.CheckURL(spec)
	default:
		// Not echoed: a mistyped URL may still hold a password.
		return fmt.Errorf("storage: use \"badger\" (default, embedded) or a redis:// or rediss:// URL")
	}
}

func isRedisURL(spec string) bool {
	u, err := url.Parse(spec)
	return err == nil && (u.Scheme == "redis" || u.Scheme == "rediss")
}

func storageName(spec string) string {
	if isRedisURL(spec) {
		return redis.Describe(spec) // never the password
	}
	return "badger"
}

// openStore returns the pooled store for spec, opening it on first use.
func openStore(ctx context.Context, spec, dataDir string, cacheSize int, logger *zap.Logger) (*pooledStore, string, error) {
	key := "badger:" + filepath.Join(dataDir, "badger")
	if isRedisURL(spec) {
		key = "redis:" + spec
	}
	val, _, err := storePool.LoadOrNew(key, func() (caddy.Destructor, error) {
		var backend storage.Store
		var err error
		if isRedisURL(spec) {
			backend, err = redis.Open(ctx, spec, redis.Options{Logger: logger.Named("redis")})
		} else {
			backend, err = badger.Open(filepath.Join(dataDir, "badger"), badger.Options{Logger: logger.Named("badger")})
		}
		if err != nil {
			return nil, fmt.Errorf("opening %s store: %w", storageName(spec), err)
		}
		return &pooledStore{backend: backend, cache: cache.New(backend, cacheSize)}, nil
	})
	if err != nil {
		return nil, "", err
	}
	return val.(*pooledStore), key, nil
}
