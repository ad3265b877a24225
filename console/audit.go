package console

import (
	"bytes"
	"encoding/csv"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/failure"
)

const (
	auditPerPage = 50
	// auditScan is the most events one audit page or export reads.
	auditScan = 10000
)

// auditFilter is the audit page's query: the admin API's filters (user,
// kind, since) plus outcome and until, applied here.
type auditFilter struct {
	Username, Kind, Outcome string
	Since, Until            *time.Time
}

func readAuditFilter(q url.Values) (auditFilter, error) {
	f := auditFilter{Username: strings.TrimSpace(q.Get("username")), Kind: strings.TrimSpace(q.Get("kind")),
		Outcome: strings.TrimSpace(q.Get("outcome"))}
	var err error
	if f.Since, err = parseTime("since", q.Get("since")); err != nil {
		return f, err
	}
	if f.Until, err = parseTime("until", q.Get("until")); err != nil {
		return f, err
	}
	switch f.Outcome {
	case "", audit.OutcomeAllowed, audit.OutcomeDenied, audit.OutcomeSuccess, audit.OutcomeFailure:
	default:
		return f, failure.Invalid("outcome must be allowed, denied, success or failure")
	}
	return f, nil
}

// events returns the matching events, newest first, at most limit.
func (c *Console) events(r *http.Request, v *viewer, f auditFilter, limit int) ([]audit.Event, error) {
	q := url.Values{"limit": {"10000"}}
	if f.Username != "" {
		q.Set("username", f.Username)
	}
	if f.Kind != "" {
		q.Set("kind", f.Kind)
	}
	if f.Since != nil {
		q.Set("since", f.Since.UTC().Format(time.RFC3339))
	}
	var all []audit.Event
	if err := c.call(r, v, http.MethodGet, "/gatehouse/audit?"+q.Encode(), nil, &all); err != nil {
		return nil, err
	}
	out := all[:0]
	for _, ev := range all {
		if (f.Outcome != "" && ev.Outcome != f.Outcome) || (f.Until != nil && ev.Time.After(*f.Until)) {
			continue
		}
		out = append(out, ev)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

type auditData struct {
	Filter auditFilter
	Events []audit.Event
	// Older is the query of the next (older) page; empty on the last.
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
	csvQuery := url.Values{}
	for k, vs := range q {
		csvQuery[k] = vs
	}
	csvQuery.Set("format", "csv")
	d.CSV = csvQuery.Encode()
	if len(d.Events) > auditPerPage {
		d.Events = d.Events[:auditPerPage]
		older := url.Values{}
		for k, vs := range q {
			older[k] = vs
		}
		older.Set("until", d.Events[auditPerPage-1].Time.Add(-time.Nanosecond).UTC().Format(time.RFC3339Nano))
		d.Older = older.Encode()
	}
	return d, nil
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
	_ = w.Write([]string{"time", "kind", "outcome", "username", "actor", "credential", "remote_ip", "method", "path", "reason", "count", "first"})
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
		ev.Credential, ev.RemoteIP, ev.Method, ev.Path, ev.Reason, count, first}
	for i := range row {
		row[i] = csvSafe(row[i])
	}
	return row
}

// csvSafe defuses a field a spreadsheet would run as a formula (a client
// chooses the path and the username it claims): a leading = + - @ tab or
// carriage return gets a quote in front.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func auditPage() *page {
	return &page{path: Prefix + "audit", title: "Audit log", tmpl: "audit", admin: true, load: loadAudit, download: auditCSV}
}
