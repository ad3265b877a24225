package appkey

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/storage"
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
	views := make([]View, 0, len(indexes))
	now := s.now()
	for _, index := range indexes {
		l, err := s.resolve(ctx, index)
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted meanwhile, or a leftover pointer
		}
		if err != nil {
			return nil, err
		}
		views = append(views, l.rec.view(used[l.rec.Name], now))
	}
	return views, nil
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
