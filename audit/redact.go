package audit

import (
	"strings"
	"unicode/utf8"
)

// What an event may hold: its text fields clipped, and the credentials a
// client put where none is read hidden, before it is stored or logged.

// maxField bounds each text field of an event: a client controls the
// path and the username it claims, and a refusal must not cost a
// megabyte of store, log and (during an outage) memory.
const maxField = 1024

// clipTo cuts every text field to limit bytes, on a UTF-8 boundary,
// marking the cut with "…".
func (e *Event) clipTo(limit int) {
	for _, f := range []*string{&e.Kind, &e.Username, &e.Credential, &e.RemoteIP, &e.Method, &e.Path, &e.Host, &e.Outcome, &e.Reason, &e.Actor} {
		if len(*f) > limit {
			cut := limit - len("…")
			for back := 0; back < utf8.UTFMax-1 && !utf8.RuneStart((*f)[cut]); back++ {
				cut-- // never split a valid rune; invalid bytes may be cut anywhere
			}
			*f = (*f)[:cut] + "…"
		}
	}
}

// hideParameterValues returns path with the value of each of its
// parameters (";name=value" in a segment, RFC 3986 §3.3, and, in a path
// decoded from %3F, "?name=value&…") replaced by "REDACTED": a client
// that puts its credential there (";appKey=…", ";jsessionid=…", a whole
// URL percent-encoded) is refused as holding none, and its key must not
// stay in the audit log in clear. A parameter without "=" is kept.
func hideParameterValues(path string) string {
	if !strings.ContainsAny(path, ";?") {
		return path
	}
	var b strings.Builder
	b.Grow(len(path))
	for {
		semi := strings.IndexAny(path, ";?&")
		if semi < 0 {
			b.WriteString(path)
			return b.String()
		}
		b.WriteString(path[:semi+1])
		path = path[semi+1:]
		end := strings.IndexAny(path, "/;?&")
		if end < 0 {
			end = len(path)
		}
		if eq := strings.IndexByte(path[:end], '='); eq >= 0 {
			b.WriteString(path[:eq+1])
			b.WriteString("REDACTED")
		} else {
			b.WriteString(path[:end])
		}
		path = path[end:]
	}
}

// credentialPrefixes begin the credentials Gatehouse issues: application
// keys (appkey.KeyPrefix) and connector access and refresh tokens; their
// packages' tests check that HideCredentials knows them.
var credentialPrefixes = []string{"ghak_", "gct_", "gcr_"}

// HideCredentials returns s with every run that looks like a credential
// Gatehouse issues (one of its prefixes, in any ASCII case, then at least
// 20 base64url characters) cut to its prefix and "REDACTED". A client that
// sends its key where none is read (a path, a Basic username, which the
// audit log records lower-cased) is refused as holding none, and the key
// must not stay in the log. One pass over s, comparing bytes in place (a
// case-folded copy may differ in length, and its offsets would not fit s).
func HideCredentials(s string) string {
	if !strings.Contains(s, "_") { // every prefix has one
		return s
	}
	var b strings.Builder
	copied := 0 // s[:copied] is in b
	for i := 0; i < len(s); {
		p := credentialPrefixAt(s, i)
		if p == 0 {
			i++
			continue
		}
		end := i + p
		for end < len(s) && isBase64URL(s[end]) {
			end++
		}
		if end-(i+p) < 20 {
			i += p
			continue
		}
		if b.Len() == 0 {
			b.Grow(len(s))
		}
		b.WriteString(s[copied : i+p])
		b.WriteString("REDACTED")
		copied, i = end, end
	}
	if copied == 0 {
		return s
	}
	b.WriteString(s[copied:])
	return b.String()
}

// credentialPrefixAt returns the length of the credential prefix s has at
// i, in any ASCII case, or 0.
func credentialPrefixAt(s string, i int) int {
	for _, p := range credentialPrefixes {
		if len(s)-i >= len(p) && asciiEqualFold(s[i:i+len(p)], p) {
			return len(p)
		}
	}
	return 0
}

// asciiEqualFold reports whether a equals lower (lower-case ASCII) in any
// ASCII case; a non-ASCII byte matches nothing.
func asciiEqualFold(a, lower string) bool {
	for i := range len(lower) {
		c := a[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// isBase64URL reports whether c is a base64url character or the '_'
// between a key's parts.
func isBase64URL(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
