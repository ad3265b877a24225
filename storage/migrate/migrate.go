// Package migrate copies Gatehouse state from one store to another, for
// example from the embedded Badger backend to a Redis server when a
// single instance becomes several, or back.
//
// Locations are written as "badger:<dir>" or as a Redis URL
// ("redis://[user:password@]host:port/db", "rediss://..." for TLS), as on
// the command line of "caddy gatehouse migrate". Every record is copied
// through the storage.Store interface of both sides, so the Redis key
// prefix is handled by the Redis backend, with its remaining lifetime:
// records whose expiry has passed are skipped, records without expiry stay
// without expiry. The destination must hold no record, unless the copy
// resumes an interrupted one (IntoPartial): a copy never deletes, so one
// into a store with state of its own would keep records the source
// deleted, revoked credentials among them. Values are
// copied byte for byte: their keystore tags (storage/tagged) bind the key
// and the keystore, not the backend, so they stay valid.
package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/redis"
)

// BatchSize is the most records Copy writes in one storage.Store.Batch.
const BatchSize = 500

// batchBytes caps the keys and values of one batch (a single larger record
// goes alone), keeping every batch well inside Badger's transaction limit.
const batchBytes = 1 << 20

// redisTimeout bounds dialing and each network read or write of a Redis
// side: more than the data plane's default, since one batch carries up to
// a megabyte.
const redisTimeout = 5 * time.Second

// badgerSubdir is where Gatehouse keeps its Badger database inside its
// data_dir.
const badgerSubdir = "badger"

// badgerManifest is a file every Badger database directory holds.
const badgerManifest = "MANIFEST"

// Result counts what Copy did.
type Result struct {
	// Copied is the number of records written to the destination.
	Copied int
	// Expired is the number of records the source still listed whose
	// expiry had passed by the time they were to be written; they are not
	// written. Records that had already expired before the copy started
	// are invisible to Scan and not counted.
	Expired int
}

// Into says what Copy may find in the destination.
type Into int

const (
	// IntoEmpty: the destination must hold no record (ErrNotEmpty).
	IntoEmpty Into = iota + 1
	// IntoPartial: the destination may hold the records of an interrupted
	// copy from the same source, which are overwritten. Any other record
	// it holds is kept: never use it on a store with state of its own.
	IntoPartial
)

// ErrNotEmpty refuses a copy into a destination that holds records, when
// IntoEmpty: records the source lacks (a key deleted there, a revoked
// token) would be kept, and come back to life beside the copy.
var ErrNotEmpty = errors.New("the destination already holds records")

// Copy writes every live record of src to dst, with its remaining TTL, in
// batches of at most BatchSize records. It calls progress, when non-nil,
// after each batch with the number of records copied so far. It does not
// delete anything from dst, which must be empty unless into is
// IntoPartial. src and dst must be different stores.
func Copy(ctx context.Context, src, dst storage.Store, into Into, progress func(copied int)) (Result, error) {
	if into != IntoPartial {
		empty := true
		err := dst.Scan(ctx, "", func(storage.Entry) error {
			empty = false
			return storage.ErrStopScan
		})
		if err != nil {
			return Result{}, fmt.Errorf("reading the destination: %w", err)
		}
		if !empty {
			return Result{}, ErrNotEmpty
		}
	}
	return copyAt(ctx, src, dst, progress, time.Now)
}

// copyAt is Copy with the clock that remaining TTLs are computed from.
func copyAt(ctx context.Context, src, dst storage.Store, progress func(int), now func() time.Time) (Result, error) {
	var (
		res     Result
		pending []storage.Entry
		size    int
		ops     = make([]storage.Op, 0, BatchSize)
	)
	// flush writes the pending records. Their TTLs are computed just
	// before the write, so a record never outlives its source's expiry by
	// the time the batch took to collect.
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		at := now()
		ops = ops[:0]
		for _, e := range pending {
			var ttl time.Duration
			if !e.ExpiresAt.IsZero() {
				if ttl = e.ExpiresAt.Sub(at); ttl <= 0 {
					res.Expired++
					continue
				}
			}
			ops = append(ops, storage.Op{Kind: storage.OpPut, Key: e.Key, Value: e.Value, TTL: ttl})
		}
		clear(pending) // drop the references to the values
		pending, size = pending[:0], 0
		if len(ops) == 0 {
			return nil
		}
		if err := dst.Batch(ctx, ops); err != nil {
			return fmt.Errorf("writing records %d to %d to the destination: %w", res.Copied+1, res.Copied+len(ops), err)
		}
		res.Copied += len(ops)
		if progress != nil {
			progress(res.Copied)
		}
		return nil
	}
	var writeErr error
	err := src.Scan(ctx, "", func(e storage.Entry) error {
		n := len(e.Key) + len(e.Value)
		if len(pending) >= BatchSize || (len(pending) > 0 && size+n > batchBytes) {
			if writeErr = flush(); writeErr != nil {
				return writeErr
			}
		}
		e.Value = bytes.Clone(e.Value) // Scan may reuse it after we return
		pending = append(pending, e)
		size += n
		return nil
	})
	switch {
	case writeErr != nil:
		return res, writeErr
	case err != nil:
		return res, fmt.Errorf("reading the source after %d records: %w", res.Copied+len(pending), err)
	}
	return res, flush()
}

// Role says what an offline command does with a location; it decides
// whether a missing Badger database is created or is an error, and
// whether its files may change.
type Role uint8

const (
	// Source is only read from: its Badger database must exist, and is
	// opened read-only, so that a copy (a backup) changes none of its
	// files. One that was not closed (a crash) is refused: replaying its
	// log would write to it (open it InPlace to replay it).
	Source Role = iota + 1
	// Destination is written to: a Badger database is created in a
	// missing or empty directory.
	Destination
	// InPlace is read and changed where it is (tag-records,
	// rotate-signing-key): its Badger database must exist.
	InPlace
)

// Location is a parsed store location.
type Location struct {
	// badgerDir is the absolute Badger directory, or empty for Redis.
	badgerDir string
	// redisURL is the URL as given (it may hold a password).
	redisURL string
	// name is the display form, without credentials.
	name string
}

// LocationHelp describes the accepted location syntax, for flag help.
const LocationHelp = `badger:<dir> or redis://[user:password@]host:port/db (rediss:// for TLS). ` +
	`For badger, <dir> may be Gatehouse's data_dir or the Badger directory itself: ` +
	`if <dir>/badger exists it is used, otherwise <dir> is the Badger directory`

// ParseLocation parses "badger:<dir>" or a redis:// or rediss:// URL.
// For Badger it resolves the directory: <dir>/badger when that exists
// (Gatehouse keeps its database there inside its data_dir), else <dir>.
// Errors never include a password.
func ParseLocation(spec string) (Location, error) {
	scheme, rest, ok := strings.Cut(spec, ":")
	switch {
	case ok && scheme == "badger":
		if rest == "" {
			return Location{}, errors.New("badger: needs a directory, as in badger:/var/lib/caddy/gatehouse")
		}
		dir, err := filepath.Abs(rest)
		if err != nil {
			return Location{}, fmt.Errorf("badger directory %q: %v", rest, err)
		}
		if fi, err := os.Stat(filepath.Join(dir, badgerSubdir)); err == nil && fi.IsDir() {
			dir = filepath.Join(dir, badgerSubdir)
		}
		return Location{badgerDir: dir, name: "badger:" + dir}, nil
	case ok && (scheme == "redis" || scheme == "rediss"):
		if err := redis.CheckURL(spec); err != nil {
			return Location{}, err
		}
		return Location{redisURL: spec, name: redis.Describe(spec)}, nil
	case !ok && spec == "badger":
		return Location{}, errors.New("badger needs a directory: badger:<dir>")
	default:
		// Not echoed: a mistyped URL may still hold a password.
		return Location{}, errors.New("want badger:<dir> or redis://[user:password@]host:port/db")
	}
}

// String is the display form of the location: "badger:<absolute dir>" or
// "scheme://host:port/db", never with a user name or password.
func (l Location) String() string { return l.name }

// Open opens the store at the location. A store to be written must not
// be in use: Badger locks its directory, so Caddy (or any other user)
// must be stopped first, and a Redis store to be written to is refused
// while Gatehouse instances are subscribed to it (refuseInUse); a Redis
// source may be copied while in use. A Badger source must already hold a database; a Badger
// destination is created in a missing or empty directory, but not in a
// directory holding other files (such as a data_dir that has no badger
// subdirectory yet). log receives the backends' warnings (except those
// of a Redis source, which are about writing); nil discards them.
func (l Location) Open(ctx context.Context, role Role, log *zap.Logger) (storage.Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if l.redisURL != "" {
		rlog := log.Named("redis")
		if role == Source {
			// Its warnings are about keeping writes (durability) and
			// invalidations, neither of which a copy from it needs.
			rlog = zap.NewNop()
		}
		st, err := redis.Open(ctx, l.redisURL, redis.Options{Timeout: redisTimeout, Logger: rlog})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l.name, err)
		}
		if role != Source {
			if err := refuseInUse(ctx, st, l.name, "nothing was changed"); err != nil {
				st.Close()
				return nil, err
			}
		}
		return st, nil
	}
	if l.badgerDir == "" {
		return nil, errors.New("migrate: zero Location")
	}
	if err := checkBadgerDir(l.badgerDir, role); err != nil {
		return nil, fmt.Errorf("%s: %w", l.name, err)
	}
	st, err := badger.Open(l.badgerDir, badger.Options{Logger: log.Named("badger"), ReadOnly: role == Source})
	if errors.Is(err, badger.ErrNeedsRecovery) {
		return nil, fmt.Errorf("%s: Caddy did not close this store (it was killed, or the machine stopped): its last writes are "+
			"in its log, which only an open for writing replays. Start and stop Caddy on it once, or copy it with --recover, "+
			"which writes to it", l.name)
	}
	if err != nil {
		if isLocked(err) {
			return nil, fmt.Errorf("%s: the Badger database is locked by another process; "+
				"stop Caddy (and anything else using it) first: %w", l.name, err)
		}
		return nil, fmt.Errorf("%s: %w", l.name, err)
	}
	return st, nil
}

// RefuseInUse checks again, during a long run of an offline tool, that
// no Gatehouse instance started on the store st (opened by Open at this
// location) since: an error for a Redis store that instances are now
// subscribed to (as Open's), nil for Badger, whose directory stays locked
// while the tool holds it open.
func (l Location) RefuseInUse(ctx context.Context, st storage.Store) error {
	rs, ok := st.(*redis.Store)
	if !ok || l.redisURL == "" {
		return nil
	}
	return refuseInUse(ctx, rs, l.name, "the run stopped before its next write, and what it wrote so far stays")
}

// refuseInUse refuses to write to the Redis store st (named name) while
// Gatehouse instances run on it: they would keep serving what they cached
// and loaded (the old signing key, records not tagged yet) and write
// beside the tool. Badger needs no such check: Caddy locks its directory.
// changed says what the tool has done to the store so far.
func refuseInUse(ctx context.Context, st *redis.Store, name, changed string) error {
	n, err := st.Instances(ctx)
	if err != nil {
		return fmt.Errorf("%s: counting the Gatehouse instances using it (the tool's Redis user needs ZCOUNT and PUBSUB NUMSUB): %w", name, err)
	}
	if n > 0 {
		return fmt.Errorf("%s: %d Gatehouse instance(s) are running on this store; %s. "+
			"Stop every Caddy that uses it first. An instance killed counts for 10 s more, and one cut off from Redis "+
			"until Redis drops its connection (its tcp-keepalive, 300 s by default; CLIENT LIST TYPE pubsub shows them); "+
			"an instance with the same prefix on another database of this server counts too (Pub/Sub is server-wide)", name, n, changed)
	}
	return nil
}

// checkBadgerDir refuses to read a directory that holds no Badger
// database, and to create one among unrelated files.
func checkBadgerDir(dir string, role Role) error {
	if _, err := os.Stat(filepath.Join(dir, badgerManifest)); err == nil {
		if role == Destination {
			return checkPrivate(dir)
		}
		return nil
	}
	entries, err := os.ReadDir(dir)
	switch {
	case role != Destination && errors.Is(err, os.ErrNotExist):
		return errors.New("no such directory")
	case role != Destination && err == nil:
		return errors.New("no Badger database here (no MANIFEST file, and no badger subdirectory)")
	case errors.Is(err, os.ErrNotExist):
		return nil // Badger creates it, for its owner alone
	case err != nil:
		return err
	case len(entries) > 0:
		return errors.New("the directory holds other files but no Badger database; " +
			"to create a new one for Gatehouse, name the badger subdirectory of its data_dir (<data_dir>/badger)")
	}
	return checkPrivate(dir)
}

// isLocked reports whether err is Badger failing to take its directory
// lock because another process (or store) holds it.
func isLocked(err error) bool {
	return errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EAGAIN) ||
		strings.Contains(err.Error(), "directory lock")
}
