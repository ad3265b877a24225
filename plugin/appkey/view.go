package appkey

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
	"github.com/gatehouse-auth/gatehouse/storage/tagged"
)

// get returns the key's view.
func (s *Service) get(ctx context.Context, name string) (*View, error) {
	l, err := s.load(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.viewOf(ctx, &l.rec)
}

// viewOf is the view of rec with its last use read from the store.
func (s *Service) viewOf(ctx context.Context, rec *record) (*View, error) {
	var used time.Time
	raw, err := s.store.Backend().Get(ctx, usedPrefix+rec.Name)
	switch {
	case err == nil:
		used, _ = time.Parse(time.RFC3339, string(raw))
	case errors.Is(err, tagged.ErrTampered):
		// Forged: no known use, as in a listing, and the next use's
		// write replaces it.
		s.engine.Logger.Error("an application key's last-use record failed authentication (written without the keystore); shown as never used", zap.String("key", rec.Name), zap.Error(err))
	case !errors.Is(err, storage.ErrNotFound):
		return nil, err
	}
	v := rec.view(used, s.now())
	return &v, nil
}

// list returns every key in name order.
func (s *Service) list(ctx context.Context) ([]View, error) {
	used := map[string]time.Time{}
	err := s.store.Scan(ctx, usedPrefix, func(e storage.Entry) error {
		if t, err := time.Parse(time.RFC3339, string(e.Value)); err == nil {
			used[strings.TrimPrefix(e.Key, usedPrefix)] = t
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var indexes []string
	err = s.store.Scan(ctx, namePrefix, func(e storage.Entry) error {
		indexes = append(indexes, string(e.Value))
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Every record, read in one scan after the names: one read a key was
	// two thirds of the listing's time (1.5 s of 2.2 at 100 000 keys). A
	// record the scan did not see (the key was created, rotated or
	// deleted meanwhile) is read on its own, as before.
	records := make(map[string]record, len(indexes))
	err = s.store.Scan(ctx, indexPrefix, func(e storage.Entry) error {
		if rec, err := decodeRecord(e.Value); err == nil { // a corrupt one is read (and refused) on its own
			records[strings.TrimPrefix(e.Key, indexPrefix)] = rec
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	views := make([]View, 0, len(indexes))
	now := s.now()
	for _, index := range indexes {
		rec, ok := followStubs(records, index)
		if !ok {
			l, err := s.resolve(ctx, index)
			if errors.Is(err, storage.ErrNotFound) {
				continue // deleted meanwhile, or a leftover pointer
			}
			if err != nil {
				return nil, err
			}
			rec = l.rec
		}
		views = append(views, rec.view(used[rec.Name], now))
	}
	return views, nil
}

// followStubs is what resolve answers for index, from records (every
// record by its index) alone: false when a record on the way is not
// among them.
func followStubs(records map[string]record, index string) (record, bool) {
	for range maxStubs {
		rec, ok := records[index]
		if !ok {
			return record{}, false
		}
		if !rec.isStub() {
			return rec, true
		}
		index = rec.Successor
	}
	return record{}, false
}

// keyQuery selects the keys of a page of the key listing (listPage).
type keyQuery struct {
	// prefix keeps the keys whose name starts with it.
	prefix string
	// after starts the page after that key name.
	after string
	// limit bounds the keys returned; 0 returns every one.
	limit int
}

// whole reports whether q asks for every key.
func (q keyQuery) whole() bool { return q == keyQuery{} }

// listPage returns the keys q selects in name order, and whether more
// follow the last one returned. The names are read from q.after (and
// q.prefix) on, and only until the page is full: a page costs what it
// holds, not every key (list reads every last use at once instead, for
// the whole listing). The records and last uses of a page's names are
// read together (GetMany: one round trip each on Redis, where reading
// them one key at a time cost two round trips a key).
func (s *Service) listPage(ctx context.Context, q keyQuery) ([]View, bool, error) {
	if q.whole() {
		views, err := s.list(ctx)
		return views, false, err
	}
	prefix, from := namePrefix+q.prefix, storage.KeyAfter(namePrefix, q.after)
	views, now := []View{}, s.now()
	for {
		// The names still wanted and one more (whether more follow); a
		// name whose key is gone is passed over, and the next read.
		want := pageBatch
		if q.limit > 0 {
			want = q.limit - len(views) + 1
		}
		var indexes []string
		last, done := "", true
		err := storage.ScanFrom(ctx, s.store, prefix, from, func(e storage.Entry) error {
			if len(indexes) == want {
				done = false
				return storage.ErrStopScan
			}
			indexes, last = append(indexes, string(e.Value)), e.Key
			return nil
		})
		if err != nil {
			return nil, false, err
		}
		recs, err := s.resolveMany(ctx, indexes)
		if err != nil {
			return nil, false, err
		}
		used, err := s.lastUses(ctx, recs)
		if err != nil {
			return nil, false, err
		}
		for i, rec := range recs {
			if rec == nil {
				continue // deleted meanwhile, or a leftover pointer
			}
			if q.limit > 0 && len(views) == q.limit {
				return views, true, nil
			}
			views = append(views, rec.view(used[i], now))
		}
		if done {
			return views, false, nil
		}
		from = last + "\x00"
	}
}

// pageBatch is how many names a page without a limit reads at a time.
const pageBatch = 256

// resolveMany is resolve for each of indexes, the records read at once
// (GetMany): nil for an index that leads nowhere (storage.ErrNotFound).
// A record refused as forged fails it, as resolve does.
func (s *Service) resolveMany(ctx context.Context, indexes []string) ([]*record, error) {
	out := make([]*record, len(indexes))
	keys := make([]string, len(indexes))
	for i, index := range indexes {
		keys[i] = indexPrefix + index
	}
	read := make([]bool, len(indexes))
	err := s.store.Backend().GetMany(ctx, keys, func(i int, raw []byte) error {
		rec, err := decodeRecord(raw)
		if err != nil || rec.isStub() {
			return nil // read on its own below: refused, or rotated
		}
		out[i], read[i] = &rec, true
		return nil
	})
	if err != nil && !errors.Is(err, tagged.ErrTampered) {
		return nil, err
	}
	for i, index := range indexes {
		if read[i] {
			continue
		}
		l, err := s.resolve(ctx, index)
		switch {
		case errors.Is(err, storage.ErrNotFound):
		case err != nil:
			return nil, err
		default:
			out[i] = &l.rec
		}
	}
	return out, nil
}

// lastUses is lastUse for the key of each of recs (nil: none), read at
// once (GetMany).
func (s *Service) lastUses(ctx context.Context, recs []*record) ([]time.Time, error) {
	out := make([]time.Time, len(recs))
	var keys []string
	var at []int
	for i, rec := range recs {
		if rec != nil {
			keys, at = append(keys, usedPrefix+rec.Name), append(at, i)
		}
	}
	err := s.store.Backend().GetMany(ctx, keys, func(i int, raw []byte) error {
		out[at[i]], _ = time.Parse(time.RFC3339, string(raw))
		return nil
	})
	if errors.Is(err, tagged.ErrTampered) { // one at a time: a forged one reads as none
		for _, i := range at {
			if out[i], err = s.lastUse(ctx, recs[i].Name); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return out, err
}

// lastUse is the last use of key name as the store records it: zero when
// none is, or when its record is forged (as in a listing).
func (s *Service) lastUse(ctx context.Context, name string) (time.Time, error) {
	raw, err := s.store.Backend().Get(ctx, usedPrefix+name)
	switch {
	case err == nil:
		used, _ := time.Parse(time.RFC3339, string(raw))
		return used, nil
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, tagged.ErrTampered):
		return time.Time{}, nil
	default:
		return time.Time{}, err
	}
}

// listOf returns the keys of the account userID in name order that q
// selects, and whether more follow the last one returned.
func (s *Service) listOf(ctx context.Context, userID string, q keyQuery) ([]View, bool, error) {
	names, err := s.keyNamesOf(ctx, userID)
	if err != nil {
		return nil, false, err
	}
	views, more := []View{}, false
	for _, name := range names {
		if !strings.HasPrefix(name, q.prefix) || (q.after != "" && name <= q.after) {
			continue
		}
		if q.limit > 0 && len(views) == q.limit {
			more = true
			break
		}
		l, err := s.load(ctx, name)
		if errors.Is(err, failure.ErrNotFound) || (err == nil && l.rec.UserID != userID) {
			s.pruneUserKey(ctx, userID, name) // deleted, or the name is now another account's key
			continue
		}
		if err != nil {
			return nil, false, err
		}
		v, err := s.viewOf(ctx, &l.rec)
		if err != nil {
			return nil, false, err
		}
		views = append(views, *v)
	}
	return views, more, nil
}

// pruneUserKey removes the account's entry (appkeyuser/) of the key name,
// which no longer runs as the account: one left by a deletion that
// failed half-way would otherwise be read at every listing. A key of that
// name created for the account meanwhile gets its entry back, as remove
// does. A failure only leaves the entry for the next listing.
func (s *Service) pruneUserKey(ctx context.Context, userID, name string) {
	entry := userKeyKey(userID, name)
	if err := s.store.Delete(ctx, entry); err != nil {
		return
	}
	if now, err := s.load(ctx, name); err == nil && now.rec.UserID == userID {
		if err := s.store.Put(ctx, entry, nil, 0); err != nil {
			s.engine.Logger.Error("an application key's account entry was pruned while a key of its name was created; it may be missing from the account's key list",
				zap.String("key", name), zap.Error(err))
		}
	}
}

// keyNamesOf returns, in name order, the names of the keys of the account
// userID and maybe of keys since deleted or now another account's (the
// caller checks each): from the account's entries (appkeyuser/) once
// every key has one (userKeysDone), from every key's record before.
func (s *Service) keyNamesOf(ctx context.Context, userID string) ([]string, error) {
	var names []string
	switch _, err := s.store.Backend().Get(ctx, userKeysDone); {
	case errors.Is(err, storage.ErrNotFound):
		err := s.store.Scan(ctx, indexPrefix, func(e storage.Entry) error {
			rec, err := decodeRecord(e.Value)
			if err != nil {
				s.engine.Logger.Error("skipping a corrupt application key record", zap.String("key", e.Key), zap.Error(err))
				return nil
			}
			if rec.UserID == userID && !rec.isStub() {
				names = append(names, rec.Name)
			}
			return nil
		})
		slices.Sort(names)
		return names, err
	case err != nil:
		return nil, err
	}
	prefix := userKeysPrefix + userID + "/"
	err := s.store.Scan(ctx, prefix, func(e storage.Entry) error {
		names = append(names, strings.TrimPrefix(e.Key, prefix))
		return nil
	})
	return names, err
}

// indexUserKeys gives every key its account's entry (appkeyuser/), for
// the keys written before there were entries, and then records that
// every key has one (userKeysDone); once that is recorded it does
// nothing. Keys created meanwhile write their own entry, and running it
// again, on another instance too, writes the same entries.
func (s *Service) indexUserKeys(ctx context.Context) error {
	if _, err := s.store.Backend().Get(ctx, userKeysDone); !errors.Is(err, storage.ErrNotFound) {
		return err // done (nil), or unknown: try again at the next start
	}
	var ops []storage.Op
	write := func() error {
		if len(ops) == 0 {
			return nil
		}
		err := s.store.Batch(ctx, ops)
		ops = ops[:0]
		return err
	}
	err := s.store.Scan(ctx, indexPrefix, func(e storage.Entry) error {
		rec, err := decodeRecord(e.Value)
		if err != nil || rec.isStub() {
			return nil // a corrupt record is logged where it is used; a stub belongs to its key's record
		}
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: userKeyKey(rec.UserID, rec.Name)})
		if len(ops) == 512 {
			return write()
		}
		return nil
	})
	if err == nil {
		err = write()
	}
	if err != nil {
		return err
	}
	return s.store.Put(ctx, userKeysDone, []byte(time.Now().UTC().Format(time.RFC3339)), 0) // when, for whoever reads the store
}

// view is rec as the admin API shows it.
func (rec *record) view(lastUsed, now time.Time) View {
	v := View{Name: rec.Name, Username: rec.Username, ExpiresAt: rec.ExpiresAt, Expired: !now.Before(rec.ExpiresAt),
		IPAllowlist: rec.IPAllowlist, Metadata: rec.Metadata, CreatedAt: rec.CreatedAt, LastModifiedAt: rec.LastModifiedAt}
	if v.IPAllowlist == nil {
		v.IPAllowlist = []string{}
	}
	if v.Tags == nil {
		v.Tags = []string{}
	}
	// A use noted just before a deletion may land after it: never show a
	// use older than the key.
	if !lastUsed.IsZero() && !lastUsed.Before(rec.CreatedAt.Truncate(time.Second)) {
		v.LastUsedAt = &lastUsed
	}
	if rec.PrevIndex != "" && now.Before(rec.PrevValidUntil) {
		until := rec.PrevValidUntil
		v.PreviousKeyValidUntil = &until
	}
	return v
}

// KeyNames calls fn with the name of every application key of store (the
// engine's store), in name order, from the store's keys alone
// (storage.ScanKeys): what counts and names a long listing without
// reading a key's record, which the caller reads for the keys it shows.
func KeyNames(ctx context.Context, store storage.Store, fn func(name string) error) error {
	return storage.ScanKeys(ctx, store, namePrefix, func(key string) error { return fn(key[len(namePrefix):]) })
}

// KeyNamesOfUsers returns the names of the keys of the accounts whose IDs
// ids holds, from their entries' keys (appkeyuser/) alone, and true; or
// false when not every key has its entry yet (the store was written by a
// version before entries, and indexing them has not finished), when the
// caller lists the keys from their records instead. An entry may be left
// over from a key deleted or now another account's (see keyNamesOf): the
// caller checks the records it shows.
func KeyNamesOfUsers(ctx context.Context, store *cache.Cache, ids map[string]bool) (map[string]bool, bool, error) {
	switch _, err := store.Backend().Get(ctx, userKeysDone); {
	case errors.Is(err, storage.ErrNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	names := map[string]bool{}
	collect := func(key string) error {
		id, name, ok := strings.Cut(key[len(userKeysPrefix):], "/")
		if ok && ids[id] {
			names[name] = true
		}
		return nil
	}
	if len(ids) > 64 { // many accounts: one pass over every entry
		return names, true, storage.ScanKeys(ctx, store, userKeysPrefix, collect)
	}
	for id := range ids {
		if id == "" || strings.Contains(id, "/") {
			continue
		}
		if err := storage.ScanKeys(ctx, store, userKeysPrefix+id+"/", collect); err != nil {
			return nil, false, err
		}
	}
	return names, true, nil
}

// Readable returns those of names (as KeyNames lists them) whose name
// record store holds and accepts, in order: a name deleted meanwhile, or
// whose record is refused as forged (tagged.ErrTampered), is left out,
// as the key listing's scan leaves it out, rather than failing the read
// of the page that shows it.
func Readable(ctx context.Context, store storage.Store, names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	for _, name := range names {
		_, err := store.Get(ctx, namePrefix+name)
		switch {
		case errors.Is(err, storage.ErrNotFound), errors.Is(err, tagged.ErrTampered):
			continue
		case err != nil:
			return nil, err
		}
		out = append(out, name)
	}
	return out, nil
}
