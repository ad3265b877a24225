// Package rekey moves a store from one keystore to its successor
// (keystore.Keystore.Successor), offline: caddy gatehouse rekey. Every
// record is tagged again with the new keystore; the records that seal a
// secret or keep an index of one are rewritten by the package that owns
// them (a rekeying.Func): sealed again, their indexes made again; the
// short-lived records keyed with the old index key are dropped. What
// cannot be made again without a secret Gatehouse never holds (password
// hashes, ESA API password digests) stays as it is: the new keystore
// keeps the old index key as a retired key, under which it still
// verifies (see Report and keystore.Keystore.DropRetired).
//
// A run can be interrupted anywhere and run again (Records): each record
// moves in one atomic batch with what it implies, a record whose tag
// verifies under the new keystore is done, and the store's marker
// (tagged.MarkerKey) moves last.
package rekey

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/keystore/rekeying"
	"github.com/gatehouse-auth/gatehouse/plugin/appkey"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor/esa"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/counters"
	"github.com/gatehouse-auth/gatehouse/storage/tagged"
)

// kind is how records of a prefix (or one key, exact) are rewritten.
type kind struct {
	prefix string
	exact  bool
	// early kinds move before all others: they read records that move
	// later under the old keystore's indexes.
	early bool
	// rewrite is nil for a record that only needs its tag again.
	rewrite rekeying.Func
}

// drop is the rekeying.Func of records keyed with the old index key that
// live minutes and need not outlive a rekey.
func drop(context.Context, rekeying.Keys, string, []byte, rekeying.Reader) (rekeying.Change, error) {
	return rekeying.Change{Drop: true}, nil
}

// kinds lists the records that need more than a new tag.
var kinds = []kind{
	{prefix: appkey.SessionRecordPrefix, early: true, rewrite: appkey.RekeySessionRecord},
	{prefix: appkey.IndexRecordPrefix, rewrite: appkey.RekeyIndexRecord},
	{prefix: twofactor.RecordPrefix, rewrite: twofactor.RekeyRecord},
	{prefix: assertion.StoreKey, exact: true, rewrite: assertion.RekeyRecord},
	// A console's pending authenticator secret (sealed) and its used
	// form tokens (keyed digests): minutes long.
	{prefix: "console/totp/", rewrite: drop},
	{prefix: "console-form/", rewrite: drop},
	// A login waiting for its second factor: minutes long.
	{prefix: "portal/", rewrite: drop},
	// The networks an account signed in from (keyed digests of its
	// password hash): relearned at the next sign-in.
	{prefix: "basicfamiliar/", rewrite: drop},
}

func kindOf(key string) kind {
	for _, k := range kinds {
		if k.exact && key == k.prefix || !k.exact && strings.HasPrefix(key, k.prefix) {
			return k
		}
	}
	return kind{}
}

// Result counts what Records did.
type Result struct {
	// Moved counts the records tagged (and, where needed, rewritten)
	// with the new keystore by this run.
	Moved int
	// Dropped counts the records deleted (short-lived, or unusable
	// without the old keystore: a rotation's grace stub).
	Dropped int
	// Done counts the records found moved already (an earlier run).
	Done int
	// Foreign counts the records neither keystore tagged: written
	// without the keystore, refused before as after; they are left as
	// they are. ForeignKinds names their kinds.
	Foreign      int
	ForeignKinds []string
}

// ErrNotOldStore reports a store whose marker neither keystore tagged.
var ErrNotOldStore = errors.New("the store's records were tagged with neither keystore: use the keystore file this store was created with")

// State tells how far a store is moved to the new keystore.
type State int

// The states of a store (Check).
const (
	// NotStarted: the marker is the old keystore's (a run may have
	// moved some records already: it is only moved last).
	NotStarted State = iota
	// Finished: the marker is the new keystore's.
	Finished
)

// Check reads the store's marker: which keystore tagged it.
func Check(ctx context.Context, inner storage.Store, k rekeying.Keys) (State, error) {
	raw, err := inner.Get(ctx, tagged.MarkerKey)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, errors.New("the store has no record tag marker (gatehouse/tagged): start Gatehouse on it once (or run tag-records) before a rekey")
	}
	if err != nil {
		return 0, err
	}
	switch {
	case tagOK(k.New, tagged.MarkerKey, raw):
		return Finished, nil
	case tagOK(k.Old, tagged.MarkerKey, raw):
		return NotStarted, nil
	}
	return 0, ErrNotOldStore
}

// tagOK reports whether raw's tag verifies under ks.
func tagOK(ks *keystore.Keystore, key string, raw []byte) bool {
	if len(raw) < keystore.RecordTagSize {
		return false
	}
	value, tag := raw[:len(raw)-keystore.RecordTagSize], raw[len(raw)-keystore.RecordTagSize:]
	want := ks.RecordTag(key, value)
	return subtle.ConstantTimeCompare(tag, want[:]) == 1
}

// ClaimKey is the store key of a rekey's claim on the store (Claim):
// the index key ID of the keystore it moves the store to, tagged with
// the old one. Records deletes it with the marker's move.
const ClaimKey = "gatehouse/rekey"

// ErrClaimed reports a store another rekey claimed: one under way, or
// interrupted, towards another new keystore (another machine's, or one
// whose <keystore>.new was removed).
var ErrClaimed = errors.New("another rekey is under way on this store, or was interrupted")

// Claimed reports the index key ID of the keystore a rekey claimed the
// store for (Claim), if a claim tagged with old or with that keystore is
// there.
func Claimed(ctx context.Context, inner storage.Store, old *keystore.Keystore) (id string, ok bool, err error) {
	raw, err := inner.Get(ctx, ClaimKey)
	if errors.Is(err, storage.ErrNotFound) {
		return "", false, nil
	}
	if err != nil || len(raw) < keystore.RecordTagSize {
		return "", false, err
	}
	if !tagOK(old, ClaimKey, raw) {
		return "", false, nil // not written with the keystore: no rekey's
	}
	return string(raw[:len(raw)-keystore.RecordTagSize]), true, nil
}

// Claim claims the store for the move to k.New, or finds it claimed for
// it already (a run resumed): two runs towards two new keystores (two
// machines holding copies of the old one, a run again after its
// <keystore>.new was removed) would otherwise each move the records the
// other had not, and no keystore would open the store whole. It fails
// with ErrClaimed when the store is claimed for another keystore.
func Claim(ctx context.Context, inner storage.Store, k rekeying.Keys) error {
	id := k.New.IndexKeyID()
	swapped, err := tagged.Wrap(inner, k.Old, tagged.Options{}).CompareAndSwap(ctx, ClaimKey, nil, []byte(id), 0)
	if err != nil || swapped {
		return err
	}
	got, ok, err := Claimed(ctx, inner, k.Old)
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("%w: its claim %s does not verify with this keystore, so no rekey run from it wrote it "+
			"(something else with write access to the store did): find out what wrote it, then delete that record "+
			"(on Redis the key %s under the store's prefix, %q by default) and run again", ErrClaimed, ClaimKey, ClaimKey, "gatehouse:"+ClaimKey)
	case got != id:
		return fmt.Errorf("%w: towards the keystore of index key %s (this run's is %s): finish it with --resume "+
			"on the machine holding its <keystore>.new", ErrClaimed, got, id)
	}
	return nil
}

// Release withdraws the claim of a run that changed nothing else (its
// new keystore could not be written).
func Release(ctx context.Context, inner storage.Store, k rekeying.Keys) error {
	want := []byte(k.New.IndexKeyID())
	tag := k.Old.RecordTag(ClaimKey, want)
	_, err := inner.CompareAndSwap(ctx, ClaimKey, append(want, tag[:]...), nil, 0)
	return err
}

// Options tune Records.
type Options struct {
	// Progress, when not nil, is called with the number of keys handled
	// so far after each batch.
	Progress func(handled int)
	// BatchOps bounds the operations of one batch (several records, each
	// with what it implies, written at once); zero means 256. A batch is
	// atomic: a record moves whole with what it implies, or not at all.
	BatchOps int
	// Guard, when not nil, is called before each batch is written, the
	// marker's last batch included: an error stops the run there (run
	// it again to finish). The rekey command refuses with it a Redis
	// store an instance started on since the run began (one on another
	// host, with the old keystore, which no <keystore>.new stops): its
	// writes, tagged with the old keystore after the records were
	// listed, would stay behind, and it would serve on with the old key.
	Guard func(ctx context.Context) error
}

// Records moves every record of inner (the backend, without tags
// checked) from k.Old to k.New. Run again after an interruption, it
// finishes what the last run left: records moved already are skipped.
// The marker moves last, so until Records returns without error the old
// keystore's instances would find it and refuse every moved record, and
// the new keystore's would refuse the store ("tagged with another
// keystore"): the keystore file refuses to open while <keystore>.new is
// there.
func Records(ctx context.Context, inner storage.Store, k rekeying.Keys, opts Options) (Result, error) {
	if opts.BatchOps <= 0 {
		opts.BatchOps = 256
	}
	if _, err := Check(ctx, inner, k); err != nil {
		return Result{}, err
	}
	var keys []string
	if err := storage.ScanKeys(ctx, inner, "", func(key string) error {
		keys = append(keys, key)
		return nil
	}); err != nil {
		return Result{}, err
	}
	slices.Sort(keys)
	keys = slices.Compact(keys) // a Redis SCAN may list a key twice
	// The early kinds first, the marker last.
	slices.SortStableFunc(keys, func(a, b string) int {
		rank := func(key string) int {
			switch {
			case key == tagged.MarkerKey:
				return 2
			case kindOf(key).early:
				return 0
			}
			return 1
		}
		return rank(a) - rank(b)
	})
	m := &mover{inner: inner, out: tagged.Wrap(inner, k.New, tagged.Options{}), k: k, limit: opts.BatchOps,
		guard: opts.Guard, written: map[string]bool{}}
	for i, key := range keys {
		if counters.Is(key) || key == ClaimKey {
			continue
		}
		if key == tagged.MarkerKey {
			// The marker alone in the last batch: the guard is called
			// once more after every other record moved.
			if err := m.flush(ctx); err != nil {
				return m.res, err
			}
		}
		if err := m.move(ctx, key); err != nil {
			return m.res, fmt.Errorf("a %s record: %w", kindName(key), err)
		}
		if key == tagged.MarkerKey {
			// The claim goes in the marker's batch.
			m.ops = append(m.ops, storage.Op{Kind: storage.OpDelete, Key: ClaimKey})
		}
		if len(m.ops) >= m.limit {
			if err := m.flush(ctx); err != nil {
				return m.res, err
			}
			if opts.Progress != nil {
				opts.Progress(i + 1)
			}
		}
	}
	if err := m.flush(ctx); err != nil {
		return m.res, err
	}
	// A claim made again after an earlier run moved the marker (or of a
	// store whose marker the listing missed) goes too.
	return m.res, inner.Delete(ctx, ClaimKey)
}

// mover moves records into batches of the new keystore's store.
type mover struct {
	inner storage.Store
	out   *tagged.Store
	k     rekeying.Keys
	limit int
	guard func(context.Context) error
	// ops is the batch being filled, written the keys it writes or
	// deletes, and pending what Result will count once it is written.
	ops     []storage.Op
	written map[string]bool
	pending Result
	res     Result
}

// flush writes the batch being filled.
func (m *mover) flush(ctx context.Context) error {
	if len(m.ops) == 0 {
		return nil
	}
	if m.guard != nil {
		if err := m.guard(ctx); err != nil {
			return err
		}
	}
	if err := m.out.Batch(ctx, m.ops); err != nil {
		return err
	}
	m.res.Moved += m.pending.Moved
	m.res.Dropped += m.pending.Dropped
	m.ops, m.pending = m.ops[:0], Result{}
	clear(m.written)
	return nil
}

// fresh makes sure a read of key sees what the batch being filled does
// to it: it writes the batch first when it touches key.
func (m *mover) fresh(ctx context.Context, key string) error {
	if m.written[key] {
		return m.flush(ctx)
	}
	return nil
}

// read is the rekeying.Reader of the rewriters.
func (m *mover) read(ctx context.Context, key string) ([]byte, *keystore.Keystore, error) {
	if err := m.fresh(ctx, key); err != nil {
		return nil, nil, err
	}
	raw, err := m.inner.Get(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	for _, ks := range []*keystore.Keystore{m.k.New, m.k.Old} {
		if tagOK(ks, key, raw) {
			return raw[:len(raw)-keystore.RecordTagSize], ks, nil
		}
	}
	return nil, nil, fmt.Errorf("%w: a %s record", tagged.ErrTampered, kindName(key))
}

// move adds the record key to the batch, if it needs moving, with what
// it implies.
func (m *mover) move(ctx context.Context, key string) error {
	if err := m.fresh(ctx, key); err != nil {
		return err
	}
	e, err := m.inner.GetEntry(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil // dropped or moved with another record, or expired
	}
	if err != nil {
		return err
	}
	switch {
	case tagOK(m.k.New, key, e.Value):
		m.res.Done++
		return nil
	case !tagOK(m.k.Old, key, e.Value):
		m.res.Foreign++
		if kn := kindName(key); len(m.res.ForeignKinds) < 5 && !slices.Contains(m.res.ForeignKinds, kn) {
			m.res.ForeignKinds = append(m.res.ForeignKinds, kn)
		}
		return nil
	}
	var ttl time.Duration
	if !e.ExpiresAt.IsZero() {
		if ttl = time.Until(e.ExpiresAt); ttl <= 0 {
			return nil // expiring now
		}
	}
	value := e.Value[:len(e.Value)-keystore.RecordTagSize]
	change := rekeying.Change{Value: value}
	if kn := kindOf(key); kn.rewrite != nil {
		if change, err = kn.rewrite(ctx, m.k, key, value, m.read); err != nil {
			return err
		}
	}
	op := storage.Op{Kind: storage.OpPut, Key: key, Value: change.Value, TTL: ttl}
	switch {
	case change.Drop:
		op = storage.Op{Kind: storage.OpDelete, Key: key}
		if len(change.Extra) == 0 {
			m.pending.Dropped++
		} else {
			m.pending.Moved++ // to another key (an app key's new index)
		}
	default:
		m.pending.Moved++
	}
	// The record first: an extra op may write the same key again (never
	// the case today), and the later op wins.
	for _, op := range append([]storage.Op{op}, change.Extra...) {
		m.ops = append(m.ops, op)
		m.written[op.Key] = true
	}
	return nil
}

// kindName is a key up to its first "/": what may be said of a key,
// which itself may name a user or a digest.
func kindName(key string) string {
	kind, _, _ := strings.Cut(key, "/")
	return kind + "/"
}

// Report tells what still depends on the keystore's retired index keys.
type Report struct {
	// Current is the current index key's ID.
	Current string
	// Retired are the retired keys' IDs.
	Retired []string
	// Accounts are the usernames whose password hash is keyed with a
	// retired pepper: each is re-hashed at its next password sign-in;
	// once the retired keys are dropped, its password must be set again.
	Accounts []string
	// Credentials are the ESA API credentials whose password digest is
	// under a retired key: made again at the next use; once the retired
	// keys are dropped, the credential must be made again.
	Credentials []string
	// AppKeys are the application keys whose value was issued under a
	// retired key (its tag): once the retired keys are dropped, the
	// value is refused until the key is rotated.
	AppKeys []string
}

// Pending reports whether anything still depends on a retired key.
func (r Report) Pending() bool {
	return len(r.Accounts)+len(r.Credentials)+len(r.AppKeys) > 0
}

// Survey reads the store (records checked with ks) for Report.
func Survey(ctx context.Context, st storage.Store, ks *keystore.Keystore) (Report, error) {
	r := Report{Current: ks.IndexKeyID()}
	for _, k := range ks.Retired() {
		r.Retired = append(r.Retired, k.ID)
	}
	current := ks.IndexKeyID()
	if ks.Legacy() {
		current = "1"
	}
	err := st.Scan(ctx, account.UserRecordPrefix, func(e storage.Entry) error {
		name, pepper, err := account.UserPepper(e.Value)
		if err != nil {
			return fmt.Errorf("a user/ record: %w", err)
		}
		if pepper != "" && pepper != current {
			r.Accounts = append(r.Accounts, name)
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	currentDigest := ks.IndexKeyID()
	if ks.Legacy() {
		currentDigest = ""
	}
	err = st.Scan(ctx, esa.CredentialPrefix, func(e storage.Entry) error {
		name, key, err := esa.CredentialPepper(e.Value)
		if err != nil {
			return fmt.Errorf("an esa-cred/ record: %w", err)
		}
		if key != currentDigest {
			r.Credentials = append(r.Credentials, name)
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	err = st.Scan(ctx, appkey.IndexRecordPrefix, func(e storage.Entry) error {
		name, retired, ok, err := appkey.RetiredTagged(ks, e.Value)
		if err != nil {
			return fmt.Errorf("an appkeyidx/ record: %w", err)
		}
		if ok && retired {
			r.AppKeys = append(r.AppKeys, name)
		}
		return nil
	})
	return r, err
}
