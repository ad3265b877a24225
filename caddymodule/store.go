package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/internal/logthin"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/plugin/appkey"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
	"github.com/gatehouse-auth/gatehouse/storage/redis"
	"github.com/gatehouse-auth/gatehouse/storage/tagged"
)

// storePool keeps open stores across config reloads, keyed by location: a
// reload shares the open Badger DB (and its warm cache) instead of reopening it.
var storePool = caddy.NewUsagePool()

// storeTurnover serializes opening a pooled store with letting go of one:
// a replaced config lets go of its store in the background (App.Cleanup),
// and the UsagePool closes a store after it took it out of the pool, so
// that a config opening the same location meanwhile would otherwise open
// it a second time while the first is still closing (Badger refuses: its
// directory is locked).
var storeTurnover sync.Mutex

// releaseStore lets go of one use of the pooled store key: the last one
// closes it.
func releaseStore(key string) error {
	storeTurnover.Lock()
	defer storeTurnover.Unlock()
	_, err := storePool.Delete(key)
	return err
}

type pooledStore struct {
	backend storage.Store
	// key is the store's key in storePool.
	key string

	mu sync.Mutex
	// cache is over the backend's tagged records; the first start makes it
	// (records), with the keystore it then keeps (tags).
	cache *cache.Cache
	tags  tagged.Tagger
	// size is the cache_size the cache was made with.
	size CacheSize
	// audit is the audit writer of the store, shared by every config that
	// uses it, so that it outlives the last request of a config replaced
	// by a reload (see auditLog).
	audit *audit.Log
}

// auditLog returns the store's audit writer, made on first use (after
// records) with its spill file under dataDir; later starts, after a
// config reload, share it and give it their logger and settings. Requests
// still in flight on a replaced config record into it, and it is closed
// only with the store, when no config uses it any more.
func (p *pooledStore) auditLog(dataDir string, logger *zap.Logger, settings audit.Settings) *audit.Log {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.audit != nil {
		p.audit.Reconfigure(logger, settings)
		return p.audit
	}
	spill := auditSpillFile(dataDir, p.key)
	if old := legacySpillFile(dataDir, p.key); old != spill {
		// An earlier version named it with the Redis password in the hash;
		// a file already under the new name is never replaced.
		if _, err := os.Lstat(spill); errors.Is(err, fs.ErrNotExist) {
			if err := os.Rename(old, spill); err != nil && !errors.Is(err, fs.ErrNotExist) {
				logger.Warn("renaming the audit spill file an earlier version left", zap.String("from", old), zap.Error(err))
			}
		}
	}
	warnOfOtherSpillFiles(dataDir, spill, logger)
	tags := p.tags
	p.audit = audit.New(p.cache, logger, audit.Options{Settings: settings, SpillFile: spill,
		// The file shares data_dir's file system with the Badger store.
		SpillKeepFree: badger.MinFreeSpace,
		SpillTag: func(key string, event []byte) []byte {
			tag := tags.RecordTag(spillTagPrefix+key, event)
			return tag[:]
		},
		OnRecord: decisionCounters.CountAuditEvent})
	return p.audit
}

// warnOfOtherSpillFiles warns of each spill file in dataDir, other than
// spill, that holds events: one written for another store location, which
// only a start on that location writes to its store. The name is a hash of
// the location, so a data_dir restored to another path or a Redis store
// reached by another address (localhost for 127.0.0.1, another port, other
// URL options) leaves the former file unread, which a restore or a move
// gave no sign of. A config still draining after a reload that moved the
// store may be writing such a file: the events reach that store.
func warnOfOtherSpillFiles(dataDir, spill string, logger *zap.Logger) {
	// The directory is listed, not globbed: a data_dir holding a pattern
	// character ('[', '*', '?', '\\') would make filepath.Glob match the
	// files of other directories ("gate[1]" matching "gate1"), and name
	// another instance's events as this store's to take.
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		return
	}
	for _, entry := range entries {
		base := entry.Name()
		if !strings.HasPrefix(base, "audit-spill-") || !strings.HasSuffix(base, ".jsonl") {
			continue
		}
		name := filepath.Join(dataDir, base)
		if name == spill {
			continue
		}
		info, err := os.Lstat(name)
		if err != nil || !info.Mode().IsRegular() || info.Size() == 0 {
			continue
		}
		logger.Warn("the data directory holds an audit spill file of another store location: its audit events are written only by a start on that location; "+
			"if this store was moved or restored from there (another data_dir path, another Redis address or URL options), "+
			"stop Caddy and rename the file to this store's spill file (if that one is empty): the next start writes them",
			zap.String("path", name), zap.Int64("bytes", info.Size()), zap.String("this_store", spill))
	}
}

// spillTagPrefix sets the tags of the audit spill file's lines apart from
// the store's record tags (the same keystore key).
const spillTagPrefix = "audit-spill/"

// auditSpillFile is the spill file of the audit writer of the store with
// pool key storeKey: one per store, so that events a store refused are
// written to that store; named by a hash of the key without a Redis URL's
// user info, so that neither the name nor the log lines that name it
// carry a digest of the password, which a weak one could be guessed from.
func auditSpillFile(dataDir, storeKey string) string {
	if kind, raw, ok := strings.Cut(storeKey, ":"); ok {
		if u, err := url.Parse(raw); err == nil && u.User != nil {
			u.User = nil
			storeKey = kind + ":" + u.String()
		}
	}
	return legacySpillFile(dataDir, storeKey)
}

// legacySpillFile is the name an earlier version gave the spill file: a
// hash of the whole store key.
func legacySpillFile(dataDir, storeKey string) string {
	sum := sha256.Sum256([]byte(storeKey))
	return filepath.Join(dataDir, "audit-spill-"+hex.EncodeToString(sum[:8])+".jsonl")
}

// records returns the store's cache over its tagged records (storage/tagged),
// made on first use with ks and of size cacheSize; a store with untagged records
// (written by a version before tags, or without the keystore) is refused
// until the operator tags it (caddy gatehouse tag-records). Later starts,
// after a config reload, share it, provided they use the same keystore.
func (p *pooledStore) records(ctx context.Context, ks *keystore.Keystore, cacheSize CacheSize, logger *zap.Logger) (*cache.Cache, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cache != nil {
		if p.tags.RecordTag(tagged.MarkerKey, nil) != ks.RecordTag(tagged.MarkerKey, nil) {
			return nil, fmt.Errorf("the keystore changed while the store stayed open: restart Caddy to use another keystore")
		}
		if cacheSize != p.size {
			logger.Warn("cache_size changed, but the store stayed open across the reload and its cache keeps the size it was made with; "+
				"restart Caddy to resize it", zap.String("cache_size", cacheSize.String()), zap.String("in_use", p.size.String()))
		}
		return p.cache, nil
	}
	records, err := tagged.Open(ctx, p.backend, ks, tagged.Options{Skipped: skippedLogger(logger)})
	if untagged := (*tagged.UntaggedError)(nil); errors.As(err, &untagged) {
		// Its advice (tag-records) would tag the records with this
		// keystore when they were tagged with another.
		if err := checkKeystoreOfStore(ctx, p.backend, ks); err != nil {
			return nil, err
		}
	}
	if err != nil {
		return nil, err
	}
	if untagged := records.Untagged(); untagged != nil {
		logger.Error("the store holds records written without the keystore", zap.Error(untagged))
	}
	if err := ks.NoteTaggedStore(); err != nil {
		logger.Warn("cannot remember beside the keystore that its store is tagged; "+
			"a later `caddy gatehouse tag-records` could then tag records written without it", zap.Error(err))
	}
	p.cache, p.tags, p.size = cacheSize.newCache(records, cache.WithMaxAge(cacheMaxAge(p.backend))), ks, cacheSize
	records.OnInvalidate(markAgain(records, logger))
	return p.cache, nil
}

// markAgain is a listener of the store's invalidations that, whenever the
// store may have lost its data (the empty key: a Redis server restarted,
// a flush, or changes missed), checks the tag marker in the background
// and writes it again by Open's rules (tagged.Store.Mark), one check at a
// time. A running instance otherwise never wrote it again, and an
// instance started with another keystore on the store refilled since
// found tags that did not verify and no marker, which looked like an
// older version's store: it was told to tag the records.
func markAgain(records *tagged.Store, logger *zap.Logger) func(key string) {
	var running atomic.Bool
	return func(key string) {
		if key != "" || !running.CompareAndSwap(false, true) {
			return
		}
		go func() {
			defer running.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), markTimeout)
			defer cancel()
			switch wrote, err := records.Mark(ctx); {
			case wrote:
				logger.Warn("the store had lost its record tag marker (its data was lost or flushed): wrote it again",
					zap.String("key", tagged.MarkerKey))
			case err != nil && errors.As(err, new(*tagged.UntaggedError)):
				logger.Error("the store lost its record tag marker and holds records without a valid tag: not writing it again", zap.Error(err))
			case err != nil:
				logger.Debug("checking the store's record tag marker failed", zap.Error(err))
			}
		}()
	}
}

// markTimeout bounds one check of markAgain: a store whose marker is gone
// is read whole (tagged.Store.Mark counts its records).
const markTimeout = time.Minute

// checkKeystoreOfStore refuses a store whose secrets were sealed with
// another keystore than ks (see assertion.OpensWith); a store without a
// signing key holds nothing sealed.
func checkKeystoreOfStore(ctx context.Context, backend storage.Store, ks *keystore.Keystore) error {
	raw, err := backend.Get(ctx, assertion.StoreKey)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		// No signing key (lost, or never made): the application keys'
		// sealed values tell, when there are any.
		known, sealed, err := appkey.SealedWith(ctx, backend, ks)
		if err != nil || !known || sealed {
			return err
		}
		return anotherKeystore(ks, "its application keys' values do not open with it (it holds no assertion signing key)")
	case err != nil:
		return err
	case assertion.OpensWith(raw, ks):
		return nil
	}
	return anotherKeystore(ks, "its assertion signing key does not open with it")
}

// anotherKeystore is checkKeystoreOfStore's refusal; why says what did
// not open with ks.
func anotherKeystore(ks *keystore.Keystore, why string) error {
	return fmt.Errorf("the store was made with another keystore than %s: %s, and its records' tags do not verify; "+
		"use the keystore file this store was created with "+
		"(tagging its records with this one, `caddy gatehouse tag-records`, would lock out every secret sealed in it)", ks.Path(), why)
}

// cacheMaxAge is how long the cache in front of backend serves an entry
// without reading it again: ExclusiveMaxAge for Badger, which only this
// process writes (it locks its directory), always through the cache;
// DefaultMaxAge for any other store, such as Redis, whose changes made by
// other instances reach the cache over pub/sub.
func cacheMaxAge(backend storage.Store) time.Duration {
	if _, exclusive := backend.(*badger.Store); exclusive {
		return cache.ExclusiveMaxAge
	}
	return cache.DefaultMaxAge
}

// skippedLogger logs the records a listing left out because their tag did
// not verify, at most once a minute with how many since the last line:
// someone wrote them without the keystore.
func skippedLogger(logger *zap.Logger) func(error) {
	thin := &logthin.Thinner{Interval: time.Minute}
	return func(err error) {
		if due, since := thin.Due(time.Now()); due {
			logger.Error("a listing left out records that failed authentication: something other than Gatehouse wrote them",
				zap.Int64("left_out_since_last_line", since), zap.Error(err))
		}
	}
}

// Destruct implements caddy.Destructor: the last user closes the audit
// writer (writing what is queued) and then the store.
func (p *pooledStore) Destruct() error {
	p.mu.Lock()
	l := p.audit
	p.mu.Unlock()
	if l != nil {
		l.Close()
	}
	return p.backend.Close()
}

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
func openStore(ctx context.Context, spec, dataDir string, logger *zap.Logger) (*pooledStore, string, error) {
	key := "badger:" + filepath.Join(dataDir, "badger")
	if isRedisURL(spec) {
		key = "redis:" + spec
	}
	storeTurnover.Lock()
	defer storeTurnover.Unlock()
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
		return &pooledStore{backend: backend, key: key}, nil
	})
	if err != nil {
		return nil, "", err
	}
	return val.(*pooledStore), key, nil
}
