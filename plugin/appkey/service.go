// Package appkey is the "app_key" credential kind: ThingWorx-style
// application keys. A key is bound to one user and runs with that user's
// rights; it is sent in the appKey header (any case) or the appKey query
// parameter, may be limited to an IP allowlist, expires (24 h by default)
// and is kept, refused, until purged.
//
// Key values are sealed with the keystore (AES-256-GCM) at rest and found
// by an HMAC index, so a lookup reads one record and never decrypts. The
// value carries a 4-byte tag derived from its index: a forged value is
// refused before any store or cache access. A request that asks for it
// (x-gatehouse-session=true) gets a session cookie; changing the key's
// expiry or allowlist, rotating, deleting or purging it ends those sessions.
package appkey

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

// Options tune the service.
type Options struct {
	// PurgeInterval, when positive, deletes expired keys that often (as
	// POST /gatehouse/appkeys/purge-expired does). Zero: purge on demand only.
	PurgeInterval time.Duration
}

// Service manages application keys: the data-plane lookup, the admin
// operations and the background writer of last_used_at and periodic purge.
// Close stops the background work.
type Service struct {
	engine *engine.Engine
	store  *cache.Cache
	now    func() time.Time
	purge  time.Duration

	usageMu sync.Mutex
	usage   usageLog // the uses not yet written
	// noted says which keys' uses were handed to the usage writer in
	// their current window (see noteUse).
	noted [notedSlots]atomic.Uint64
	// deleted holds when each key deleted here in the last hour was
	// deleted (see noteDeleted); deletedMu guards it.
	deletedMu sync.Mutex
	deleted   map[string]time.Time

	// ctx is cancelled by Close: it ends a purge in progress.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewService returns the service of e and starts its background work.
func NewService(e *engine.Engine, opts Options) *Service {
	s := &Service{engine: e, store: e.Store, now: time.Now, purge: opts.PurgeInterval}
	e.Accounts.OnDelete(s.deleteUserKeys)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(2)
	go s.run()
	go func() {
		defer s.wg.Done()
		if err := s.indexUserKeys(s.ctx); err != nil && s.ctx.Err() == nil {
			s.engine.Logger.Error("indexing the application keys by account failed; each user's keys are listed from all keys until a later start succeeds", zap.Error(err))
		}
	}()
	return s
}

// Close stops the background work after writing the pending key uses.
func (s *Service) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

func (s *Service) run() {
	defer s.wg.Done()
	flush := time.NewTicker(usageFlushInterval)
	defer flush.Stop()
	var purge <-chan time.Time
	if s.purge > 0 {
		t := time.NewTicker(s.purge)
		defer t.Stop()
		purge = t.C
	}
	background := func(parent context.Context, f func(context.Context)) {
		ctx, cancel := context.WithTimeout(parent, time.Minute)
		defer cancel()
		f(ctx)
	}
	for {
		select {
		case <-s.ctx.Done():
			background(context.Background(), s.flushUsage) // the last uses, even while stopping
			return
		case <-flush.C:
			background(s.ctx, s.flushUsage)
		case <-purge:
			background(s.ctx, func(ctx context.Context) {
				purged := func(rec *record) { s.audit(nil, rec, "expired key purged (periodic purge)") }
				if _, err := s.purgeExpired(ctx, purged); err != nil {
					s.engine.Logger.Error("periodic purge of expired application keys failed", zap.Error(err))
				}
			})
		}
	}
}

// audit writes an application key lifecycle event to the audit log; r is
// the admin or data-plane request, nil for background work.
func (s *Service) audit(r *http.Request, rec *record, what string) {
	s.engine.RecordRequest(r, keyEvent(rec, what))
}

// keyEvent is the audit event of what happened to the key rec.
func keyEvent(rec *record, what string) audit.Event {
	return audit.Event{Kind: audit.KindAppKey, Username: rec.Username,
		Credential: audit.Credential(string(identity.MethodAppKey), rec.Name), Outcome: audit.OutcomeSuccess, Reason: what}
}
