package portal

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/gatehouse-auth/gatehouse/account"
)

// maxFormBytes caps a portal form body.
const maxFormBytes = 16 << 10

// form is a submitted portal form.
type form struct {
	CSRF, Step, Username, Password, Code, Return, Token string
}

// formFields are the accepted fields with their length limits in bytes.
var formFields = []struct {
	name string
	max  int
	dst  func(*form) *string
}{
	{"csrf", 128, func(f *form) *string { return &f.CSRF }},
	{"step", 16, func(f *form) *string { return &f.Step }},
	{"username", 4 * account.MaxUsernameLength, func(f *form) *string { return &f.Username }},
	{"password", account.MaxPasswordLength, func(f *form) *string { return &f.Password }},
	{"code", 32, func(f *form) *string { return &f.Code }},
	{"return", maxReturnLength, func(f *form) *string { return &f.Return }},
	{"t", 64, func(f *form) *string { return &f.Token }},
}

// parseForm decodes an application/x-www-form-urlencoded body. Each known
// field may appear at most once, must be valid UTF-8 and within its length
// limit; unknown fields are ignored.
func parseForm(contentType string, body []byte) (form, error) {
	var f form
	if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != "application/x-www-form-urlencoded" {
		return f, fmt.Errorf("the form must be sent as application/x-www-form-urlencoded")
	}
	if len(body) > maxFormBytes {
		return f, fmt.Errorf("the form exceeds %d bytes", maxFormBytes)
	}
	values, err := url.ParseQuery(string(body))
	if err != nil {
		return f, fmt.Errorf("the form is malformed")
	}
	for _, field := range formFields {
		v := values[field.name]
		switch {
		case len(v) > 1:
			return form{}, fmt.Errorf("the field %q appears more than once", field.name)
		case len(v) == 0:
			continue
		case len(v[0]) > field.max:
			return form{}, fmt.Errorf("the field %q is too long", field.name)
		case !utf8.ValidString(v[0]) || strings.ContainsRune(v[0], 0):
			return form{}, fmt.Errorf("the field %q is not valid text", field.name)
		}
		*field.dst(&f) = v[0]
	}
	return f, nil
}

// queryParam is the query parameter name of r when it is given exactly
// once, and "" otherwise: a link with two enrolment tokens or two return
// paths is no link this portal made, and must not be read as its first.
func queryParam(r *http.Request, name string) string {
	if v := r.URL.Query()[name]; len(v) == 1 {
		return v[0]
	}
	return ""
}

// maxReturnLength caps the return path.
const maxReturnLength = 2048

// SafeReturn returns target when it is a path on this site to send the
// browser back to after sign-in, and "/" otherwise: it must start with a
// single '/', hold no backslash, control character or whitespace (browsers
// drop tabs and newlines, turning "/\t/evil" into "//evil"), no scheme or
// host, and not point at the portal itself (anything under /gatehouse/)
// once its dot segments are resolved.
func SafeReturn(target string) string {
	if target == "" || len(target) > maxReturnLength || target[0] != '/' {
		return "/"
	}
	if len(target) > 1 && (target[1] == '/' || target[1] == '\\') {
		return "/"
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	if !utf8.ValidString(target) {
		return "/"
	}
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "/"
	}
	// Dot segments are resolved before the redirect is followed: by
	// http.Redirect, in everything before the '?' as it stands ("#" and
	// escapes included), and by browsers in the decoded path ("%2E" is a
	// dot to them). Neither may land on the portal ("/./gatehouse/logout").
	// After http.Redirect's cleaning, the browser's path is what comes
	// before the first '#': "/#/../gatehouse#" is sent as "/gatehouse#".
	rawPath, _, _ := strings.Cut(target, "?")
	landing, _, _ := strings.Cut(path.Clean(rawPath), "#")
	decoded, err := url.PathUnescape(landing)
	if err != nil || underPortal(u.Path) || underPortal(landing) || underPortal(decoded) {
		return "/"
	}
	return target
}

// underPortal reports whether p, cleaned, is /gatehouse or below it,
// other than the console's pages (/gatehouse/console/… and
// /gatehouse/account), which send browsers here to sign in and are
// plain pages to come back to.
func underPortal(p string) bool {
	p = path.Clean(p)
	if p == "/gatehouse/account" || p == "/gatehouse/console" || strings.HasPrefix(p, "/gatehouse/console/") {
		return false
	}
	return p == "/gatehouse" || strings.HasPrefix(p, "/gatehouse/")
}
