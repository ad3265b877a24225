package appkey

import (
	"context"
	"errors"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/failure"
)

// deleteUserKeys deletes, ending their sessions, the application keys of
// an account that is being deleted (an account.DeleteHook), so that they
// no longer show in the key list under a name nobody can use.
func (s *Service) deleteUserKeys(ctx context.Context, u *account.User) error {
	names, err := s.keyNamesOf(ctx, u.ID)
	if err != nil {
		return err
	}
	for _, name := range names {
		rec, err := s.deleteKey(ctx, name, u.ID)
		switch {
		case errors.Is(err, failure.ErrNotFound): // gone meanwhile
		case err != nil:
			return err
		case rec != nil: // nil: the name is now another account's key
			ev := keyEvent(rec, "key deleted with its user")
			ev.Actor = audit.ActorOf(ctx) // the console user deleting the account, if any
			s.engine.Audit.Record(ev)
		}
	}
	return nil
}
