package console

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/session"
)

// get serves the console page target to v's browser and returns the answer.
func get(c *Console, v *viewer, target string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "https://gh.test"+target, nil)
	r.AddCookie(&http.Cookie{Name: session.CookieName, Value: v.token})
	w := httptest.NewRecorder()
	c.ServeHTTP(w, r)
	return w
}

// TestAuditValuesAreIsolated: a path holding a right-to-left override
// (U+202E), which any client can send without signing in, must not reorder
// the rest of the audit row: without isolation "GET /x‮4.3.2.1 morf from
// 127.0.0.1" is displayed as "GET /x1.0.0.721 morf from 4.3.2.1", the
// address the request came from replaced by one the client chose.
func TestAuditValuesAreIsolated(t *testing.T) {
	e, c, v := signedInAdmin(t, true)
	path := "/x\u202e4.3.2.1 morf "
	e.Audit.Record(audit.Event{Time: time.Now(), Kind: audit.KindRequest, Outcome: audit.OutcomeDenied,
		Username: "\u202eeve", RemoteIP: "127.0.0.1", Method: "GET", Path: path, Reason: "no credential \u202ewas presented"})
	if pending := e.Audit.Flush(); pending != 0 {
		t.Fatalf("%d events not written", pending)
	}
	w := get(c, v, Prefix+"audit?kind=request")
	body := w.Body.String()
	if w.Code != http.StatusOK {
		t.Fatalf("audit page: %d\n%s", w.Code, body)
	}
	for _, want := range []string{"<bdi>" + path + "</bdi>", " from <bdi>127.0.0.1</bdi>", "<bdi>\u202eeve</bdi>",
		"<bdi>no credential \u202ewas presented</bdi>", "<bdi>GET</bdi>"} {
		if !strings.Contains(body, want) {
			t.Errorf("the audit row does not hold %q in an element of its own:\n%s", want, body)
		}
	}
}
