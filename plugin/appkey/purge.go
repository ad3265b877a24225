package appkey

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// leftoverAge is how old a record no name resolves to must be before a
// purge deletes it.
const leftoverAge = 10 * time.Minute

// errClockSkewed refuses a purge while this instance's clock is not in
// step with the store's (storage.ClockInStep).
var errClockSkewed = failure.Conflict("this instance's clock and the Redis server's differ (see the warning in the log): " +
	"no application key is purged by it until they agree, since a clock ahead would delete keys that have not expired")

// purgeExpired deletes every expired key and returns how many it deleted;
// onDelete, when set, is called for each. A key changed meanwhile (e.g.
// its expiration reset) is left alone. While the store finds this
// instance's clock out of step with its own it deletes nothing
// (errClockSkewed): a clock that jumped ahead would have every key of the
// cluster deleted for good.
func (s *Service) purgeExpired(ctx context.Context, onDelete func(*record)) (int, error) {
	if !storage.ClockInStep(s.store) {
		return 0, errClockSkewed
	}
	now := s.now()
	var expired []*loaded
	err := s.store.Scan(ctx, indexPrefix, func(e storage.Entry) error {
		rec, err := decodeRecord(e.Value)
		if err != nil {
			s.engine.Logger.Error("skipping a corrupt application key record", zap.String("key", e.Key), zap.Error(err))
			return nil
		}
		if !rec.isStub() && !now.Before(rec.ExpiresAt) {
			expired = append(expired, &loaded{index: strings.TrimPrefix(e.Key, indexPrefix),
				raw: append([]byte(nil), e.Value...), rec: rec})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	deleted := 0
	for _, l := range expired {
		// Only a record its name resolves to is a key. One no name
		// resolves to is a leftover of an interrupted creation or rotation
		// (its value was never handed out): it goes silently, once old
		// enough that no creation or rotation can still be finishing it.
		cur, err := s.load(ctx, l.rec.Name)
		if err != nil && !errors.Is(err, failure.ErrNotFound) {
			return deleted, err
		}
		if err != nil || cur.index != l.index {
			if now.Sub(l.rec.LastModifiedAt) > leftoverAge {
				if _, err := s.store.CompareAndSwap(ctx, indexPrefix+l.index, l.raw, nil, 0); err != nil {
					return deleted, err
				}
			}
			continue
		}
		ok, err := s.remove(ctx, l)
		if err != nil {
			return deleted, err
		}
		if ok {
			deleted++
			if onDelete != nil {
				onDelete(&l.rec)
			}
		}
	}
	return deleted, nil
}
