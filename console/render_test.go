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
	for _, want := range []string{`<bdi class="wrap">` + path + "</bdi>", " from <bdi>127.0.0.1</bdi>", "<bdi>\u202eeve</bdi>",
		`<bdi class="wrap">no credential ` + "\u202e" + `was presented</bdi>`, "<bdi>GET</bdi>"} {
		if !strings.Contains(body, want) {
			t.Errorf("the audit row does not hold %q in an element of its own:\n%s", want, body)
		}
	}
}

// TestLongValuesWrap: a value without a break (a client's 3000-character
// request path, an application key's description: class "wrap") wraps
// inside its table cell rather than widening the table past the window:
// one such request made the audit table 12 818 px wide in Chromium, its
// Reason column and every row's address out of sight. Only those values
// may break anywhere: on every cell it let the table squeeze short words
// ("console", "success") to a letter a line. A narrow window scrolls a table
// sideways on its own, not the page. (The layout itself is checked in a
// browser; this keeps the rules that give it.)
func TestLongValuesWrap(t *testing.T) {
	for _, rule := range []string{".wrap{overflow-wrap:anywhere}", "table{display:block;overflow-x:auto}"} {
		if !strings.Contains(css, rule) {
			t.Errorf("the console's style lacks %q", rule)
		}
	}
}
