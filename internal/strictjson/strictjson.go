// Package strictjson decodes JSON request bodies so that no other parser
// can read a different request from the same bytes. encoding/json matches
// member names case-insensitively and lets the last of duplicate members
// win: {"username":"bob","USERNAME":"carol"} would name carol. Decode
// first checks every object at every nesting level: a member may appear
// only once, and its name must be the exact name of a field of the Go type
// it decodes into.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// Unknown says what Decode does with a member that names no field.
type Unknown int

const (
	// RefuseUnknown refuses the body: Decode returns a *KeyError naming
	// the member (and the field when it differs only in case).
	RefuseUnknown Unknown = iota
	// IgnoreUnknown skips the member, unless its name differs from a
	// field's only in case (encoding/json would decode it into that field).
	IgnoreUnknown
	// IgnoreUnknownAnyCase skips the member, and takes one whose name
	// differs from a field's only in case as that field (as .NET's JSON
	// binding does); two members naming one field, in any case, are
	// duplicates.
	IgnoreUnknownAnyCase
)

// KeyError is a member name Decode refuses: a duplicate, or a name that
// is no field's.
type KeyError struct {
	// Path names the member: its name, below the top level prefixed with
	// the names (and array indexes) of the members holding it.
	Path string
	// Duplicate is true when the member appears more than once in its
	// object, false when its name is unknown.
	Duplicate bool
	// Field is, when the unknown name differs from a field's only in
	// case, that field's exact name.
	Field string
}

// Error implements error.
func (e *KeyError) Error() string {
	switch {
	case e.Duplicate:
		return fmt.Sprintf("field %q appears more than once", e.Path)
	case e.Field != "":
		return fmt.Sprintf("unknown field %q; field names are case-sensitive: %q", e.Path, e.Field)
	default:
		return fmt.Sprintf("unknown field %q", e.Path)
	}
}

// ErrTrailing is returned when something follows the body's JSON value.
var ErrTrailing = errors.New("the body holds more than one JSON value")

// MaxDepth bounds how deeply a body's arrays and objects may nest. Request
// bodies need a few levels; the bound keeps a body of brackets from making
// the check (a frame and a member path per level) cost memory and time
// that grow with the square of its depth.
const MaxDepth = 32

// ErrTooDeep is returned for a body nested more than MaxDepth levels.
var ErrTooDeep = fmt.Errorf("the body nests arrays and objects more than %d levels deep", MaxDepth)

// Decode decodes body, one JSON value, into v (a pointer) after checking
// its member names against v's type. Besides *KeyError and ErrTrailing it
// returns io.EOF for a body without any value and encoding/json's errors
// (*json.SyntaxError, io.ErrUnexpectedEOF, *json.UnmarshalTypeError).
func Decode(body []byte, v any, unknown Unknown) error {
	if len(bytes.Trim(body, " \t\r\n")) == 0 {
		return io.EOF
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := check(dec, reflect.TypeOf(v), "", unknown, 0); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return ErrTrailing
	}
	return json.Unmarshal(body, v)
}

var unmarshaler = reflect.TypeFor[json.Unmarshaler]()

// check reads the next value from dec, checking the member names of its
// objects against t (nil: any name, as for an interface); depth is the
// number of arrays and objects around it.
func check(dec *json.Decoder, t reflect.Type, path string, unknown Unknown, depth int) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && reflect.PointerTo(t).Implements(unmarshaler) {
		t = nil // decodes itself: names are its business
	}
	tok, err := token(dec)
	if err != nil {
		return err
	}
	if (tok == json.Delim('{') || tok == json.Delim('[')) && depth == MaxDepth {
		return ErrTooDeep
	}
	switch tok {
	case json.Delim('{'):
		return checkObject(dec, t, path, unknown, depth+1)
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := check(dec, elem, path+"["+strconv.Itoa(i)+"]", unknown, depth+1); err != nil {
				return err
			}
		}
		_, err := token(dec) // ']'
		return err
	}
	return nil
}

func checkObject(dec *json.Decoder, t reflect.Type, path string, unknown Unknown, depth int) error {
	var fields map[string]reflect.Type // nil: any name
	var elem reflect.Type
	switch {
	case t == nil:
	case t.Kind() == reflect.Struct:
		fields = map[string]reflect.Type{}
		addFields(fields, t)
	case t.Kind() == reflect.Map:
		elem = t.Elem()
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := token(dec)
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		member := name
		if path != "" {
			member = path + "." + name
		}
		key, mt := name, elem
		if fields != nil {
			var known bool
			if mt, known = fields[name]; !known {
				exact := caseVariant(fields, name)
				switch {
				case exact != "" && unknown == IgnoreUnknownAnyCase:
					key, mt = exact, fields[exact]
				case unknown == RefuseUnknown || exact != "":
					return &KeyError{Path: member, Field: exact}
				}
			}
		}
		if seen[key] {
			return &KeyError{Path: member, Duplicate: true}
		}
		seen[key] = true
		if err := check(dec, mt, member, unknown, depth); err != nil {
			return err
		}
	}
	_, err := token(dec) // '}'
	return err
}

// token is dec.Token for a body known to hold a value: its end is an
// unexpected one.
func token(dec *json.Decoder) (json.Token, error) {
	tok, err := dec.Token()
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return tok, err
}

// addFields adds the JSON names of t's fields, as encoding/json sees
// them, with their types; fields of embedded structs without a name of
// their own are promoted.
func addFields(fields map[string]reflect.Type, t reflect.Type) {
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && name == "" {
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				addFields(fields, ft)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = ft
	}
}

// caseVariant returns the field name that name matches only when case is
// ignored, or "".
func caseVariant(fields map[string]reflect.Type, name string) string {
	for f := range fields {
		if strings.EqualFold(f, name) {
			return f
		}
	}
	return ""
}
