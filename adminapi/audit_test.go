package adminapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/failure"
)

// adminEvents is the newest limit admin events of e's audit log, once
// every event recorded is written.
func adminEvents(t *testing.T, e *engine.Engine, limit int) []audit.Event {
	t.Helper()
	e.Audit.Flush()
	events, err := e.Audit.Query(context.Background(), audit.Filter{Kind: "admin", Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// TestAuditSaysWhoAndWhat: an admin change's audit event names the user
// it changed (also for a creation, whose name is in the body) and what
// changed (roles and status with their values, a password only by name).
func TestAuditSaysWhoAndWhat(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	h := adminapi.NewHandler(e, adminapi.NewCore(e))
	call := func(method, path, body string) {
		t.Helper()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
		if w.Code >= 300 {
			t.Fatalf("%s %s: %d %s", method, path, w.Code, w.Body)
		}
	}
	call(http.MethodPut, "/gatehouse/roles/ops", `{"rules":[{"methods":["*"],"paths":["/*"]}],"admin":true}`)
	call(http.MethodPost, "/gatehouse/users", `{"username":"Ada","roles":[],"password":"first tulip harbour"}`)
	call(http.MethodPatch, "/gatehouse/users/ada", `{"roles":["ops"],"password":"second password"}`)
	events := adminEvents(t, e, 10)
	var got []string
	for _, ev := range events {
		got = append(got, ev.Method+" "+ev.Username+": "+ev.Reason)
		if strings.Contains(ev.Reason, "first tulip harbour") || strings.Contains(ev.Reason, "second password") {
			t.Errorf("a password in the audit log: %+v", ev)
		}
	}
	for _, want := range []string{
		"PUT : role ops saved: 1 rule(s), admin true",
		"POST ada: user created with roles []",
		"PATCH ada: changed: roles [ops], password",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("audit lacks %q; has %q", want, got)
		}
	}
}

// TestAuditNamesTheActor: an admin call made in the name of a console
// user (audit.WithActor) records that user as the actor; a plain admin
// API call records none.
func TestAuditNamesTheActor(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	h := adminapi.NewHandler(e, adminapi.NewCore(e))
	for _, actor := range []string{"", "root"} {
		r := httptest.NewRequest(http.MethodPut, "/gatehouse/roles/r"+actor, strings.NewReader(`{"rules":[]}`))
		r = r.WithContext(audit.WithActor(r.Context(), actor))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("PUT: %d %s", w.Code, w.Body)
		}
	}
	events := adminEvents(t, e, 10)
	if len(events) != 2 {
		t.Fatalf("events: %+v", events)
	}
	for _, ev := range events {
		if want := strings.TrimPrefix(ev.Path, "/gatehouse/roles/r"); ev.Actor != want {
			t.Errorf("%s: actor %q, want %q", ev.Path, ev.Actor, want)
		}
	}
}

// routes is an adminapi.Provider of the routes given.
type routes []adminapi.Route

func (r routes) AdminRoutes() []adminapi.Route { return r }

// TestInternalErrorsAreLogged: an admin call failed by an internal error
// answers only "internal error", so its cause goes to Caddy's log (it
// went nowhere: an invalid configuration made every connector issuance
// fail without a trace); a caller's mistake is not logged.
func TestInternalErrorsAreLogged(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	core, logs := observer.New(zap.ErrorLevel)
	e.Logger = zap.New(core)
	h := adminapi.NewHandler(e, routes{
		{Pattern: "POST /gatehouse/broken", Handle: func(http.ResponseWriter, *http.Request) error {
			return errors.New("the connector CA expires soon")
		}},
		{Pattern: "POST /gatehouse/refused", Handle: func(http.ResponseWriter, *http.Request) error {
			return failure.Invalid("name is required")
		}},
	})
	for path, want := range map[string]int{"/gatehouse/broken": 500, "/gatehouse/refused": 400} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", path, nil))
		if w.Code != want || strings.Contains(w.Body.String(), "CA expires") {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
	}
	if logs.FilterMessageSnippet("internal error").FilterFieldKey("error").Len() != 1 ||
		!strings.Contains(fmt.Sprint(logs.All()[0].ContextMap()["error"]), "CA expires") || logs.Len() != 1 {
		t.Fatalf("logged: %v; want the internal error's cause, once", logs.All())
	}
}

// TestAuditUntilAndOutcome: GET /gatehouse/audit pages back with until
// (events strictly older than it, RFC 3339 with fractions of a second)
// and filters on outcome; a bad value of either is a 400 that says so.
func TestAuditUntilAndOutcome(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	call := caller(adminapi.NewHandler(e, adminapi.NewCore(e)))
	for i := range 5 {
		if w := call(http.MethodPut, fmt.Sprintf("/gatehouse/roles/r%d", i), `{"rules":[]}`); w.Code != 200 {
			t.Fatalf("PUT r%d: %d %s", i, w.Code, w.Body)
		}
	}
	if w := call(http.MethodDelete, "/gatehouse/roles/nosuchrole", ""); w.Code != 404 {
		t.Fatalf("DELETE nosuchrole: %d %s", w.Code, w.Body)
	}
	query := func(q string) []audit.Event {
		t.Helper()
		w := call(http.MethodGet, "/gatehouse/audit?kind=admin&"+q, "")
		var events []audit.Event
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &events) != nil {
			t.Fatalf("GET /gatehouse/audit?kind=admin&%s: %d %s", q, w.Code, w.Body)
		}
		return events
	}
	reasons := func(events []audit.Event) string {
		var out []string
		for _, ev := range events {
			out = append(out, ev.Reason)
		}
		return strings.Join(out, "; ")
	}
	all := query("outcome=success")
	if len(all) != 5 {
		t.Fatalf("successful admin events: %s", reasons(all))
	}
	first := query("outcome=success&limit=2")
	next := query("outcome=success&limit=2&until=" + url.QueryEscape(first[1].Time.Format(time.RFC3339Nano)))
	if got := reasons(append(first, next...)); got != reasons(all[:4]) {
		t.Errorf("two pages of two: %s; want %s", got, reasons(all[:4]))
	}
	if none := query("until=0001-01-01T00:00:00Z"); len(none) != 0 { // the earliest time: nothing is older
		t.Errorf("events before the year 1: %s", reasons(none))
	}
	if failed := query("outcome=failure"); len(failed) != 1 || failed[0].Path != "/gatehouse/roles/nosuchrole" {
		t.Errorf("failed admin events: %+v", failed)
	}
	for q, says := range map[string]string{
		"until=yesterday":                  "until must be an RFC 3339 time",
		"until=2026-01-02T15:04:05":        "until must be an RFC 3339 time",
		"outcome=ok":                       "outcome must be one of allowed, denied, success, failure",
		"since=2026-01-02T15:04:05.5+0100": "since must be an RFC 3339 time",
	} {
		if w := call(http.MethodGet, "/gatehouse/audit?"+q, ""); w.Code != 400 || !strings.Contains(w.Body.String(), says) {
			t.Errorf("?%s: %d %s; want 400 saying %s", q, w.Code, w.Body, says)
		}
	}
}

// TestEveryCallIsAuditedButPageReads: every admin call is audited, reads
// and calls to no endpoint too (a listing filtered to one user names it),
// but the audit log's own queries and the reads the console makes to
// draw a page (a signed-in user's reloads would write events without
// bound); what the console changes is.
func TestEveryCallIsAuditedButPageReads(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	h := adminapi.NewHandler(e, adminapi.NewCore(e))
	call := func(ctx context.Context, method, path, body string) {
		t.Helper()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequestWithContext(ctx, method, path, strings.NewReader(body)))
	}
	console := audit.WithActor(context.Background(), "ada")
	call(context.Background(), http.MethodPut, "/gatehouse/roles/ops", `{"rules":[{"methods":["GET"],"paths":["/*"]}]}`)
	call(context.Background(), http.MethodPost, "/gatehouse/users", `{"username":"bob","roles":["ops"]}`)
	call(context.Background(), http.MethodGet, "/gatehouse/users", "")
	call(context.Background(), http.MethodGet, "/gatehouse/sessions?username=bob", "")
	call(context.Background(), http.MethodGet, "/gatehouse/nothing", "")
	call(context.Background(), http.MethodGet, "/gatehouse/audit", "")
	call(console, http.MethodGet, "/gatehouse/users/bob", "")
	call(console, http.MethodPatch, "/gatehouse/users/bob", `{"status":"blocked"}`)
	call(context.Background(), http.MethodDelete, "/gatehouse/roles/ops?username=bob", "") // refused: no user named by a query it does not take
	events := adminEvents(t, e, 20)
	var got []string
	for _, ev := range events {
		got = append(got, fmt.Sprintf("%s %s %s %s %s", ev.Method, ev.Path, ev.Username, ev.Outcome, ev.Actor))
	}
	want := []string{ // newest first
		"DELETE /gatehouse/roles/ops  failure ",
		"PATCH /gatehouse/users/bob bob success ada",
		"GET /gatehouse/nothing  failure ",
		"GET /gatehouse/sessions bob success ",
		"GET /gatehouse/users  success ",
		"POST /gatehouse/users bob success ",
		"PUT /gatehouse/roles/ops  success ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("admin events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
