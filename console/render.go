package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/failure"
)

//go:embed templates/*.html
var templateFiles embed.FS

// css is the console's only style; the Content-Security-Policy allows exactly it.
const css = `*{box-sizing:border-box}
body{margin:0;font:1rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;background:#f4f5f7}
header{background:#1e293b;color:#fff;padding:.5rem 1rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center}
header a{color:#fff}header a[aria-current=page]{font-weight:700;text-decoration-thickness:3px}
header .who{margin-left:auto}
nav ul{list-style:none;display:flex;flex-wrap:wrap;gap:1rem;margin:0;padding:0}
main{max-width:72rem;margin:1rem auto;padding:1rem 1.5rem;background:#fff;border:1px solid #d0d4da;border-radius:.5rem}
h1{font-size:1.5rem;margin:0 0 1rem}h2{font-size:1.2rem;margin:1.5rem 0 .5rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0;position:relative}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #d0d4da;vertical-align:top}
.wrap{overflow-wrap:anywhere}
label{display:block;font-weight:600;margin:.5rem 0 .2rem}
label.inline{display:inline;font-weight:400;margin-right:1rem}
input,select,textarea{font:inherit;padding:.4rem;border:1px solid #6b7280;border-radius:.25rem;max-width:100%}
input[type=checkbox]{width:auto}
textarea{width:100%;font-family:ui-monospace,monospace}
input:focus,button:focus,select:focus,textarea:focus,a:focus{outline:3px solid #1d4ed8;outline-offset:2px}
header a:focus{outline-color:#fff}
button{font:inherit;font-weight:600;padding:.4rem .9rem;border:0;border-radius:.25rem;background:#1d4ed8;color:#fff;cursor:pointer;margin:.3rem 0}
button.danger{background:#b91c1c}
form.inline{display:inline-block;margin-right:.5rem}
fieldset{border:1px solid #d0d4da;border-radius:.25rem;margin:.75rem 0;padding:.5rem 1rem;min-width:0}
legend{font-weight:600}
.error{padding:.75rem;border-left:4px solid #b91c1c;background:#fef2f2;color:#7f1d1d}
.notice{padding:.75rem;border-left:4px solid #15803d;background:#f0fdf4;color:#14532d}
.warning{padding:.75rem .75rem .75rem 2rem;border-left:4px solid #b45309;background:#fffbeb;color:#78350f}
.once{padding:.75rem;border:2px solid #b45309;background:#fffbeb}
.secret{font-family:ui-monospace,monospace;word-break:break-all;background:#f4f5f7;padding:.5rem;width:100%}
.muted{color:#4b5563}
.vh{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
img{display:block;margin:1rem 0;max-width:100%;height:auto;image-rendering:pixelated}
a{color:#1d4ed8}
@media (max-width:40rem){main{margin:0;border-radius:0;padding:.75rem}table{display:block;overflow-x:auto}}`

var contentSecurityPolicy = func() string {
	sum := sha256.Sum256([]byte(css))
	return "default-src 'self'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; img-src 'self' data:; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
}()

var funcs = template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"timep": func(t *time.Time) string {
		if t == nil {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"join":     strings.Join,
	"rules":    formatRules,
	"contains": slices.Contains[[]string],
	"outcomes": func() []string { return audit.Outcomes },
	"kinds":    func() []string { return audit.Kinds },
	"navLinks": func() []navLink { return navigation },
	"confirming": func(user, id string, about ...string) confirmField {
		return confirmField{ID: id, User: user, About: strings.Join(about, " ")}
	},
}

// confirmField is what the "confirm" template draws: the id of a form's
// confirmation field, the username a password manager is to fill it for
// (empty: none is named), and what it confirms, for a screen reader (a
// form of a table row: which row; empty outside rows).
type confirmField struct{ ID, User, About string }

// navLink is one entry of the console's navigation.
type navLink struct{ Path, Title string }

// navigation links the admin pages.
var navigation = func() []navLink {
	var out []navLink
	for _, p := range pages() {
		if p.admin {
			out = append(out, navLink{p.path, p.title})
		}
	}
	return out
}()

// templates holds one template per page: the layout with the page's
// "content" block.
var templates = func() map[string]*template.Template {
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html"))
	out := map[string]*template.Template{}
	entries, _ := templateFiles.ReadDir("templates")
	for _, e := range entries {
		if e.Name() == "layout.html" {
			continue
		}
		t := template.Must(template.Must(layout.Clone()).ParseFS(templateFiles, "templates/"+e.Name()))
		out[strings.TrimSuffix(e.Name(), ".html")] = t
	}
	return out
}()

// outcome is what an action tells the page shown after it.
type outcome struct {
	// Notice says what was done; Error why nothing was.
	Notice, Error string
	// Once holds values shown this one time (a new key, a secret).
	Once any
	// Refill is what a form that changed nothing was sent with, but its
	// secrets (refillable): the page draws that form filled with it, so
	// that a mistake is corrected rather than typed again. Nil otherwise.
	Refill url.Values
}

// refillable is what of form f a page may draw again: never a password, a
// confirmation, a code, a secret or the form's own tokens.
func refillable(f form) url.Values {
	out := url.Values{}
	for name, values := range f.values {
		switch {
		case name == "csrf" || name == "nonce" || name == "sure" || name == "code" || name == "setup",
			strings.Contains(name, "password"), strings.Contains(name, "confirm"), strings.Contains(name, "secret"):
			continue
		}
		out[name] = values
	}
	return out
}

// view is what the layout renders.
type view struct {
	Title, Nav, User string
	// Subject is what a page shows when it is more than its kind (the
	// user on the users page): it leads the document's title, so that a
	// browser's tab, history and a screen reader tell the pages apart.
	Subject string
	// CSRF are the forms' hidden fields (the "csrf" template).
	CSRF  formTokens
	Admin bool
	CSS   template.CSS
	outcome
	// SignIn is the message page's "Sign in" link (empty: the portal's
	// own address), one that comes back to the page where a session ended.
	SignIn string
	// Page is the page's own data; Query its query parameters.
	Page  any
	Query map[string]string
}

// show renders page p for v after an action's outcome res. A caller's
// error from loading the page (an unknown user named in the query, a
// filter the admin API refuses) is answered with its status and message:
// on the page itself when the load returned its data too and no action
// ran (after an action, its outcome is what the page tells), else on a
// message page. Only other errors are the console's failure (fail).
func (c *Console) show(w http.ResponseWriter, r *http.Request, v *viewer, p *page, status int, res outcome) {
	data, err := p.load(c, r, v)
	switch {
	case err == nil:
	case !failure.IsCallerError(err):
		c.fail(w, v, err)
		return
	case data == nil:
		c.message(w, v, failure.Status(err), p.title, failure.Message(err))
		return
	case r.Method != http.MethodPost:
		status, res.Error = failure.Status(err), failure.Message(err)
	}
	q := map[string]string{}
	for k, vs := range r.URL.Query() {
		q[k] = vs[0]
	}
	c.render(w, v, status, p.tmpl, view{Title: p.title, Subject: subjectOf(data), Nav: p.path, Page: data, outcome: res, Query: q})
}

// subjected is page data that shows one thing of the page's kind.
type subjected interface{ subject() string }

// subjectOf is data's subject (view.Subject), "" for a page of all.
func subjectOf(data any) string {
	if s, ok := data.(subjected); ok {
		return s.subject()
	}
	return ""
}

// message renders a page with only a message; v is nil for someone not
// admitted (no navigation, no forms).
func (c *Console) message(w http.ResponseWriter, v *viewer, status int, title, msg string) {
	c.render(w, v, status, "message", view{Title: title, outcome: outcome{Error: msg}})
}

func (c *Console) render(w http.ResponseWriter, v *viewer, status int, name string, data view) {
	data.CSS = css
	if v != nil {
		data.User, data.CSRF, data.Admin = v.user.Username, v.tokens(), v.admin
	}
	var buf bytes.Buffer
	if err := templates[name].ExecuteTemplate(&buf, "layout.html", data); err != nil {
		c.engine.Logger.Error("rendering a console page failed", zap.String("page", name), zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func securityHeaders(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
}

// download is a file an action or an export sends.
type download struct {
	name, contentType string
	body              []byte
}

func (d *download) write(w http.ResponseWriter) {
	h := w.Header()
	securityHeaders(h)
	h.Set("Content-Type", d.contentType)
	h.Set("Content-Disposition", `attachment; filename="`+d.name+`"`)
	h.Set("Content-Length", strconv.Itoa(len(d.body)))
	w.WriteHeader(http.StatusOK)
	w.Write(d.body)
}

// sendDownload answers a GET export of page p (e.g. the audit log as CSV).
func (c *Console) sendDownload(w http.ResponseWriter, r *http.Request, v *viewer, p *page) {
	d, err := p.download(c, r, v)
	if err != nil {
		if failure.IsCallerError(err) {
			c.show(w, r, v, p, failure.Status(err), outcome{Error: failure.Message(err)})
			return
		}
		c.fail(w, v, err)
		return
	}
	d.write(w)
}
