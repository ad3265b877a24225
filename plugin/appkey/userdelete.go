package appkey

import (
	"context"
	"net/http"

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
		if err := s.deleteUserKey(ctx, u, name); err != nil {
			return err
		}
	}
	return nil
}

// deleteUserKey deletes the key name resolves to if it is u's; a name
// gone meanwhile, or now another user's, is left alone.
func (s *Service) deleteUserKey(ctx context.Context, u *account.User, name string) error {
	for range attempts {
		l, err := s.load(ctx, name)
		if failure.Status(err) == http.StatusNotFound {
			return nil
		}
		if err != nil {
			return err
		}
		if l.rec.UserID != u.ID {
			return nil
		}
		ok, err := s.remove(ctx, l)
		if err != nil {
			return err
		}
		if ok {
			s.audit(nil, &l.rec, "key deleted with its user")
			return nil
		}
	}
	return errBusy(name)
}
