package adminapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/session"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// caller returns a function that makes one admin call to h and answers
// its response.
func caller(h http.Handler) func(method, path, body string) *httptest.ResponseRecorder {
	return func(method, path, body string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
		return w
	}
}

// TestListAndEndSessions: GET /gatehouse/sessions lists the user's live
// sessions' metadata, never the cookie value; DELETE /gatehouse/sessions/{id}
// ends one (audited with its user), is 404 once it has ended and 400 for
// a malformed ID; with the store down both answer 503 and change nothing.
func TestListAndEndSessions(t *testing.T) {
	var flaky *enginetest.FlakyStore // Get, Delete and Scan fail while down
	e := enginetest.New(t, engine.Config{}, func(s storage.Store) storage.Store {
		flaky = &enginetest.FlakyStore{Store: s, Fails: enginetest.CallGet | enginetest.CallDelete | enginetest.CallScan}
		return flaky
	})
	call := caller(adminapi.NewHandler(e, adminapi.NewCore(e)))
	if w := call(http.MethodPost, "/gatehouse/users", `{"username":"ada","roles":[],"password":"a password"}`); w.Code != http.StatusCreated {
		t.Fatalf("creating ada: %d %s", w.Code, w.Body)
	}
	u, err := e.Accounts.User(context.Background(), "ada")
	if err != nil {
		t.Fatal(err)
	}
	token, err := e.Sessions.Create(context.Background(), session.Session{Username: "ada", UserID: u.ID, Origin: session.OriginAppKey, AppKey: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	id := session.ID(token)

	w := call(http.MethodGet, "/gatehouse/sessions?username=ADA", "")
	var listed []adminapi.SessionView
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &listed) != nil || len(listed) != 1 {
		t.Fatalf("listing: %d %s", w.Code, w.Body)
	}
	if s := listed[0]; s.ID != id || s.Kind != adminapi.SessionKindAppKey || s.AppKey != "ci" || s.CreatedAt.IsZero() ||
		!s.ExpiresAt.After(s.LastSeenAt) || s.ExpiresAt.After(s.LastSeenAt.Add(31*time.Minute)) {
		t.Errorf("listed %+v", s)
	}
	if strings.Contains(w.Body.String(), token) {
		t.Error("the listing holds the cookie value")
	}
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/gatehouse/sessions", http.StatusBadRequest},
		{http.MethodGet, "/gatehouse/sessions?username=nobody", http.StatusNotFound},
		{http.MethodDelete, "/gatehouse/sessions/" + strings.ToUpper(id), http.StatusBadRequest},
		{http.MethodDelete, "/gatehouse/sessions/" + id[:63], http.StatusBadRequest},
		{http.MethodDelete, "/gatehouse/sessions/" + session.ID("another token"), http.StatusNotFound},
	} {
		if w := call(tc.method, tc.path, ""); w.Code != tc.status {
			t.Errorf("%s %s: %d %s; want %d", tc.method, tc.path, w.Code, w.Body, tc.status)
		}
	}

	flaky.Down.Store(true)
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		path := "/gatehouse/sessions/" + id
		if method == http.MethodGet {
			path = "/gatehouse/sessions?username=ada"
		}
		if w := call(method, path, ""); w.Code != http.StatusServiceUnavailable {
			t.Errorf("%s with the store down: %d %s", method, w.Code, w.Body)
		}
	}
	flaky.Down.Store(false)
	if _, err := e.Sessions.Lookup(context.Background(), token); err != nil {
		t.Fatalf("the session after a failed DELETE: %v", err)
	}

	if w := call(http.MethodDelete, "/gatehouse/sessions/"+id, ""); w.Code != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", w.Code, w.Body)
	}
	if _, err := e.Sessions.Lookup(context.Background(), token); err == nil {
		t.Error("the ended session still works")
	}
	if w := call(http.MethodDelete, "/gatehouse/sessions/"+id, ""); w.Code != http.StatusNotFound {
		t.Errorf("DELETE again: %d", w.Code)
	}
	e.Audit.Flush()
	events, err := e.Audit.Query(context.Background(), audit.Filter{Kind: "admin", Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	ended := 0
	for _, ev := range events {
		if ev.Path == "/gatehouse/sessions/"+id && ev.Outcome == audit.OutcomeSuccess {
			ended++
			if ev.Username != "ada" || ev.Reason != "session "+id[:16]+" ended" {
				t.Errorf("the ending audited as %+v", ev)
			}
		}
	}
	if ended != 1 {
		t.Errorf("%d successful endings audited; want 1", ended)
	}
}
