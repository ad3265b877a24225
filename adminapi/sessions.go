package adminapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// Kinds of a listed session (SessionView.Kind).
const (
	// SessionKindPortal is a session of the 2FA login portal.
	SessionKindPortal = "portal"
	// SessionKindAppKey is a session an application key opened.
	SessionKindAppKey = string(identity.MethodAppKeySession)
)

// SessionView is one live session as GET /gatehouse/sessions shows it:
// metadata only, never the cookie value.
type SessionView struct {
	// ID is the session's opaque ID (session.ID), for DELETE /gatehouse/sessions/{id}.
	ID string `json:"id"`
	// Kind is SessionKindPortal or SessionKindAppKey.
	Kind string `json:"kind"`
	// AppKey names the key that opened an app_key_session.
	AppKey string `json:"app_key,omitempty"`
	// SecondFactor is true when the user passed a second factor.
	SecondFactor bool `json:"second_factor"`
	// CreatedAt is when the session started.
	CreatedAt time.Time `json:"created_at"`
	// LastSeenAt is the last activity (recorded at most once a minute).
	LastSeenAt time.Time `json:"last_seen_at"`
	// ExpiresAt is when the session ends unless used again: its idle
	// timeout after LastSeenAt or its absolute end, whichever comes first.
	ExpiresAt time.Time `json:"expires_at"`
}

// listSessions answers the live sessions of ?username=, newest first.
func (c *Core) listSessions(w http.ResponseWriter, r *http.Request) error {
	name := r.URL.Query().Get("username")
	if name == "" {
		return failure.Invalid("the query parameter username is required")
	}
	u, err := c.engine.Accounts.User(r.Context(), name)
	if err != nil {
		return err
	}
	listed, err := c.engine.Sessions.OfUser(r.Context(), u.ID, u.SessionEpoch)
	if err != nil {
		return err
	}
	out := make([]SessionView, 0, len(listed))
	for _, s := range listed {
		kind := SessionKindPortal
		if s.Origin == session.OriginAppKey {
			kind = SessionKindAppKey
		}
		out = append(out, SessionView{ID: s.ID, Kind: kind, AppKey: s.AppKey, SecondFactor: s.SecondFactor,
			CreatedAt: s.CreatedAt, LastSeenAt: s.SeenAt, ExpiresAt: c.engine.Sessions.IdleEnd(&s.Session)})
	}
	return WriteJSON(w, http.StatusOK, out)
}

// endSession ends the session {id}.
func (c *Core) endSession(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !session.ValidID(id) {
		return failure.Invalid("a session ID is 64 lowercase hexadecimal digits")
	}
	s, err := c.engine.Sessions.End(r.Context(), id)
	if errors.Is(err, storage.ErrNotFound) {
		return failure.NotFound("no session %s", id)
	}
	if err != nil {
		return err
	}
	Note(r, s.Username, "session "+id[:16]+" ended")
	w.WriteHeader(http.StatusNoContent)
	return nil
}
