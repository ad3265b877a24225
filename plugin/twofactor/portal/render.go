package portal

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/storage"
)

//go:embed page.html
var pageHTML string

var pageTemplate = template.Must(template.New("page").Parse(pageHTML))

// css is the only style; the Content-Security-Policy allows exactly it.
const css = `*{box-sizing:border-box}
body{margin:0;font:1.0625rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;background:#f4f5f7}
main{max-width:26rem;margin:2rem auto;padding:1.5rem;background:#fff;border:1px solid #d0d4da;border-radius:.5rem}
h1{font-size:1.5rem;margin:0 0 1rem}
label{display:block;font-weight:600;margin:1rem 0 .25rem}
input{display:block;width:100%;font:inherit;padding:.6rem;border:1px solid #6b7280;border-radius:.25rem}
input:focus,button:focus{outline:3px solid #1d4ed8;outline-offset:2px}
button{margin-top:1.25rem;width:100%;font:inherit;font-weight:600;padding:.7rem;border:0;border-radius:.25rem;background:#1d4ed8;color:#fff;cursor:pointer}
button.link{width:auto;margin-top:.75rem;padding:.25rem 0;background:none;color:#1d4ed8;text-decoration:underline;font-weight:400}
.secondary{display:flex;gap:1.5rem;flex-wrap:wrap}
.error{padding:.75rem;border-left:4px solid #b91c1c;background:#fef2f2;color:#7f1d1d}
.notice{padding:.75rem;border-left:4px solid #15803d;background:#f0fdf4;color:#14532d}
.secret{font-family:ui-monospace,monospace;word-break:break-all;background:#f4f5f7;padding:.5rem}
img{display:block;margin:1rem auto;max-width:100%;height:auto;image-rendering:pixelated}
a{color:#1d4ed8}
@media (max-width:30rem){main{margin:0;border:0;border-radius:0;min-height:100vh}}`

var contentSecurityPolicy = func() string {
	sum := sha256.Sum256([]byte(css))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
}()

// page is what the template renders.
type page struct {
	Title, Step, Error, Notice string
	CSRF, Return, Username     string
	HasApp, HasSMS, HasToken   bool
	Token, Secret, URI         string
	QR                         template.URL
	CSS                        template.CSS
	// Referrer is the page's referrer policy, sent as the
	// Referrer-Policy header and in the page's own <meta name="referrer">
	// (which browsers apply over the header): same-origin when empty.
	Referrer string
}

func (p *Portal) render(w http.ResponseWriter, status int, pg page) {
	pg.CSS = css
	if pg.Title == "" {
		pg.Title = "Sign in"
	}
	if pg.Referrer == "" {
		pg.Referrer = "same-origin" // "no-referrer" would make browsers send "Origin: null" on our own forms
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, pg); err != nil {
		p.engine.Logger.Error("rendering the login portal failed", zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", pg.Referrer)
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (p *Portal) message(w http.ResponseWriter, status int, title, msg string) {
	p.render(w, status, page{Title: title, Step: "message", Error: msg})
}

// fail answers an unexpected error: 503 when the store is down, 500 otherwise.
func (p *Portal) fail(w http.ResponseWriter, err error) {
	p.engine.LogFailure("login portal", err)
	status := http.StatusInternalServerError
	if errors.Is(err, storage.ErrUnavailable) {
		status = http.StatusServiceUnavailable
	}
	p.message(w, status, "Unavailable", msgUnavailable)
}
