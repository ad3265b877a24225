package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"

	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/migrate"
	"github.com/gatehouse-auth/gatehouse/storage/tagged"
)

// migrateCommand is "caddy gatehouse migrate": the one subcommand that
// opens the stores itself instead of calling the admin API.
func migrateCommand() *cobra.Command {
	var from, to string
	var resume, recoverSource bool
	c := &cobra.Command{
		Use:   "migrate --from <location> --to <location>",
		Short: "Copies all Gatehouse state between Badger and Redis stores (offline, not through the admin API)",
		Long: `
Copies every record of one Gatehouse store to another, each with its
remaining lifetime, e.g. from the embedded Badger database to a Redis
server or back. Unlike the other subcommands it does not use the admin API
(--address is ignored): it opens both stores itself.

A location is badger:<dir> or redis://[user:password@]host:port/db
(rediss:// for TLS); a password left out of the URL is taken from the
environment variable GATEHOUSE_REDIS_PASSWORD (out of ps and the shell's
history), for every offline command. For badger, <dir> may be Gatehouse's data_dir or its
Badger directory: if <dir>/badger exists it is used, otherwise <dir> itself
is the Badger directory. A Badger destination is created in a missing or
empty directory only; for a data_dir without a database yet, name
<data_dir>/badger.

Caddy must be stopped while a Badger store is migrated: Badger locks its
directory. A Redis destination is refused while Gatehouse instances run on
it (subscribed to its changes); a Redis source may be copied while in
use. A Badger source is opened read-only, its files left as they
are; one Caddy did not close (killed) is refused unless --recover lets
migrate open it for writing, to replay its log first, as Caddy's next
start would. A source that holds no record is refused (a mistyped
location). Records whose expiry has passed are skipped; records without
expiry stay without expiry. The destination must be empty: a copy deletes
nothing, so records the destination held and the source lacks (a key or
user deleted since, a token revoked) would come back. To move data back to
where it came from, migrate into a new directory (or an emptied Redis
database) and move the old one aside. --resume continues an interrupted
copy into the destination it was filling; records already there are
overwritten by the source's. Progress and a summary go to stderr; the
password of a Redis URL is never printed.

Example:
  read -rs GATEHOUSE_REDIS_PASSWORD && export GATEHOUSE_REDIS_PASSWORD
  caddy gatehouse migrate --from badger:/var/lib/caddy/gatehouse --to redis://10.0.0.5:6379/0`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			into := migrate.IntoEmpty
			if resume {
				into = migrate.IntoPartial
			}
			source := migrate.Source
			if recoverSource {
				source = migrate.InPlace
			}
			return runMigrate(c.ErrOrStderr(), withEnvPassword(from), withEnvPassword(to), source, into)
		},
	}
	c.Flags().StringVar(&from, "from", "", "source store: "+migrate.LocationHelp)
	c.Flags().StringVar(&to, "to", "", "destination store: "+migrate.LocationHelp)
	c.Flags().BoolVar(&resume, "resume", false, "continue an interrupted copy into the destination it was filling")
	c.Flags().BoolVar(&recoverSource, "recover", false, "open a Badger source Caddy did not close for writing, to replay its log")
	c.MarkFlagRequired("from")
	c.MarkFlagRequired("to")
	return c
}

// runMigrate copies the store at from (opened as source: migrate.Source,
// or migrate.InPlace to recover it) to the store at to, printing
// progress at most once a second and a summary line to out.
func runMigrate(out io.Writer, from, to string, source migrate.Role, into migrate.Into) error {
	src, err := migrate.ParseLocation(from)
	if err != nil {
		return fmt.Errorf("--from: %v", err)
	}
	dst, err := migrate.ParseLocation(to)
	if err != nil {
		return fmt.Errorf("--to: %v", err)
	}
	if src.String() == dst.String() {
		return fmt.Errorf("--from and --to are the same store (%s)", src)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := caddy.Log().Named("gatehouse.migrate")
	srcStore, err := src.Open(ctx, source, log)
	if err != nil {
		return fmt.Errorf("opening --from store: %w", err)
	}
	defer srcStore.Close()
	// A source with no record is a location the instances do not use (a
	// Redis database number or address mistyped): a copy of it, answered
	// "copied 0 records" with success, was a backup of nothing.
	if empty, err := holdsNoRecord(ctx, srcStore); err != nil {
		return fmt.Errorf("reading --from store %s: %w", src, err)
	} else if empty {
		return fmt.Errorf("migrate: nothing copied: %s holds no records; check the location (the Redis database number and address, the data_dir) the instances use", src)
	}
	dstStore, err := dst.Open(ctx, migrate.Destination, log)
	if err != nil {
		return fmt.Errorf("opening --to store: %w", err)
	}
	defer dstStore.Close()

	res, err := migrate.Copy(ctx, srcStore, dstStore, into, progress(out, "migrate: %d records copied\n"))
	switch {
	case errors.Is(err, migrate.ErrNotEmpty):
		return fmt.Errorf("migrate: nothing copied: %s already holds records. A copy deletes nothing, so what it holds and %s lacks "+
			"(a key or user deleted since, a token revoked) would come back: migrate into a new directory or an emptied Redis database "+
			"and move the old one aside. --resume continues an interrupted copy into it", dst, src)
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("migrate: interrupted after %d records copied from %s to %s (run it again with --resume to finish)", res.Copied, src, dst)
	case err != nil:
		return fmt.Errorf("migrate: after %d records copied from %s to %s (run it again with --resume to finish): %w", res.Copied, src, dst, err)
	}
	if err := dstStore.Close(); err != nil {
		return fmt.Errorf("migrate: closing %s: %w", dst, err)
	}
	fmt.Fprintf(out, "migrate: copied %d records (%d expired skipped) from %s to %s\n", res.Copied, res.Expired, src, dst)
	return nil
}

// holdsNoRecord reports whether st holds no record at all.
func holdsNoRecord(ctx context.Context, st storage.Store) (bool, error) {
	empty := true
	err := st.Scan(ctx, "", func(storage.Entry) error {
		empty = false
		return storage.ErrStopScan
	})
	return empty, err
}

// tagRecordsCommand is "caddy gatehouse tag-records": the upgrade step
// from a version before record tags, run once by the operator.
func tagRecordsCommand() *cobra.Command {
	var store, keystorePath string
	var resume bool
	c := &cobra.Command{
		Use:   "tag-records --store <location> --keystore <file>",
		Short: "Tags every record of a store written by a version before record tags (offline, once)",
		Long: `
Gatehouse checks a tag (an HMAC under a key derived from the keystore) on
every record it reads, so that whoever can write to the store without the
keystore cannot forge a record. A store written by a version before tags
is refused at start-up until this command has tagged it; it never tags
records by itself, since records written without the keystore look just
the same as an older version's.

Run it once per store, with every Gatehouse instance using the store
stopped (a Redis store is refused while one is subscribed to its changes),
with the store's keystore file. A location is as for 'migrate'.
If a run was interrupted, run it again with --resume. Without --resume it
refuses a store of which some records are tagged already, since records
written beside them without the keystore look the same: in that case find
out what wrote the untagged records first. Once a keystore has been used
with a tagged store (a file <keystore>.tagged says so), it refuses
untagged records altogether: restore the store from a backup instead.

Example:
  caddy gatehouse tag-records --store badger:/var/lib/caddy/gatehouse --keystore /var/lib/caddy/gatehouse/keystore.key`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runTagRecords(c.ErrOrStderr(), withEnvPassword(store), keystorePath, resume)
		},
	}
	c.Flags().StringVar(&store, "store", "", "the store: "+migrate.LocationHelp)
	c.Flags().StringVar(&keystorePath, "keystore", "", "the keystore file the store's secrets are sealed with")
	c.Flags().BoolVar(&resume, "resume", false, "continue an interrupted run (records tagged already are kept)")
	c.MarkFlagRequired("store")
	c.MarkFlagRequired("keystore")
	return c
}

// runTagRecords tags the untagged records of the store at location with
// the keystore at keystorePath, printing progress at most once a second
// and a summary line to out.
func runTagRecords(out io.Writer, location, keystorePath string, resume bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	loc, ks, st, err := openOffline(ctx, "tag-records", location, keystorePath)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := checkKeystoreOfStore(ctx, st, ks); err != nil {
		return fmt.Errorf("tag-records: %s: %w; nothing changed", loc, err)
	}
	n, err := tagged.Upgrade(ctx, st, ks, resume, progress(out, "tag-records: %d records tagged\n"))
	if err != nil {
		return fmt.Errorf("tag-records: %s, after %d records tagged: %w", loc, n, err)
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("tag-records: closing %s: %w", loc, err)
	}
	if err := ks.NoteTaggedStore(); err != nil {
		fmt.Fprintf(out, "tag-records: warning: %v\n", err)
	}
	fmt.Fprintf(out, "tag-records: tagged %d records of %s; Gatehouse can start on it\n", n, loc)
	return nil
}

// rotateSigningKeyCommand is "caddy gatehouse rotate-signing-key": the
// signing key of the identity assertions replaced, offline.
func rotateSigningKeyCommand() *cobra.Command {
	var store, keystorePath string
	c := &cobra.Command{
		Use:   "rotate-signing-key --store <location> --keystore <file>",
		Short: "Replaces the identity assertions' signing key (offline)",
		Long: `
Replaces the signing key of the identity assertions (X-Gatehouse-Assertion)
in the store with a new one, sealed with the store's keystore. Every
instance started afterwards signs with the new key, and the JWKS
(/.well-known/gatehouse/jwks.json) lists only it, so assertions signed
with the old one no longer verify. Use it when the key may have leaked, or
on a schedule. Upstreams that cache the JWKS fetch it again when an
assertion names a key they do not know (docs/upstreams.md).

Stop every Gatehouse instance that uses the store first (Badger's
directory is locked while Caddy runs, and a Redis store is refused while
an instance is subscribed to its changes). The
keystore must be the store's: the old key is opened with it before
anything is written. A location is as for 'migrate'.

Example:
  caddy gatehouse rotate-signing-key --store badger:/var/lib/caddy/gatehouse --keystore /var/lib/caddy/gatehouse/keystore.key`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runRotateSigningKey(c.ErrOrStderr(), withEnvPassword(store), keystorePath)
		},
	}
	c.Flags().StringVar(&store, "store", "", "the store: "+migrate.LocationHelp)
	c.Flags().StringVar(&keystorePath, "keystore", "", "the keystore file the store's secrets are sealed with")
	c.MarkFlagRequired("store")
	c.MarkFlagRequired("keystore")
	return c
}

// runRotateSigningKey replaces the assertion signing key of the store at
// location, sealed with the keystore at keystorePath, and says so on out.
func runRotateSigningKey(out io.Writer, location, keystorePath string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	loc, ks, st, err := openOffline(ctx, "rotate-signing-key", location, keystorePath)
	if err != nil {
		return err
	}
	defer st.Close()
	records, err := tagged.Open(ctx, st, ks, tagged.Options{})
	var oldKID, newKID string
	if err == nil {
		oldKID, newKID, err = assertion.RotateKey(ctx, records, ks)
	}
	if err != nil {
		return fmt.Errorf("rotate-signing-key: %s: nothing changed: %w", loc, err)
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("rotate-signing-key: closing %s: %w", loc, err)
	}
	fmt.Fprintf(out, "rotate-signing-key: %s signs with key %s now (was %s); start Gatehouse\n", loc, newKID, oldKID)
	return nil
}

// openOffline opens the store at location (which must exist) and the
// keystore at keystorePath for the offline subcommand name; the caller
// closes the store.
func openOffline(ctx context.Context, name, location, keystorePath string) (migrate.Location, *keystore.Keystore, storage.Store, error) {
	loc, err := migrate.ParseLocation(location)
	if err != nil {
		return loc, nil, nil, fmt.Errorf("--store: %v", err)
	}
	ks, err := keystore.Open(keystorePath, false)
	if err != nil {
		return loc, nil, nil, fmt.Errorf("--keystore: %w", err)
	}
	st, err := loc.Open(ctx, migrate.InPlace, caddy.Log().Named("gatehouse."+name))
	if err != nil {
		return loc, nil, nil, fmt.Errorf("opening --store: %w", err)
	}
	return loc, ks, st, nil
}

// redisPasswordEnv names the environment variable the offline commands
// take the password of a redis:// location from when the URL has none, so
// that it stays off the command line (ps, the shell's history).
const redisPasswordEnv = "GATEHOUSE_REDIS_PASSWORD"

// withEnvPassword is location with the password of redisPasswordEnv when
// it is a Redis URL without one and the variable is set.
func withEnvPassword(location string) string {
	pw := os.Getenv(redisPasswordEnv)
	if pw == "" || !strings.HasPrefix(location, "redis://") && !strings.HasPrefix(location, "rediss://") {
		return location
	}
	u, err := url.Parse(location)
	if err != nil {
		return location // ParseLocation says what is wrong with it
	}
	if given, _ := u.User.Password(); given != "" {
		return location
	}
	u.User = url.UserPassword(u.User.Username(), pw)
	return u.String()
}

// progress returns a callback printing format with the count so far to
// out, at most once a second, for the offline commands' long runs.
func progress(out io.Writer, format string) func(n int) {
	last := time.Now()
	return func(n int) {
		if time.Since(last) >= time.Second {
			last = time.Now()
			fmt.Fprintf(out, format, n)
		}
	}
}
