package appkey

import (
	"context"
	"errors"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// deleteUserKeys deletes, ending their sessions, the application keys of
// an account that is being deleted (an account.DeleteHook), so that they
// no longer show in the key list under a name nobody can use.
func (s *Service) deleteUserKeys(ctx context.Context, u *account.User) error {
	var names []string
	err := s.store.Scan(ctx, indexPrefix, func(e storage.Entry) error {
		rec, err := decodeRecord(e.Value)
		if err != nil {
			s.engine.Logger.Error("skipping a corrupt application key record", zap.String("key", e.Key), zap.Error(err))
			return nil
		}
		if rec.UserID == u.ID && !rec.isStub() {
			names = append(names, rec.Name)
		}
		return nil
	})
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
			s.audit(nil, rec, "key deleted with its user")
		}
	}
	return nil
}
