package console

import (
	"encoding/csv"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
)

func TestServes(t *testing.T) {
	for path, want := range map[string]bool{
		"/gatehouse/console": true, "/gatehouse/console/": true, "/gatehouse/console/users": true, "/gatehouse/account": true,
		"/gatehouse/consoles": false, "/gatehouse/accounts": false, "/gatehouse/login": false, "/app/gatehouse/console/": false,
	} {
		if Serves(path) != want {
			t.Errorf("Serves(%q) = %v", path, !want)
		}
	}
	for _, p := range Paths() {
		if !Serves(p) {
			t.Errorf("Paths lists %q, which Serves does not claim", p)
		}
	}
}

func TestParseRules(t *testing.T) {
	rules, err := parseRules("GET,POST /api/* /status\n\n  * *  \r\n")
	if err != nil || len(rules) != 2 || strings.Join(rules[0].Methods, ",") != "GET,POST" ||
		strings.Join(rules[0].Paths, " ") != "/api/* /status" || rules[1].Paths[0] != "*" {
		t.Fatalf("parseRules = %+v, %v", rules, err)
	}
	if _, err := parseRules("GET\n"); err == nil {
		t.Error("a rule without a path was accepted")
	}
	if rules, err := parseRules(""); err != nil || rules == nil || len(rules) != 0 {
		t.Errorf("no rules: %+v %v (want an empty, non-nil list)", rules, err)
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]string{
		"2026-12-31":           "2026-12-31T23:59:59Z",
		"2026-12-31T18:00":     "2026-12-31T18:00:00Z",
		"2026-12-31T18:00:05":  "2026-12-31T18:00:05Z",
		"2026-12-31T18:00:00Z": "2026-12-31T18:00:00Z",
	} {
		got, err := parseTime("expires_at", in, true)
		if err != nil || got.UTC().Format(time.RFC3339) != want {
			t.Errorf("parseTime(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	// The audit log's bounds: a date is its start (since it, before it).
	if got, err := parseTime("until", "2026-12-31", false); err != nil || got.UTC().Format(time.RFC3339) != "2026-12-31T00:00:00Z" {
		t.Errorf("a date as a bound: %v, %v; want its start", got, err)
	}
	if got, err := parseTime("x", " ", true); got != nil || err != nil {
		t.Errorf("empty time: %v %v", got, err)
	}
	if _, err := parseTime("expires_at", "tomorrow", true); err == nil || !strings.Contains(err.Error(), "expires_at") {
		t.Errorf("a bad time: %v", err)
	}
}

func TestCSVSafe(t *testing.T) {
	for in, want := range map[string]string{"=cmd|' /C calc'!A0": "'=cmd|' /C calc'!A0", "+1": "'+1", "-x": "'-x",
		"@SUM(1)": "'@SUM(1)", "/app": "/app", "": "", "alice": "alice"} {
		if got := csvSafe(in); got != want {
			t.Errorf("csvSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAuditRowDefusesEveryField(t *testing.T) {
	ev := audit.Event{Time: time.Unix(0, 0), Kind: "request", Outcome: "denied", Username: "=u", Actor: "@a", Credential: "-c",
		RemoteIP: "127.0.0.1", Method: "+cmd|'calc'!A0", Path: "/app/x", Host: "=cmd|'/c calc'!A0", Reason: "=r"}
	row := auditRow(ev)
	if len(row) != 13 || row[7] != "'+cmd|'calc'!A0" || row[9] != "'=cmd|'/c calc'!A0" || row[11] != "" {
		t.Fatalf("auditRow = %q; want the method defused", row)
	}
	for _, field := range row {
		if field != "" && strings.ContainsRune("=+-@\t\r", rune(field[0])) {
			t.Errorf("auditRow field %q starts a formula", field)
		}
	}
}

// TestAuditRowOfASummary: a summary's row says how many refusals it
// stands for, and since when.
func TestAuditRowOfASummary(t *testing.T) {
	ev := audit.Event{Time: time.Unix(60, 0), Kind: "request", Outcome: "denied", RemoteIP: "192.0.2.1", Count: 4512, First: time.Unix(1, 0)}
	if row := auditRow(ev); row[11] != "4512" || row[12] != "1970-01-01T00:00:01Z" {
		t.Fatalf("auditRow = %q; want the count and the first refusal's time", row)
	}
}

func TestParseForm(t *testing.T) {
	const ct = "application/x-www-form-urlencoded"
	f, err := parseForm(ct, []byte("csrf=ab&action=roles&roles=a&roles=b&username=al%C3%A9"))
	if err != nil || f.get("action") != "roles" || len(f.all("roles")) != 2 || f.get("username") != "alé" || f.values["password"] != nil {
		t.Fatalf("parseForm = %+v, %v", f, err)
	}
	for name, tc := range map[string]struct{ ct, body string }{
		"JSON":             {"application/json", `{"a":1}`},
		"repeated field":   {ct, "action=a&action=b"},
		"NUL":              {ct, "username=a%00b"},
		"invalid UTF-8":    {ct, "username=%ff"},
		"malformed":        {ct, "a=%zz"},
		"too long a field": {ct, "description=" + strings.Repeat("a", maxFieldBytes+1)},
		"too large":        {ct, "a=" + strings.Repeat("b", maxFormBytes)},
	} {
		if _, err := parseForm(tc.ct, []byte(tc.body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseForm(f *testing.F) {
	for _, s := range []string{"csrf=a&action=create&roles=x&roles=y", "a=%zz", "username=%ff", "x=1&x=2", "=&&=", "roles=%00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		form, err := parseForm("application/x-www-form-urlencoded", []byte(body))
		if err != nil {
			return
		}
		for name, vs := range form.values {
			if len(vs) > 1 && !multiValued[name] {
				t.Fatalf("field %q accepted %d times", name, len(vs))
			}
			for _, v := range vs {
				if len(v) > maxFieldBytes || strings.ContainsRune(v, 0) || !utf8.ValidString(v) {
					t.Fatalf("field %q accepted value %q", name, v)
				}
			}
		}
	})
}

// TestEscKeepsNames: a name escaped by esc reaches the admin API's
// handler as it was typed, "." and ".." too, which the mux would
// otherwise resolve as dot segments and answer with a redirect.
func TestEscKeepsNames(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /gatehouse/users/{username}/otp", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.PathValue("username")))
	})
	for _, name := range []string{".", "..", "...", "a.b", "a/b", "a b", "ä", "%2e", "?x=1#y"} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/gatehouse/users/"+esc(name)+"/otp", nil))
		if w.Code != http.StatusOK || w.Body.String() != name {
			t.Errorf("esc(%q) = %q reached the handler as %d %q", name, esc(name), w.Code, w.Body)
		}
	}
}

// TestAuditPagesBeyondTheNewest10000: the audit page reaches events
// older than the newest 10 000 that match (the admin API's largest
// limit), and its "Older events" link leads on from there to the oldest.
func TestAuditPagesBeyondTheNewest10000(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	base := time.Now().UTC().Add(-time.Hour)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Millisecond) }
	const n = auditScan + 100
	for i := range n {
		e.Audit.Record(audit.Event{Time: at(i), Kind: audit.KindAdmin, Outcome: audit.OutcomeSuccess, Reason: strconv.Itoa(i)})
	}
	if pending := e.Audit.Flush(); pending != 0 {
		t.Fatalf("%d events not written", pending)
	}
	c := New(e, adminapi.NewHandler(e, adminapi.NewCore(e)), nil)
	v := &viewer{user: &account.User{Username: "root"}}
	load := func(target string) auditData {
		t.Helper()
		d, err := loadAudit(c, httptest.NewRequest(http.MethodGet, target, nil), v)
		if err != nil {
			t.Fatalf("GET %s: %v", target, err)
		}
		return d.(auditData)
	}
	reasons := func(d auditData) string {
		var out []string
		for _, ev := range d.Events {
			out = append(out, ev.Reason)
		}
		return strings.Join(out, " ")
	}
	span := func(from, to int) string { // the reasons from, from-1, … to
		var out []string
		for i := from; i >= to; i-- {
			out = append(out, strconv.Itoa(i))
		}
		return strings.Join(out, " ")
	}
	// Before the 80th event: 10 020 newer ones match.
	d := load(Prefix + "audit?kind=admin&until=" + url.QueryEscape(at(80).Format(time.RFC3339Nano)))
	if got := reasons(d); got != span(79, 30) || d.Older == "" {
		t.Fatalf("until the 80th event: %s; older %q", got, d.Older)
	}
	d = load(d.Older)
	if got := reasons(d); got != span(29, 0) || d.Older != "" {
		t.Fatalf("the page after it: %s; older %q", got, d.Older)
	}
}

func TestSplitLists(t *testing.T) {
	for _, c := range []struct {
		got  []string
		want string
	}{
		{splitList(" 10.0.0.1, 10.0.0.0/8\n::1\t"), "10.0.0.1|10.0.0.0/8|::1"},
		{splitTags(" nightly build, arm64\r\n,,x "), "nightly build|arm64|x"},
	} {
		if strings.Join(c.got, "|") != c.want {
			t.Errorf("got %q, want %s", c.got, c.want)
		}
	}
	if splitList(" , ") == nil || splitTags("") == nil {
		t.Error("an empty list is nil")
	}
}

// TestCSVSafeDefusesCellsWithinAField: a spreadsheet whose list
// separator is ';' (locales with a decimal comma) splits a line of the
// export at every ';', and a line break inside a quoted field ends its
// row: no cell it could start inside a field may start a formula either.
func TestCSVSafeDefusesCellsWithinAField(t *testing.T) {
	for in, want := range map[string]string{
		"x;=1+1;":               "x;'=1+1;",
		"/a;=cmd|' /C calc'!A0": "/a;'=cmd|' /C calc'!A0",
		"/a\n=1+1":              "/a\n'=1+1",
		"u; @SUM(1)":            "u; '@SUM(1)",
		`x;"=1+1`:               `x;"'=1+1`,
		"a;b=c":                 "a;b=c",
		"a-b;c+d":               "a-b;c+d",
		"unknown user":          "unknown user",
	} {
		if got := csvSafe(in); got != want {
			t.Errorf("csvSafe(%q) = %q, want %q", in, got, want)
		}
	}
	ev := audit.Event{Time: time.Unix(0, 0), Kind: "request", Outcome: "denied", Username: "x;=2+2;", RemoteIP: "127.0.0.1",
		Method: "GET", Path: "/report;=HYPERLINK(A1);\n-1+1", Host: "h;+1", Reason: "unknown user"}
	var buf strings.Builder
	w := csv.NewWriter(&buf)
	_ = w.Write(auditRow(ev))
	w.Flush()
	if cell := formulaCell(buf.String()); cell != "" {
		t.Errorf("the row %q has a cell %q that starts a formula where ';' separates cells", buf.String(), cell)
	}
}

// formulaCell returns the first cell of out, split as a spreadsheet
// whose list separator is ';' may split it (at ';', tabs and line
// breaks, whatever the quotes), that starts a formula after spaces and
// quotes; "" when there is none.
func formulaCell(out string) string {
	for cell := range strings.FieldsFuncSeq(out, func(r rune) bool { return strings.ContainsRune(";\t\r\n", r) }) {
		if rest := strings.TrimLeft(cell, ` "`); rest != "" && strings.ContainsRune("=+-@", rune(rest[0])) {
			return cell
		}
	}
	return ""
}
