package portal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"html/template"
	"image/png"
	"net/http"

	"github.com/pquerna/otp"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/failure"
)

func (p *Portal) enrol(w http.ResponseWriter, r *http.Request) {
	const title = "Set up two-factor authentication"
	invalid := func(err error) {
		if errors.Is(err, failure.ErrNotFound) {
			p.message(w, http.StatusNotFound, title, failure.Message(err))
			return
		}
		p.fail(w, err)
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		t := queryParam(r, "t")
		username, err := p.svc.CheckEnrolmentLink(r.Context(), t)
		if err != nil {
			invalid(err)
			return
		}
		token := p.token(w, r)
		// The link's token is in this page's address: requests the page
		// makes on the same site (a favicon, a link to the application)
		// send the origin alone as their Referer, so the token never
		// reaches an upstream's logs. The page's <meta name="referrer">
		// says so too: browsers apply it over the header.
		p.render(w, http.StatusOK, page{Title: title, Step: "enrol-confirm", CSRF: p.csrf(token), Token: t, Username: username, Referrer: "origin"})
	case http.MethodPost:
		token, f := p.readForm(w, r)
		if token == "" {
			return
		}
		en, err := p.svc.RedeemEnrolmentLink(r.Context(), f.Token)
		if err != nil {
			invalid(err)
			return
		}
		qr, err := QRDataURI(en.URI)
		if err != nil {
			p.fail(w, err)
			return
		}
		p.record(r, en.Username, audit.OutcomeSuccess, "enrolment link used; authenticator setup shown")
		p.render(w, http.StatusOK, page{Title: title, Step: "enrol-show", Username: en.Username, Secret: en.Secret, URI: en.URI, QR: qr})
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// QRDataURI renders an otpauth URI as a QR code PNG in a data: URI (the
// login portal's enrolment page and the console show it).
func QRDataURI(uri string) (template.URL, error) {
	key, err := otp.NewKeyFromURL(uri)
	if err != nil {
		return "", err
	}
	img, err := key.Image(256, 256)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return "", err
	}
	return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes())), nil //nolint:gosec // G203: base64 of a PNG we drew, no input
}
