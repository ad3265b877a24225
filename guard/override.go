package guard

import (
	"net/http"
	"slices"
	"strings"

	"github.com/gatehouse-auth/gatehouse/identity"
)

// methodOverrides are the headers some frameworks take the request's
// method from instead of the request line, lower case with '-': they are
// matched in any case and with '_' for '-' (FastCGI and CGI turn both
// into the same variable).
var methodOverrides = [...]string{"x-http-method-override", "x-http-method", "x-method-override"}

// methodParam is the query parameter Rails, Laravel and Symfony read the
// same way. ASP.NET MVC reads X-HTTP-Method-Override from the query too
// (in any case): the header names count as query names as well.
const methodParam = "_method"

// Overrides calls allow with each method, other than its own, that r
// names in a method override header (X-HTTP-Method-Override,
// X-HTTP-Method, X-Method-Override) or query parameter (_method, or one
// named like those headers), and returns allow's first error: a role
// allowing GET must not reach an upstream's DELETE through one of them.
// (A _method in a form body is not seen: rules for routes whose upstream
// reads it should allow POST only with the methods its forms may name.)
// headers says whether r may hold a method override header, as
// Contract.Inbound, which looks through the headers once, reports it:
// with headers false only r's query is read. Without overrides it does
// not allocate.
func Overrides(r *http.Request, headers bool, allow func(method string) error) error {
	var checked []string // the methods allowed, across every header and the query
	if headers {
		for name, values := range r.Header {
			if !isHeaderNamed(name, methodOverrides[:]) {
				continue
			}
			if err := allowMethods(Method(r), values, allow, &checked); err != nil {
				return err
			}
		}
	}
	if r.URL.RawQuery != "" {
		return allowMethods(Method(r), queryMethods(r.URL.RawQuery), allow, &checked)
	}
	return nil
}

// CopyOverrides adds src's method override headers (those Overrides
// reads) to dst, sharing their values.
func CopyOverrides(dst, src http.Header) {
	for name, values := range src {
		if isHeaderNamed(name, methodOverrides[:]) {
			dst[name] = values
		}
	}
}

// MaxOverrideMethods is the most distinct methods a request may name in
// its method overrides (Overrides): a framework reads one, and HTTP and
// WebDAV together have fewer. More are refused with ErrTooManyOverrides
// before any is checked further: a megabyte of distinct names, each
// checked against those before, took 24 s of a core per request.
const MaxOverrideMethods = 16

// ErrTooManyOverrides refuses a request naming more than
// MaxOverrideMethods methods in its method overrides.
var ErrTooManyOverrides = identity.BadRequest("the request names more than 16 methods in method overrides (X-HTTP-Method-Override, _method); name one")

// allowMethods calls allow with each method named in values (comma
// separated) other than own and those of checked, and adds it to
// checked; more than MaxOverrideMethods in checked is
// ErrTooManyOverrides.
func allowMethods(own string, values []string, allow func(method string) error, checked *[]string) error {
	for _, v := range values {
		for m := range strings.SplitSeq(v, ",") {
			if m = strings.ToUpper(strings.TrimSpace(m)); m == "" || m == own || slices.Contains(*checked, m) {
				continue
			}
			if len(*checked) == MaxOverrideMethods {
				return ErrTooManyOverrides
			}
			if err := allow(m); err != nil {
				return err
			}
			*checked = append(*checked, m)
		}
	}
	return nil
}

// queryMethods returns the values of the method override parameters of a
// raw query, however a framework may read them: names and values decoded
// leniently (an escaped "_me%74hod" counts), pairs split on ";" as well
// as "&" (as Rack 2 and older Pythons split them), every name some
// framework reads as "_method" (readsAsMethodParam) counted, and the
// override headers' names (ASP.NET MVC's X-HTTP-Method-Override) in any
// case.
func queryMethods(raw string) []string {
	var out []string
	for pair := range strings.FieldsFuncSeq(raw, func(c rune) bool { return c == '&' || c == ';' }) {
		name, value, _ := strings.Cut(pair, "=")
		if n := decodeQueryPart(name); readsAsMethodParam(n) || isHeaderNamed(n, methodOverrides[:]) {
			out = append(out, decodeQueryPart(value))
		}
	}
	return out
}

// ParamBase returns a decoded query parameter name as the most lenient of
// common frameworks reads it: PHP cuts a name at a NUL, drops leading
// spaces and takes "name[…]" as the array "name"; Rack and Express's qs
// drop leading brackets ("[name]") and take the part before the next one;
// a query split off a URI with its '?' kept ("/p??name=", Node's legacy
// url.parse) starts with one more.
// It does not allocate.
func ParamBase(name string) string {
	if i := strings.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	name = strings.TrimLeft(name, " []?")
	if i := strings.IndexAny(name, "[]"); i >= 0 {
		name = name[:i]
	}
	return name
}

// DecodeParamName decodes a raw query parameter name leniently, as
// decodeQueryPart does ('+' a space, "%XX" and IIS's "%uXXXX"), and
// returns its ParamBase.
func DecodeParamName(raw string) string { return ParamBase(decodeQueryPart(raw)) }

// readsAsMethodParam reports whether some common framework reads the
// decoded query name as methodParam: its ParamBase, with PHP's '.' and ' '
// for '_' (so ".method", " _method" and "_method\x00x" are all "_method"
// to Laravel and Symfony). It does not allocate.
func readsAsMethodParam(name string) bool {
	name = ParamBase(name)
	if len(name) != len(methodParam) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c != methodParam[i] && !(methodParam[i] == '_' && (c == '.' || c == ' ')) {
			return false
		}
	}
	return true
}

// decodeQueryPart decodes a query name or value leniently ('+' is a
// space; see DecodeAgain), allocating only when it has to.
func decodeQueryPart(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	return DecodeAgain(strings.ReplaceAll(s, "+", " "))
}
