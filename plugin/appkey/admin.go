package appkey

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/adminapi"
)

// AdminRoutes implements adminapi.Provider: the application key endpoints
// (docs/operators/admin-api.md). Every change, and every reveal of a key value, is written
// to the audit log (kind "appkey").
func (s *Service) AdminRoutes() []adminapi.Route {
	return []adminapi.Route{
		{Pattern: "POST /gatehouse/appkeys", Handle: s.handleCreate, Body: true},
		{Pattern: "GET /gatehouse/appkeys", Handle: s.handleList, Query: append([]string{"username", "prefix"}, adminapi.PageQuery...)},
		{Pattern: "POST /gatehouse/appkeys/purge-expired", Handle: s.handlePurge},
		{Pattern: "GET /gatehouse/appkeys/{name}", Handle: s.handleGet},
		{Pattern: "PATCH /gatehouse/appkeys/{name}", Handle: s.handlePatch, Body: true},
		{Pattern: "DELETE /gatehouse/appkeys/{name}", Handle: s.handleDelete, Query: []string{"username"}},
		{Pattern: "GET /gatehouse/appkeys/{name}/key", Handle: s.handleReveal},
		{Pattern: "POST /gatehouse/appkeys/{name}/reset-expiration", Handle: s.handleReset},
		{Pattern: "POST /gatehouse/appkeys/{name}/rotate", Handle: s.handleRotate, Body: true},
	}
}

func (s *Service) handleCreate(w http.ResponseWriter, r *http.Request) error {
	var in NewKey
	if err := adminapi.DecodeJSON(r, &in); err != nil {
		return err
	}
	if err := in.resolveAliases(); err != nil {
		return err
	}
	created, err := s.create(r.Context(), in)
	if err != nil {
		return err
	}
	s.audit(r, &record{Name: created.Name, Username: created.Username},
		"key created, expires "+created.ExpiresAt.Format(time.RFC3339))
	return adminapi.WriteJSON(w, http.StatusCreated, created)
}

// accountParam is the ID of the account ?username= names ("" without
// one): the answer is then limited to that account's keys. The admin API
// refuses any other parameter (Username, user) and a query it cannot read
// whole (adminapi.Route.Query): a condition the server did not see must
// not widen a delete to any account's key.
func (s *Service) accountParam(r *http.Request) (string, error) {
	query := r.URL.Query()
	if !query.Has("username") {
		return "", nil
	}
	u, err := s.engine.Accounts.User(r.Context(), query.Get("username"))
	if err != nil {
		return "", err
	}
	return u.ID, nil
}

// handleList lists every key, or with ?username= the keys of that
// account (read from its own entries, not from every key), in name
// order; with ?prefix= those whose name starts with it, and with ?limit=
// a page of them, the next page offered in a Link header (?after= the
// last name of this one; adminapi.ReadPage).
func (s *Service) handleList(w http.ResponseWriter, r *http.Request) error {
	page, err := adminapi.ReadPage(r)
	if err != nil {
		return err
	}
	userID, err := s.accountParam(r)
	if err != nil {
		return err
	}
	q := keyQuery{prefix: r.URL.Query().Get("prefix"), after: page.After, limit: page.Limit}
	var views []View
	var more bool
	if userID != "" {
		views, more, err = s.listOf(r.Context(), userID, q)
	} else {
		views, more, err = s.listPage(r.Context(), q)
	}
	if err != nil {
		return err
	}
	if more {
		adminapi.SetNext(w, r, views[len(views)-1].Name)
	}
	return adminapi.WriteJSON(w, http.StatusOK, views)
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) error {
	v, err := s.get(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return adminapi.WriteJSON(w, http.StatusOK, v)
}

func (s *Service) handlePatch(w http.ResponseWriter, r *http.Request) error {
	var p Patch
	if err := adminapi.DecodeJSON(r, &p); err != nil {
		return err
	}
	if err := p.resolveAliases(); err != nil {
		return err
	}
	v, err := s.update(r.Context(), r.PathValue("name"), p)
	if err != nil {
		return err
	}
	s.audit(r, &record{Name: v.Name, Username: v.Username}, "key updated: "+strings.Join(p.fields(), ", "))
	warnings := []string{}
	if p.IPAllowlist != nil {
		warnings = append(warnings, allowlistWarnings(v.IPAllowlist)...)
	}
	return adminapi.WriteJSON(w, http.StatusOK, Updated{View: *v, Warnings: warnings})
}

// handleDelete deletes the key, with ?username= only while it is that
// account's (404 otherwise), in one step: no other account's key of the
// same name, created meanwhile, is deleted in its place.
func (s *Service) handleDelete(w http.ResponseWriter, r *http.Request) error {
	userID, err := s.accountParam(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	rec, err := s.deleteKey(r.Context(), name, userID)
	if rec != nil {
		s.audit(r, rec, "key deleted")
	}
	if err != nil {
		return err
	}
	if rec == nil { // another account's key
		return notFound(name)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) handleReveal(w http.ResponseWriter, r *http.Request) error {
	value, rec, err := s.reveal(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	s.audit(r, rec, "key value revealed")
	return adminapi.WriteJSON(w, http.StatusOK, map[string]string{"key": value})
}

func (s *Service) handleReset(w http.ResponseWriter, r *http.Request) error {
	v, err := s.resetExpiration(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	s.audit(r, &record{Name: v.Name, Username: v.Username}, "expiration reset to "+v.ExpiresAt.Format(time.RFC3339))
	return adminapi.WriteJSON(w, http.StatusOK, v)
}

func (s *Service) handleRotate(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		GraceSeconds int64 `json:"grace_seconds"`
	}
	if err := adminapi.DecodeOptionalJSON(r, &in); err != nil {
		return err
	}
	value, rec, err := s.rotate(r.Context(), r.PathValue("name"), in.GraceSeconds)
	if rec != nil {
		s.audit(r, rec, fmt.Sprintf("key rotated; the previous value works for %d more seconds", in.GraceSeconds))
	}
	if err != nil {
		return err
	}
	return adminapi.WriteJSON(w, http.StatusOK, map[string]string{"key": value})
}

func (s *Service) handlePurge(w http.ResponseWriter, r *http.Request) error {
	n, err := s.purgeExpired(r.Context(), func(rec *record) { s.audit(r, rec, "expired key purged") })
	if err != nil {
		return err
	}
	return adminapi.WriteJSON(w, http.StatusOK, map[string]int{"deleted": n})
}
