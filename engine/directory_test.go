package engine_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/directory"
	"github.com/gatehouse-auth/gatehouse/directory/directorytest"
	"github.com/gatehouse-auth/gatehouse/directory/slapdtest"
)

// withDirectory is newSetup with accounts from srv too, its operators
// group mapped to reader.
func withDirectory(t *testing.T, srv *slapdtest.Server) *setup {
	t.Helper()
	s := newSetup(t)
	s.e.Accounts.SetDirectory(directorytest.New(t, srv, func(c *directory.Config) {
		c.GroupRoles = []directory.GroupRole{{Group: slapdtest.OperatorsDN, Role: "reader"}}
	}))
	return s
}

// message is the "message" of a JSON refusal.
func message(t *testing.T, body string) string {
	t.Helper()
	var v struct{ Message string }
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("refusal %q: %v", body, err)
	}
	return v.Message
}

// TestA503NamesTheDirectory: a request refused because the directory does
// not answer says so, not that the store is unavailable (the operator
// would look at the wrong server), and so does the log line; a store
// outage still names the store.
func TestA503NamesTheDirectory(t *testing.T) {
	srv := slapdtest.Start(t)
	srv.AddUser("dora", "dora password", "", slapdtest.OperatorsDN)
	s := withDirectory(t, srv)
	core, logs := observer.New(zap.ErrorLevel)
	s.e.Logger = zap.New(core)

	s.flaky.Down.Store(true)
	s.e.Store.Purge()
	if w, _ := s.do(t, "GET", "/api/x", basicAuth("alice", "correct horse")); w.Code != 503 ||
		message(t, w.Body.String()) != "the authentication store is unavailable; try again later" {
		t.Errorf("the store down: %d %s; want 503 naming the store", w.Code, w.Body)
	}
	s.flaky.Down.Store(false)

	srv.Stop()
	if w, _ := s.do(t, "GET", "/api/x", basicAuth("dora", "dora password")); w.Code != 503 ||
		message(t, w.Body.String()) != "the account directory is unavailable; try again later" {
		t.Errorf("the directory down: %d %s; want 503 naming the account directory", w.Code, w.Body)
	}
	if logs.FilterMessage("refusing requests: store unavailable").Len() != 1 || logs.FilterMessage("refusing requests: directory unavailable").Len() != 1 {
		t.Errorf("logged %+v; want one line naming the store, one naming the directory", logs.All())
	}
}

// TestARefusedRightPasswordIsAuditedWithWhy: a directory account's right
// password that the directory's status refuses is answered as a wrong one
// over HTTP Basic, and audited with why, as the login portal audits it.
func TestARefusedRightPasswordIsAuditedWithWhy(t *testing.T) {
	srv := slapdtest.Start(t)
	srv.AddUser("dave", "dave password", "") // in no mapped group
	s := withDirectory(t, srv)
	w, up := s.do(t, "GET", "/api/x", basicAuth("dave", "dave password"))
	if w.Code != http.StatusUnauthorized || up != nil || message(t, w.Body.String()) != "invalid username or password" {
		t.Fatalf("dave's right password, in no mapped group: %d %s; want the 401 of a wrong password", w.Code, w.Body)
	}
	s.e.Audit.Flush()
	events, err := s.e.Audit.Query(context.Background(), audit.Filter{Kind: "request", Username: "dave"})
	if err != nil || len(events) != 1 || !strings.Contains(events[0].Reason, "in no mapped group") {
		t.Errorf("dave's refusal audited as %+v, %v; want its reason naming the directory's status", events, err)
	}
}
