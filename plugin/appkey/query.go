package appkey

import (
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse-auth/gatehouse/guard"
)

// The query string is scanned by hand: the hot path must not build a
// url.Values map, and the scan must agree with every upstream on what a
// parameter is. Both '&' and ';' separate parameters (some upstream
// frameworks still split on ';'), and names are compared after
// percent-decoding and case-insensitively, so "appkey", "AppKey" and
// "app%4Bey" all name the key parameter and are all removed before the
// request is forwarded.

// queryParam is the application key's query parameter.
const queryParam = "appKey"

// sessionParams ask for a session when "true" (docs/clients.md, "Application keys").
var sessionParams = []string{"x-gatehouse-session", "x-thingworx-session"}

// strippedParams are removed from every request an application key
// authenticated.
var strippedParams = append([]string{queryParam}, sessionParams...)

// nextParam returns the parameter starting at rawQuery[i:] and where the
// next one starts (len(rawQuery) at the end).
func nextParam(rawQuery string, i int) (param string, next int) {
	end := strings.IndexAny(rawQuery[i:], "&;")
	if end < 0 {
		return rawQuery[i:], len(rawQuery)
	}
	return rawQuery[i : i+end], i + end + 1
}

// paramIs reports whether the parameter's name, percent-decoded, equals one
// of names (ASCII) in any ASCII case. Only ASCII letters fold: Unicode
// folding would take "app\u212aey" (a Kelvin sign) for appKey, a spelling
// no log filter expects.
func paramIs(param string, names []string) bool {
	name, _, _ := strings.Cut(param, "=")
	if strings.ContainsAny(name, "%+") {
		if decoded, err := url.QueryUnescape(name); err == nil {
			name = decoded
		}
	}
	for _, n := range names {
		if asciiEqualFold(name, n) {
			return true
		}
	}
	return false
}

// asciiEqualFold reports whether a and b, the one of them ASCII, are
// equal with ASCII letters compared in any case. Unicode folding takes a
// letter for an ASCII one only from a rune of two bytes or more, so the
// same length in bytes leaves EqualFold to fold ASCII letters alone.
func asciiEqualFold(a, b string) bool { return len(a) == len(b) && strings.EqualFold(a, b) }

// paramReadAs reports whether some common framework reads the parameter's
// name as one of names (ASCII), in any ASCII case: leniently decoded and
// cut as PHP, Rack or qs cut it (guard.DecodeParamName), so "[appKey]",
// "appKey%00x" and IIS's "app%u004Bey" count. What is stripped is every
// spelling an upstream might take for a key or a session request, though
// only paramIs's spellings are read as one.
func paramReadAs(param string, names []string) bool {
	name, _, _ := strings.Cut(param, "=")
	if strings.ContainsAny(name, "%+[] ?\x00") {
		name = guard.DecodeParamName(name)
	}
	nonASCII := !isASCII(name)
	if nonASCII {
		name = sharpS.Replace(name)
	}
	for _, n := range names {
		if asciiEqualFold(name, n) || (nonASCII && javaEqualsIgnoreCase(name, n)) {
			return true
		}
	}
	return false
}

// sharpS spells 'ß' and 'ẞ' as the "ss" that full case mapping makes of
// them (Python's upper and casefold, JavaScript's toUpperCase, PHP's
// mb_strtoupper, Java's toUpperCase): "x-thingworx-seßion" is the session
// request to them.
var sharpS = strings.NewReplacer("ß", "ss", "ẞ", "ss")

// javaEqualsIgnoreCase is Java's String.equalsIgnoreCase (the comparison
// behind Spring's and servlet containers' case-insensitive parameter
// maps): runes equal as they are, in upper case, or in the lower case of
// their upper case, so the Kelvin sign reads as 'k', a dotless 'ı' as 'i'
// and a long 'ſ' as 's'.
func javaEqualsIgnoreCase(a, b string) bool {
	ra, rb := []rune(a), []rune(b)
	if len(ra) != len(rb) {
		return false
	}
	for i, x := range ra {
		y := rb[i]
		ux, uy := unicode.ToUpper(x), unicode.ToUpper(y)
		if x != y && ux != uy && unicode.ToLower(ux) != unicode.ToLower(uy) {
			return false
		}
	}
	return true
}

// isASCII reports whether s holds ASCII bytes only.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// paramValue is the percent-decoded value of a parameter ("" when it
// cannot be decoded).
func paramValue(param string) string {
	_, v, _ := strings.Cut(param, "=")
	if strings.ContainsAny(v, "%+") {
		decoded, err := url.QueryUnescape(v)
		if err != nil {
			return ""
		}
		return decoded
	}
	return v
}

// queryKey returns the value of the first appKey parameter of rawQuery and
// how many appKey parameters it holds.
func queryKey(rawQuery string) (value string, count int) {
	for i := 0; i < len(rawQuery); {
		var p string
		p, i = nextParam(rawQuery, i)
		if paramIs(p, strippedParams[:1]) {
			if count == 0 {
				value = paramValue(p)
			}
			count++
		}
	}
	return value, count
}

// stripParams returns rawQuery without the parameters some framework reads
// as one of names (paramReadAs),
// keeping every other parameter and separator byte for byte, and whether
// it removed anything. It allocates only when it removes something.
func stripParams(rawQuery string, names []string) (string, bool) {
	var kept []byte
	removed := false
	for i := 0; i < len(rawQuery); {
		start := i
		var p string
		p, i = nextParam(rawQuery, i)
		switch {
		case paramReadAs(p, names):
			if !removed {
				kept = append(make([]byte, 0, len(rawQuery)), rawQuery[:start]...)
				removed = true
			}
			// The parameter goes with the separator after it; where that
			// was '&' and the one kept before it ';', the kept one becomes
			// '&', so that an upstream splitting on '&' alone does not
			// read the next parameter into the previous one's value.
			if n := len(kept); n > 0 && kept[n-1] == ';' && i <= len(rawQuery) && rawQuery[i-1] == '&' {
				kept[n-1] = '&'
			}
		case removed:
			kept = append(kept, rawQuery[start:i]...)
		}
	}
	if !removed {
		return rawQuery, false
	}
	return strings.TrimRight(string(kept), "&;"), true
}

// stripKeyFromURL returns the absolute or relative URL u (a Referer)
// without the parameters of its query some framework reads as appKey
// (stripParams), its fragment kept, and whether it removed any.
func stripKeyFromURL(u string) (string, bool) {
	rest, fragment := u, ""
	if h := strings.IndexByte(u, '#'); h >= 0 {
		rest, fragment = u[:h], u[h:]
	}
	q := strings.IndexByte(rest, '?')
	if q < 0 {
		return u, false
	}
	kept, removed := stripParams(rest[q+1:], strippedParams[:1])
	if !removed {
		return u, false
	}
	if kept != "" {
		kept = "?" + kept
	}
	return rest[:q] + kept + fragment, true
}
