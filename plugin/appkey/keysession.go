package appkey

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/internal/reccodec"
	"github.com/gatehouse-auth/gatehouse/plugin/sessioncookie"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

// binding is what appkeysess/<name>/<id> holds for a session opened with
// the key: the index of the key record the session was opened under, and
// the session's token sealed with the keystore (context: the binding's
// store key), so that revoking the key can end the session.
type binding struct {
	// Index is the index of the key's record when the session was opened:
	// the presented value's, or during a rotation's grace period that of
	// the value which replaced it. A rotation leaves a stub there, which
	// ends the session.
	Index string
	// Session names the session to end with the key: its ID
	// (session.ID), from which the cookie cannot be rebuilt. A binding an
	// earlier version wrote holds the session token here, sealed; it is
	// still read (endSessions), never written.
	Session []byte
}

// bindingVersion is the version byte of a binding in reccodec form. Its
// fields stay as they are: instances of the previous release, sharing a
// Redis store during an upgrade, read bindings too.
const bindingVersion = 1

func (b *binding) fields(c reccodec.Fields) {
	c.String(&b.Index)
	c.ByteString(&b.Session)
}

func (b *binding) encode() []byte { return reccodec.Encode(bindingVersion, b.fields) }

func decodeBinding(raw []byte) (binding, error) {
	var b binding
	if reccodec.Decode(raw, bindingVersion, b.fields) != nil {
		return binding{}, errCorrupt
	}
	return b, nil
}

// MaxKeySessions bounds the live sessions opened with one key: opening
// one beyond it ends the oldest, so that a client asking for a session
// with every request (and keeping no cookie), or whoever holds the key,
// cannot grow the store and the user's session listing without end.
const MaxKeySessions = 100

// boundIndex is the data plane's decoder of a binding: the key index
// alone, in an allocation of its own (not the session's ID). A binding
// that does not decode (one written before bindings named the index)
// yields "", which checkSession refuses; it is cached like any other, so
// a client that keeps sending such a session costs no store read either.
func boundIndex(raw []byte) (string, error) {
	b, err := decodeBinding(raw)
	if err != nil {
		return "", nil
	}
	reccodec.Detach(&b.Index)
	return b.Index, nil
}

// errSessionEnded refuses a session opened with a key whose binding is
// gone: the key's revocation ended it.
var errSessionEnded = identity.Unauthenticated("the session opened with the application key has ended; open a new one with the key")

// checkSession refuses the session s (its session.DigestID is id), which
// an application key opened, as the key itself would be refused from
// clientIP: unless the key record it was opened under is still the key's
// (not deleted, not replaced by a rotation), has not expired, and its
// allowlist holds clientIP. Everything it reads comes from the cache: a
// hot session costs no store read.
func (s *Service) checkSession(ctx context.Context, sess *session.Session, id, clientIP string) error {
	index, err := cache.Load(s.store, ctx, sessionKey(sess.AppKey, id), boundIndex)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && index == "") {
		return errSessionEnded.For(sess.Username)
	}
	if err != nil {
		return err
	}
	e, err := s.lookup(ctx, index)
	switch {
	case errors.Is(err, errInvalid):
		return errInvalid.For(sess.Username)
	case err != nil:
		return err
	case e.isStub():
		return errReplaced.For(sess.Username)
	case e.name() != sess.AppKey:
		return errInvalid.For(sess.Username)
	}
	return e.admits(s.now(), clientIP)
}

// CheckSession implements sessioncookie.AppKeySessions.
func (c *Credential) CheckSession(r *http.Request, s *session.Session, id string) error {
	return c.svc.checkSession(r.Context(), s, id, c.svc.engine.ClientIP(r))
}

// Interface guard.
var _ sessioncookie.AppKeySessions = (*Credential)(nil)

// openSession starts a session for the allowed request of id, made with
// the key value; the session ends no later than that value, and sets its
// cookie. A request that still carries the cookie of a live session this
// key opened for the same account keeps it: no other is opened (a client
// with a cookie jar that asks with every request).
func (s *Service) openSession(w http.ResponseWriter, r *http.Request, id *identity.Identity, value string) error {
	ctx := r.Context()
	index, ok := indexOf(s.engine.Keystore, value)
	if !ok {
		return errInvalid
	}
	if s.holdsSession(r, id) {
		return nil
	}
	e, current, graceUntil, err := s.find(ctx, index, s.now())
	if err != nil {
		return err
	}
	ends := e.expires()
	if !graceUntil.IsZero() && graceUntil.Before(ends) {
		ends = graceUntil
	}
	u, err := s.engine.Accounts.User(ctx, id.Username)
	if err != nil {
		return err
	}
	if u.ID != id.UserID {
		return errInvalid // the account was re-created since the key was checked
	}
	ends = s.engine.Sessions.EndsBy(ends)
	token, err := s.engine.Sessions.Create(ctx, session.Session{Username: id.Username, UserID: id.UserID,
		Origin: session.OriginAppKey, AppKey: id.AppKey, ExpiresAt: ends, Epoch: u.SessionEpoch})
	if err != nil {
		return err
	}
	key := sessionKey(id.AppKey, session.DigestID(token))
	bound := binding{Index: current, Session: []byte(session.ID(token))}
	// The binding lasts as long as the session may: until the key's end or
	// the session's absolute lifetime, whichever comes first.
	err = s.store.Put(ctx, key, bound.encode(), time.Until(ends)+time.Minute)
	if err == nil {
		// A deletion or rotation that ran between find and Put did not
		// see this session: check that the value still works.
		_, _, _, err = s.find(ctx, index, s.now())
	}
	if err != nil {
		// Best effort: the session and its binding are unusable anyway.
		_ = s.engine.Sessions.Delete(ctx, token)
		_ = s.store.Delete(ctx, key)
		return err
	}
	http.SetCookie(w, s.engine.Sessions.Cookie(token))
	// The cookie rides on the upstream's response, which the upstream may
	// mark cacheable: a shared cache in front of Caddy (which an appKey
	// header, unlike Authorization, does not keep from storing it) would
	// hand this session to every client it answers from there. The
	// reverse proxy adds the upstream's Cache-Control beside this one, and
	// no-store prevails over whatever it says.
	w.Header().Add("Cache-Control", "no-store")
	ev := keyEvent(&record{Name: e.name(), Username: e.username()}, "session opened with the key")
	ev.Summarise = audit.SummariseAlways // a client may ask with every request: summarised in a flood
	s.engine.RecordRequest(r, ev)
	if err := s.trimSessions(ctx, id.AppKey, key); err != nil {
		s.engine.LogFailure("ending a key's sessions beyond the most it may hold", err)
	}
	return nil
}

// holdsSession reports whether r carries the cookie of a live session
// opened with the key id was verified with, for id's account, and still
// bound to it.
func (s *Service) holdsSession(r *http.Request, id *identity.Identity) bool {
	c, err := r.Cookie(session.CookieName)
	if err != nil {
		return false
	}
	sess, err := s.engine.Sessions.Lookup(r.Context(), c.Value)
	if err != nil || sess.Origin != session.OriginAppKey || sess.AppKey != id.AppKey || sess.UserID != id.UserID {
		return false
	}
	return s.checkSession(r.Context(), sess, sess.DigestID(), s.engine.ClientIP(r)) == nil
}

// trimSessions ends the oldest sessions opened with the key name beyond
// MaxKeySessions, never the one bound at keep (just opened). Sessions
// already ended (their bindings linger until they expire) and bindings of
// an earlier version go first; the others by when they were opened, which
// their session records hold. It reads every session of the key only once
// it holds more than the bound: for a client that asks with every request
// and keeps no cookie.
func (s *Service) trimSessions(ctx context.Context, name, keep string) error {
	type bound struct {
		key    string
		b      binding
		opened time.Time // zero: ended, or a binding of an earlier version
	}
	var found []bound
	err := s.store.Scan(ctx, sessionPrefix+name+"/", func(e storage.Entry) error {
		b, err := decodeBinding(e.Value)
		if err != nil {
			b = binding{} // ended all the same, first
		}
		found = append(found, bound{key: e.Key, b: b})
		return nil
	})
	if err != nil || len(found) <= MaxKeySessions {
		return err
	}
	for i := range found {
		if id := string(found[i].b.Session); session.ValidID(id) {
			sess, err := s.engine.Sessions.Find(ctx, id)
			switch {
			case err == nil:
				found[i].opened = sess.CreatedAt
			case !errors.Is(err, storage.ErrNotFound):
				return err
			}
		}
	}
	slices.SortFunc(found, func(a, b bound) int { return cmp.Or(a.opened.Compare(b.opened), strings.Compare(a.key, b.key)) })
	for i, live := 0, len(found); i < len(found) && live > MaxKeySessions; i++ {
		if found[i].key == keep {
			continue
		}
		if err := s.endSession(ctx, found[i].b, found[i].key); err != nil {
			return err
		}
		if err := s.store.Delete(ctx, found[i].key); err != nil {
			return err
		}
		live--
	}
	return nil
}

// endSession ends the session the binding b, stored under key, names; an
// ended session, or a sealed token that does not open, is no error.
func (s *Service) endSession(ctx context.Context, b binding, key string) error {
	if id := string(b.Session); session.ValidID(id) {
		_, err := s.engine.Sessions.End(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		return err
	}
	token, err := s.engine.Keystore.Open(b.Session, key) // an earlier version's binding
	if err != nil {
		return nil
	}
	return s.engine.Sessions.Delete(ctx, string(token))
}

// sessionKey is where the binding of the session with the given
// session.DigestID to the key name is stored.
func sessionKey(name, id string) string {
	return sessionPrefix + name + "/" + id
}

// endSessions ends every session opened with the key.
func (s *Service) endSessions(ctx context.Context, name string) error {
	var found []storage.Entry
	err := s.store.Scan(ctx, sessionPrefix+name+"/", func(e storage.Entry) error {
		found = append(found, storage.Entry{Key: e.Key, Value: append([]byte(nil), e.Value...)})
		return nil
	})
	if err != nil {
		return err
	}
	for _, t := range found {
		// A binding that does not decode or open ends its session all the
		// same: checkSession refuses a session without a usable binding.
		if b, err := decodeBinding(t.Value); err == nil {
			if err := s.endSession(ctx, b, t.Key); err != nil {
				return err
			}
		}
		if err := s.store.Delete(ctx, t.Key); err != nil {
			return err
		}
	}
	return nil
}
