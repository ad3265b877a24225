package console

import (
	"fmt"
	"mime"
	"net/url"
	"strings"
	"unicode/utf8"
)

// maxFormBytes caps a console form body (a pasted CSR fits easily).
const maxFormBytes = 64 << 10

// maxFieldBytes caps each field of a console form.
const maxFieldBytes = 16 << 10

// multiValued are the fields that may appear more than once (checkboxes).
var multiValued = map[string]bool{"roles": true}

// form is a submitted console form.
type form struct{ values url.Values }

// get returns the field's value, "" when absent.
func (f form) get(name string) string { return f.values.Get(name) }

// all returns every value of a multi-valued field.
func (f form) all(name string) []string { return f.values[name] }

// parseForm decodes an application/x-www-form-urlencoded body: each field
// at most once (but those of multiValued), valid UTF-8 without NUL, within
// maxFieldBytes.
func parseForm(contentType string, body []byte) (form, error) {
	if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != "application/x-www-form-urlencoded" {
		return form{}, fmt.Errorf("the form must be sent as application/x-www-form-urlencoded")
	}
	if len(body) > maxFormBytes {
		return form{}, fmt.Errorf("the form exceeds %d bytes", maxFormBytes)
	}
	values, err := url.ParseQuery(string(body))
	if err != nil {
		return form{}, fmt.Errorf("the form is malformed")
	}
	for name, vs := range values {
		if !utf8.ValidString(name) || strings.ContainsRune(name, 0) || len(name) > 64 {
			return form{}, fmt.Errorf("a field name is not valid text")
		}
		if len(vs) > 1 && !multiValued[name] {
			return form{}, fmt.Errorf("the field %q appears more than once", name)
		}
		for _, v := range vs {
			if len(v) > maxFieldBytes {
				return form{}, fmt.Errorf("the field %q is too long", name)
			}
			if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
				return form{}, fmt.Errorf("the field %q is not valid text", name)
			}
		}
	}
	return form{values: values}, nil
}
