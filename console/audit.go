package console

import (
	"bytes"
	"encoding/csv"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/audit"
)

const (
	auditPerPage = 50
	// auditScan is the most events an export holds: the admin API's
	// largest limit.
	auditScan = 10000
)

// auditFilter is the audit page's query: the admin API's filters.
type auditFilter struct {
	Username, Kind, Outcome string
	Since, Until            *time.Time
}

// readAuditFilter reads the filters of q; the admin API checks the values
// of those it takes as they are (kind, outcome).
func readAuditFilter(q url.Values) (auditFilter, error) {
	f := auditFilter{Username: strings.TrimSpace(q.Get("username")), Kind: strings.TrimSpace(q.Get("kind")),
		Outcome: strings.TrimSpace(q.Get("outcome"))}
	var err error
	if f.Since, err = parseTime("since", q.Get("since"), false); err != nil {
		return f, err
	}
	f.Until, err = parseTime("until", q.Get("until"), false)
	return f, err
}

// events returns the matching events, newest first, at most limit
// (auditScan at most): one query of the admin API, which reads the store
// from until on, so every event stays within reach.
func (c *Console) events(r *http.Request, v *viewer, f auditFilter, limit int) ([]audit.Event, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	for name, value := range map[string]string{"username": f.Username, "kind": f.Kind, "outcome": f.Outcome} {
		if value != "" {
			q.Set(name, value)
		}
	}
	for name, t := range map[string]*time.Time{"since": f.Since, "until": f.Until} {
		if t != nil {
			q.Set(name, t.UTC().Format(time.RFC3339Nano))
		}
	}
	var out []audit.Event
	return out, c.call(r, v, http.MethodGet, "/gatehouse/audit?"+q.Encode(), nil, &out)
}

type auditData struct {
	Filter auditFilter
	Events []audit.Event
	// Older is the URL of the next (older) page, empty on the last; CSV
	// that of the export of the filter.
	Older, CSV string
}

func loadAudit(c *Console, r *http.Request, v *viewer) (any, error) {
	q := r.URL.Query()
	f, err := readAuditFilter(q)
	d := auditData{Filter: f}
	if err != nil {
		return d, err // the filter form, with what to correct
	}
	if d.Events, err = c.events(r, v, f, auditPerPage+1); err != nil {
		return d, err
	}
	d.CSV = auditURL(q, "format", "csv")
	if len(d.Events) > auditPerPage {
		d.Events = d.Events[:auditPerPage]
		// Strictly older than the last event shown.
		d.Older = auditURL(q, "until", d.Events[auditPerPage-1].Time.UTC().Format(time.RFC3339Nano))
	}
	return d, nil
}

// auditURL is the audit page's URL with the query q but name set to
// value: a link the template inserts whole (html/template escapes it for
// the attribute, so it must not be escaped twice).
func auditURL(q url.Values, name, value string) string {
	next := maps.Clone(q)
	next.Set(name, value)
	return Prefix + "audit?" + next.Encode()
}

// auditCSV exports the filtered events (at most auditScan) as CSV.
func auditCSV(c *Console, r *http.Request, v *viewer) (*download, error) {
	f, err := readAuditFilter(r.URL.Query())
	if err != nil {
		return nil, err
	}
	events, err := c.events(r, v, f, auditScan)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	// A csv.Writer keeps its first error; w.Error() below returns it.
	_ = w.Write([]string{"time", "kind", "outcome", "username", "actor", "credential", "remote_ip", "method", "path", "host", "reason", "count", "first"})
	for _, ev := range events {
		_ = w.Write(auditRow(ev))
	}
	w.Flush()
	return &download{name: "gatehouse-audit.csv", contentType: "text/csv; charset=utf-8", body: buf.Bytes()}, w.Error()
}

// auditRow is ev's row of the CSV export, every field defused (csvSafe):
// a client chooses more of them than it seems, the request's method among
// them (an HTTP method may start with '+' or '-'). count and first are
// empty but on the summary of a flood of refusals.
func auditRow(ev audit.Event) []string {
	var count, first string
	if ev.Count > 0 {
		count, first = strconv.Itoa(ev.Count), ev.First.UTC().Format(time.RFC3339Nano)
	}
	row := []string{ev.Time.UTC().Format(time.RFC3339Nano), ev.Kind, ev.Outcome, ev.Username, ev.Actor,
		ev.Credential, ev.RemoteIP, ev.Method, ev.Path, ev.Host, ev.Reason, count, first}
	for i := range row {
		row[i] = csvSafe(row[i])
	}
	return row
}

// csvSafe defuses a field a spreadsheet would run as a formula (a client
// chooses the path and the username it claims): a leading = + - @ tab or
// carriage return gets a quote in front, and so does one that starts a
// cell within the field, after spaces or double quotes: behind a ';' (the list separator
// of spreadsheets in locales whose decimal mark is a comma: they split a
// comma-separated line at each ';', and a quoted field is one to them
// only when its quote opens their cell), or behind a line break or tab
// (a line break inside a quoted field ends the row there). Without it,
// "x;=1+1;" as a username, or "/a;=1+1;" as a path, was a formula cell
// in such a spreadsheet.
func csvSafe(s string) string {
	if !strings.ContainsAny(s, csvFormulaStart) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	cellStart := true // at s's start, or past a cell break and spaces
	for i := 0; i < len(s); i++ {
		c := s[i]
		if cellStart && strings.IndexByte(csvFormulaStart, c) >= 0 {
			b.WriteByte('\'')
		}
		b.WriteByte(c)
		switch {
		case strings.IndexByte(csvCellBreaks, c) >= 0:
			cellStart = true
		case c != ' ' && c != '"':
			cellStart = false
		}
	}
	return b.String()
}

// csvFormulaStart are the characters a spreadsheet cell starts a formula
// (or a DDE call) with; csvCellBreaks those after which a spreadsheet
// may start a new cell inside one field of the export.
const (
	csvFormulaStart = "=+-@\t\r"
	csvCellBreaks   = ";\t\r\n"
)

// auditPath is the audit log's page.
const auditPath = Prefix + "audit"

func auditPage() *page {
	return &page{path: auditPath, title: "Audit log", tmpl: "audit", admin: true, load: loadAudit, download: auditCSV}
}
