package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/keystore/rekeying"
	"github.com/gatehouse-auth/gatehouse/plugin/connector"
	"github.com/gatehouse-auth/gatehouse/rekey"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/migrate"
	"github.com/gatehouse-auth/gatehouse/storage/tagged"
)

// rekeyOptions are the flags of "caddy gatehouse rekey".
type rekeyOptions struct {
	store, keystorePath, dataDir string
	resume, report, retire       bool
	force                        bool
	// stopAfter, when positive, kills the process (SIGKILL) as it is
	// about to write the record batch after that many (a hidden flag,
	// for the tests: a crash at a chosen point).
	stopAfter int
}

// rekeyCommand is "caddy gatehouse rekey": the keystore replaced,
// offline.
func rekeyCommand() *cobra.Command {
	var o rekeyOptions
	c := &cobra.Command{
		Use:   "rekey --store <location> --keystore <file>",
		Short: "Replaces the keystore's master key and re-keys the store with it (offline)",
		Long: `
Generates a new master key for the keystore and moves the store to it: every
sealed secret (application key values, OTP secrets, the assertion signing
key, the connector CA key in <data-dir>/connector-ca/) is sealed again,
every record is tagged again, and the indexes made from a secret Gatehouse
holds (application key lookups, hardware-token marks) are made again. Use it
when the keystore file may have leaked.

What cannot be recomputed without a secret Gatehouse never holds (password
hashes keyed with the old pepper, ESA API password digests) keeps working:
the new keystore keeps the old index key as a retired key. A password is
hashed again with the new pepper at the account's next sign-in, an ESA API
credential's digest at its next use. Short-lived records keyed with the old
key are dropped: pending SMS codes, logins waiting for their second factor,
console setups and form tokens, the familiar networks of HTTP Basic. A
rotation's grace period ends (the previous value is not held). Sessions,
connector tokens and everything else stay.

Stop every Gatehouse instance using the store first (Badger's directory is
locked while Caddy runs; a Redis store is refused while an instance is
subscribed to its changes, checked again before each batch of records and
before the marker moves: an instance started meanwhile stops the run). The new keystore is written to <keystore>.new
first; the run then moves the records, seals the CA key again, keeps the old
file as <keystore>.retired-<time> (0600) and renames the new one into place.
Interrupted anywhere, it leaves <keystore>.new, which makes every start
refuse the keystore: run it again with --resume to finish. The run claims
the store (gatehouse/rekey): a run on another machine, or one without the
.new of an interrupted run, is refused before it writes anything. Then copy the new
keystore (and connector-ca/ca-key.sealed) to every instance, start them, and
destroy the .retired file (and its backups) once every instance runs with
the new one.

--report lists the accounts, ESA API credentials and application keys that
still depend on the retired key; --retire-old-pepper drops it from the
keystore (every instance stopped, the new file copied to each afterwards):
those passwords must then be set again, those credentials made again, those
application keys rotated. It refuses while any remain unless --force.

Example:
  caddy gatehouse rekey --store badger:/var/lib/caddy/gatehouse --keystore /var/lib/caddy/gatehouse/keystore.key`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			o.store = withEnvPassword(o.store)
			if o.dataDir == "" {
				o.dataDir = filepath.Dir(o.keystorePath)
			}
			switch {
			case o.report && o.retire:
				return errors.New("--report and --retire-old-pepper: choose one")
			case o.report || o.retire:
				return runRekeyRetire(c.ErrOrStderr(), o)
			}
			return runRekey(c.ErrOrStderr(), o)
		},
	}
	c.Flags().StringVar(&o.store, "store", "", "the store: "+migrate.LocationHelp)
	c.Flags().StringVar(&o.keystorePath, "keystore", "", "the keystore file the store's secrets are sealed with")
	c.Flags().StringVar(&o.dataDir, "data-dir", "", "the data_dir holding connector-ca/ (default: the keystore's directory)")
	c.Flags().BoolVar(&o.resume, "resume", false, "finish an interrupted rekey (<keystore>.new exists)")
	c.Flags().BoolVar(&o.report, "report", false, "list what still depends on the retired key, change nothing")
	c.Flags().BoolVar(&o.retire, "retire-old-pepper", false, "drop the retired key from the keystore")
	c.Flags().BoolVar(&o.force, "force", false, "with --retire-old-pepper: drop it although accounts, credentials or keys still depend on it")
	c.Flags().IntVar(&o.stopAfter, "stop-after", 0, "kill the process after that many record batches (for tests)")
	_ = c.Flags().MarkHidden("stop-after")
	c.MarkFlagRequired("store")
	c.MarkFlagRequired("keystore")
	return c
}

// runRekey moves the store at o.store from the keystore at
// o.keystorePath to a new one, or finishes an interrupted run.
func runRekey(out io.Writer, o rekeyOptions) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	loc, err := migrate.ParseLocation(o.store)
	if err != nil {
		return fmt.Errorf("--store: %v", err)
	}
	path := o.keystorePath
	unlock, err := lockRekey(path)
	if err != nil {
		return fmt.Errorf("rekey: %w", err)
	}
	defer unlock()
	newPath := path + keystore.NewSuffix
	old, err := keystore.OpenFile(path, false)
	if err != nil {
		return fmt.Errorf("--keystore: %w", err)
	}
	_, statErr := os.Lstat(newPath)
	pending := !errors.Is(statErr, fs.ErrNotExist)
	switch {
	case pending && !o.resume:
		return fmt.Errorf("rekey: %s exists: an earlier rekey was interrupted; run it again with --resume to finish it", newPath)
	case !pending && o.resume:
		return fmt.Errorf("rekey: nothing to resume: %s does not exist (a rekey that finished renamed it to %s)", newPath, path)
	}
	st, err := loc.Open(ctx, migrate.InPlace, caddy.Log().Named("gatehouse.rekey"))
	if err != nil {
		return fmt.Errorf("opening --store: %w", err)
	}
	defer st.Close()
	var next *keystore.Keystore
	if pending {
		if next, err = keystore.OpenFile(newPath, false); err != nil {
			return fmt.Errorf("rekey: %w", err)
		}
		if !next.HasIndexKey(old.IndexKeyID()) {
			return fmt.Errorf("rekey: %s was not made from %s (it does not keep its index key): is --keystore the file the rekey started from?", newPath, path)
		}
		if err := rekey.Claim(ctx, st, rekeying.Keys{Old: old, New: next}); err != nil {
			return fmt.Errorf("rekey: %s: %w", loc, err)
		}
		fmt.Fprintf(out, "rekey: resuming with %s\n", newPath)
	} else {
		k := rekeying.Keys{Old: old, New: old}
		if _, err := rekey.Check(ctx, st, k); err != nil {
			return fmt.Errorf("rekey: %s: %w; nothing changed", loc, err)
		}
		// The claim before the secrets: a run interrupted elsewhere has
		// moved some (the signing key), which would otherwise be told as
		// a store made with another keystore.
		switch id, claimed, err := rekey.Claimed(ctx, st, old); {
		case err != nil:
			return fmt.Errorf("rekey: %s: %w; nothing changed", loc, err)
		case claimed:
			return fmt.Errorf("rekey: %s: %w, towards the keystore of index key %s: finish it with --resume on the machine "+
				"holding its %s (never removed: it is the only copy of the key of the records it moved); nothing changed",
				loc, rekey.ErrClaimed, id, filepath.Base(newPath))
		}
		if err := checkKeystoreOfStore(ctx, st, old); err != nil {
			return fmt.Errorf("rekey: %s: %w; nothing changed", loc, err)
		}
		if err := checkConnectorCA(ctx, st, o.dataDir, old); err != nil {
			return fmt.Errorf("rekey: %w; nothing changed", err)
		}
		if next, err = old.Successor(); err != nil {
			return fmt.Errorf("rekey: %w", err)
		}
		claim := rekeying.Keys{Old: old, New: next}
		if err := rekey.Claim(ctx, st, claim); err != nil {
			return fmt.Errorf("rekey: %s: %w; nothing changed", loc, err)
		}
		if err := next.WriteNew(newPath); err != nil {
			if relErr := rekey.Release(ctx, st, claim); relErr != nil {
				return fmt.Errorf("rekey: %w; nothing changed but the claim %s left in the store (withdrawing it: %v)", err, rekey.ClaimKey, relErr)
			}
			return fmt.Errorf("rekey: %w; nothing changed", err)
		}
		fmt.Fprintf(out, "rekey: new keystore written to %s; until this run finishes, every start refuses %s\n", newPath, path)
	}
	k := rekeying.Keys{Old: old, New: next}
	// The CA key first: a wrong --data-dir or a broken file stops the run
	// before any record moved.
	found, changed, err := connector.RekeyCAKey(o.dataDir, k)
	if err != nil {
		return fmt.Errorf("rekey: %w; run it again with --resume to finish", err)
	}
	spilled, err := retagSpillFiles(o.dataDir, k)
	if err != nil {
		return fmt.Errorf("rekey: %w; run it again with --resume to finish", err)
	}
	// An instance started since the store was opened (on another host,
	// with the old keystore: no <keystore>.new stops it there) stops the
	// run before the next batch, and before the marker moves.
	opts := rekey.Options{Progress: progress(out, "rekey: %d records handled\n"),
		Guard: func(ctx context.Context) error { return loc.RefuseInUse(ctx, st) }}
	if o.stopAfter > 0 {
		opts.BatchOps = 1 // a record a batch: the kill lands at a chosen record
	}
	res, err := rekey.Records(ctx, stopAfter(st, o.stopAfter), k, opts)
	if err != nil {
		return fmt.Errorf("rekey: %s, interrupted (%d records moved, %d dropped): %w; run it again with --resume to finish", loc, res.Moved, res.Dropped, err)
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("rekey: closing %s: %w; run it again with --resume to finish", loc, err)
	}
	retired, err := keepRetired(path, old)
	if err != nil {
		return fmt.Errorf("rekey: keeping the old keystore: %w; run it again with --resume to finish", err)
	}
	if err := os.Rename(newPath, path); err != nil {
		return fmt.Errorf("rekey: installing the new keystore: %w; run it again with --resume to finish", err)
	}
	if err := syncDirOf(path); err != nil {
		fmt.Fprintf(out, "rekey: warning: %v\n", err)
	}
	installed, err := keystore.Open(path, false)
	if err == nil {
		err = installed.NoteTaggedStore()
	}
	if err != nil {
		fmt.Fprintf(out, "rekey: warning: %v\n", err)
	}
	fmt.Fprintf(out, "rekey: %s moved to the new keystore: %d records tagged again (secrets sealed again, indexes made again), %d dropped, %d moved by an earlier run\n",
		loc, res.Moved, res.Dropped, res.Done)
	if res.Foreign > 0 {
		fmt.Fprintf(out, "rekey: warning: %d records (%s) verified under neither keystore (written without it, refused before as now); left as they are\n",
			res.Foreign, strings.Join(res.ForeignKinds, ", "))
	}
	if spilled > 0 {
		fmt.Fprintf(out, "rekey: %d audit events waiting in the spill files of %s tagged again\n", spilled, o.dataDir)
	}
	switch caDir := filepath.Join(o.dataDir, connector.CADir); {
	case changed:
		fmt.Fprintf(out, "rekey: connector CA key in %s sealed again\n", caDir)
	case found:
		fmt.Fprintf(out, "rekey: connector CA key in %s was sealed again by an earlier run\n", caDir)
	default:
		fmt.Fprintf(out, "rekey: no connector CA in %s (none made yet)\n", caDir)
	}
	fmt.Fprintf(out, "rekey: %s is the new keystore (index key %s; the old one, %s, is kept retired for password hashes and ESA API digests).\n"+
		"rekey: the old keystore is kept as %s: destroy it (and every backup of it) once every instance runs with the new one.\n"+
		"rekey: copy %s and %s to every instance sharing the store, then start them. `caddy gatehouse rekey --report` lists what still depends on the retired key.\n",
		path, next.IndexKeyID(), old.IndexKeyID(), retired, path, filepath.Join(o.dataDir, connector.CADir, "ca-key.sealed"))
	return nil
}

// keepRetired keeps the old keystore file as <path>.retired-<time>, 0600,
// unless an earlier, interrupted, run kept it already; it returns the
// name.
func keepRetired(path string, old *keystore.Keystore) (string, error) {
	// The directory is listed, not globbed: a path with a pattern
	// character would match other files.
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), filepath.Base(path)+".retired-") || strings.HasSuffix(e.Name(), ".tmp") {
			continue // not a kept keystore, or a copy a crash cut short (SaveAs)
		}
		m := filepath.Join(filepath.Dir(path), e.Name())
		if ks, err := keystore.OpenFile(m, false); err == nil && ks.Equal(old) {
			return m, nil
		}
	}
	name := path + ".retired-" + time.Now().UTC().Format("20060102T150405Z")
	return name, old.SaveAs(name)
}

// syncDirOf makes a rename in path's directory durable.
func syncDirOf(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// retagSpillFiles tags the lines of the audit spill files in dataDir
// (events an instance could not write to its store yet) again with the
// new keystore, and returns how many.
func retagSpillFiles(dataDir string, k rekeying.Keys) (int, error) {
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		return 0, nil //nolint:nilerr // no data directory: no spill file
	}
	tagger := func(ks *keystore.Keystore) audit.SpillTagger {
		return func(key string, event []byte) []byte {
			tag := ks.RecordTag(spillTagPrefix+key, event)
			return tag[:]
		}
	}
	total := 0
	for _, entry := range entries {
		base := entry.Name()
		if !strings.HasPrefix(base, "audit-spill-") || !strings.HasSuffix(base, ".jsonl") || !entry.Type().IsRegular() {
			continue
		}
		n, err := audit.RetagSpill(filepath.Join(dataDir, base), tagger(k.Old), tagger(k.New))
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// checkConnectorCA refuses a rekey whose data directory's connector CA
// key does not open with ks, or which holds none although the store has
// connectors (--data-dir names the wrong directory): the run must seal it
// again with the new keystore.
func checkConnectorCA(ctx context.Context, st storage.Store, dataDir string, ks *keystore.Keystore) error {
	found, _, err := connector.RekeyCAKey(dataDir, rekeying.Keys{Old: ks, New: ks}) // changes nothing: it opens with "New"
	if err != nil || found {
		return err
	}
	connectors := false
	err = storage.ScanKeys(ctx, st, connector.RecordPrefix, func(string) error {
		connectors = true
		return storage.ErrStopScan
	})
	if err != nil {
		return err
	}
	if connectors {
		return fmt.Errorf("the store has connectors but %s holds no connector CA key: pass --data-dir <the instances' data_dir>",
			filepath.Join(dataDir, connector.CADir))
	}
	return nil
}

// stopAfter is st, which kills the process (as kill -9 would: nothing
// closed, nothing flushed) before the batch after the first n, for
// --stop-after; st itself when n is 0.
func stopAfter(st storage.Store, n int) storage.Store {
	if n <= 0 {
		return st
	}
	return &killingStore{Store: st, left: n}
}

// killingStore kills the process at its batch after the first left ones.
type killingStore struct {
	storage.Store
	left int
}

// Batch implements storage.Store.
func (s *killingStore) Batch(ctx context.Context, ops []storage.Op) error {
	if s.left <= 0 {
		if self, err := os.FindProcess(os.Getpid()); err == nil {
			_ = self.Kill() // SIGKILL (TerminateProcess on Windows)
		}
		select {} // until the kill lands
	}
	s.left--
	return s.Store.Batch(ctx, ops)
}

// ScanKeys implements storage.KeyScanner with the store's own.
func (s *killingStore) ScanKeys(ctx context.Context, prefix string, fn func(string) error) error {
	return storage.ScanKeys(ctx, s.Store, prefix, fn)
}

// runRekeyRetire reports what still depends on the keystore's retired
// keys, and with o.retire drops them.
func runRekeyRetire(out io.Writer, o rekeyOptions) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	name := "rekey --report"
	if o.retire {
		name = "rekey --retire-old-pepper"
		unlock, err := lockRekey(o.keystorePath)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer unlock()
	}
	loc, ks, st, err := openOffline(ctx, "rekey", o.store, o.keystorePath)
	if err != nil {
		return err
	}
	defer st.Close()
	records, err := tagged.Open(ctx, st, ks, tagged.Options{})
	if err != nil {
		return fmt.Errorf("%s: %s: %w", name, loc, err)
	}
	r, err := rekey.Survey(ctx, records, ks)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", name, loc, err)
	}
	if len(r.Retired) == 0 {
		fmt.Fprintf(out, "%s: %s keeps no retired key (index key %s): nothing depends on an old one\n", name, o.keystorePath, r.Current)
		return nil
	}
	list := func(what string, names []string, then string) {
		if len(names) == 0 {
			return
		}
		shown := names
		if len(shown) > 50 {
			shown = shown[:50]
		}
		more := ""
		if len(names) > len(shown) {
			more = fmt.Sprintf(" and %d more", len(names)-len(shown))
		}
		fmt.Fprintf(out, "%s: %d %s %s: %s%s\n", name, len(names), what, then, strings.Join(shown, ", "), more)
	}
	fmt.Fprintf(out, "%s: index key %s; retired: %s\n", name, r.Current, strings.Join(r.Retired, ", "))
	list("accounts", r.Accounts, "have a password hash under a retired pepper (re-hashed at their next password sign-in; after --retire-old-pepper their password must be set again)")
	list("ESA API credentials", r.Credentials, "have a password digest under a retired key (made again at their next use; after --retire-old-pepper they must be made again)")
	list("application keys", r.AppKeys, "have a value issued under a retired key (after --retire-old-pepper it is refused until the key is rotated)")
	if !r.Pending() {
		fmt.Fprintf(out, "%s: nothing depends on the retired keys any more\n", name)
	}
	if !o.retire {
		return nil
	}
	if r.Pending() && !o.force {
		return fmt.Errorf("%s: refused: the accounts, credentials and keys listed still depend on the retired key; "+
			"wait for them to sign in, or run again with --force to drop it anyway (those passwords must then be set again, "+
			"those credentials made again, those keys rotated)", name)
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("%s: closing %s: %w", name, loc, err)
	}
	if err := ks.DropRetired(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	fmt.Fprintf(out, "%s: dropped the retired keys from %s; copy it to every instance sharing the store, and destroy the older copies "+
		"(and the .retired file) of it\n", name, o.keystorePath)
	return nil
}
