package console

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
)

// The console refuses a change after which the operator making it would
// hold no admin role, and so could open no console page (keepingAdmin).
// Such changes are made one at a time, under a lock in the store every
// instance of a cluster shares: two tabs (or two instances) each deleting
// one of the two admin roles their operator holds would otherwise each
// find the other role still there, and together leave the operator out.
const (
	// adminChangeLock is the store key of the lock.
	adminChangeLock = "console-adminchange"
	// adminChangeWait is how long a change waits for the lock before it is
	// refused as busy, and adminChangePoll how often it looks.
	adminChangeWait = 10 * time.Second
	adminChangePoll = 50 * time.Millisecond
)

// adminChangeLockTTL bounds how long an instance that stopped while
// holding the lock keeps it; a change running longer (a role deleted from
// a very large store's users) renews it every third of that. A variable
// only for the tests.
var adminChangeLockTTL = 30 * time.Second

// errAdminChangeBusy answers a change that found the lock held throughout
// adminChangeWait.
var errAdminChangeBusy = failure.Conflict("another change of roles is being made in the console; nothing was changed. Send the form again in a moment")

// keepingAdmin makes change, unless v would hold no admin role after it:
// held are the roles v would hold after it (nil: those v holds when the
// lock is taken), admin the admin mark of each role the change sets
// (false: deleted). A refused change (409) calls no admin API, which stays
// the way back: it makes any change asked of it. While v keeps an admin
// role some account holds one, so no console change can leave every
// administrator out.
func (c *Console) keepingAdmin(r *http.Request, v *viewer, held []string, admin map[string]bool, change func() (outcome, error)) (outcome, error) {
	ctx := r.Context()
	unlock, err := c.lockAdminChanges(ctx)
	if err != nil {
		return outcome{}, err
	}
	defer unlock()
	if held == nil {
		// Read again under the lock: another tab may have changed them
		// since this request read its viewer.
		u, err := c.engine.Accounts.User(ctx, v.user.Username)
		if err != nil {
			return outcome{}, err
		}
		held = u.Roles
	}
	if err := c.keepsAdmin(ctx, held, admin); err != nil {
		return outcome{}, err
	}
	return change()
}

// keepsAdmin answers nil when one of held is an admin role after a change
// setting the admin marks admin (see keepingAdmin), else a 409.
func (c *Console) keepsAdmin(ctx context.Context, held []string, admin map[string]bool) error {
	for _, name := range held {
		if a, changed := admin[name]; changed {
			if a {
				return nil
			}
			continue
		}
		role, err := c.engine.Accounts.Role(ctx, name)
		if errors.Is(err, failure.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if role.Admin {
			return nil
		}
	}
	return failure.Conflict("after this change you would hold no admin role and could open no console page; nothing was changed. Give your account another admin role first (or make the change through the admin API)")
}

// lockAdminChanges takes the lock of changes that could leave their
// operator without an admin role, waiting up to adminChangeWait; unlock
// gives it back (a lock left by a stopped instance ends with its TTL).
func (c *Console) lockAdminChanges(ctx context.Context) (unlock func(), err error) {
	mine := []byte(twofactor.RandomToken(16))
	deadline := time.Now().Add(adminChangeWait)
	for {
		took, err := c.engine.Store.CompareAndSwap(ctx, adminChangeLock, nil, mine, adminChangeLockTTL)
		if err != nil {
			return nil, err
		}
		if took {
			held := context.WithoutCancel(ctx)
			done := make(chan struct{})
			go func() {
				renew := time.NewTicker(adminChangeLockTTL / 3)
				defer renew.Stop()
				for {
					select {
					case <-done:
						return
					case <-renew.C:
						_, _ = c.engine.Store.CompareAndSwap(held, adminChangeLock, mine, mine, adminChangeLockTTL) // not renewed: the change is about to end anyway or the store is down
					}
				}
			}()
			return func() {
				close(done)
				_, _ = c.engine.Store.CompareAndSwap(held, adminChangeLock, mine, nil, 0) // not given back: it ends with its TTL
			}, nil
		}
		if time.Now().After(deadline) {
			return nil, errAdminChangeBusy
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(adminChangePoll):
		}
	}
}
