package guard

import (
	"path"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// CleanPath returns the canonical form of a request path for rule matching:
// rooted, with "." and ".." segments and duplicate slashes resolved, so
// "/api/../admin" is matched as "/admin". A trailing slash is kept.
func CleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	if !needsClean(p) {
		return p
	}
	cleaned := path.Clean(p)
	if strings.HasSuffix(p, "/") && cleaned != "/" {
		cleaned += "/"
	}
	return cleaned
}

// IsClean reports whether p is a request path that can be judged as sent:
// rooted and left as it is by CleanPath, and with nothing some upstreams
// read as a separator or a dot segment though path.Clean does not — a
// backslash (IIS, ASP.NET) or dots before a ";" (Tomcat, Jetty and Spring
// read "..;" as "..") or before a "?" or "#" (hasCutDotSegment). The same
// holds for the path an upstream that decodes it once more would read
// (DecodeAgain), so "%2e%2e" (sent as
// "%252e%252e") is no ".." there either; other escapes, such as Jenkins'
// "%2F" in branch names, pass.
//
// Dot segments in disguise are refused too, as some upstream reads them
// as dot segments: "..", "." padded with whitespace or a NUL ("..\x00",
// " ..", "..\t"), and, in a path with non-ASCII characters, what reads as
// a dot segment or a separator once NFKC-normalised (fullwidth "．．",
// "／") or with a slash look-alike ("∕", "⁄") taken for '/'. It does not
// allocate unless p holds a "%" or a non-ASCII character.
func IsClean(p string) bool {
	if !cleanReading(p) {
		return false
	}
	return strings.IndexByte(p, '%') < 0 || cleanReading(DecodeAgain(p))
}

// cleanReading is IsClean for one reading of the path (as sent, or
// decoded again): clean as it is, with no padded dot segment, and the
// same once its look-alikes are folded.
func cleanReading(p string) bool {
	padded, nonASCII := scanPath(p)
	if !cleanAsIs(p) || padded && hasPaddedDotSegment(p) {
		return false
	}
	if !nonASCII {
		return true
	}
	folded := foldLookalikes(p)
	return cleanAsIs(folded) && !hasPaddedDotSegment(folded)
}

// isDotPadding reports whether r is what some upstream trims from a path
// segment before reading it: every ASCII control and space (Java's
// String.trim takes everything up to U+0020), DEL, Unicode white space
// (Python's str.strip takes U+001C–U+001F, U+0085, U+2028 and U+2029
// too) and the byte order mark (JavaScript's String.prototype.trim).
func isDotPadding(r rune) bool { return r <= ' ' || r == 0x7f || r == 0xfeff || unicode.IsSpace(r) }

// hasPaddedDotSegment reports whether a segment of p is "." or ".." once
// trimmed of dot padding (isDotPadding), also when cut short first by a
// ";", "?" or "#" (hasCutDotSegment: " ..?x", "..\t;x"), without
// allocating.
func hasPaddedDotSegment(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if i := strings.IndexAny(seg, ";?#"); i >= 0 {
			seg = seg[:i]
		}
		if t := strings.TrimFunc(seg, isDotPadding); len(t) != len(seg) && (t == "." || t == "..") {
			return true
		}
	}
	return false
}

// scanPath reports, in one pass, whether p holds an ASCII byte of dot
// padding and whether it holds a non-ASCII byte (whose runes the caller
// checks apart).
func scanPath(p string) (padded, nonASCII bool) {
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c >= utf8.RuneSelf:
			nonASCII = true
		case c <= ' ' || c == 0x7f:
			padded = true
		}
	}
	return padded, nonASCII
}

// slashLookalikes maps characters that NFKC leaves alone but some
// upstreams (IIS's best-fit mapping, lenient routers) take for a slash or
// a backslash.
var slashLookalikes = strings.NewReplacer("\u2215", "/", "\u2044", "/", "\u29f8", "/", "\u29f9", "\\", "\ufe68", "\\")

// foldLookalikes returns p NFKC-normalised ("．" is '.', "／" is '/') with
// slashLookalikes replaced.
func foldLookalikes(p string) string {
	return slashLookalikes.Replace(norm.NFKC.String(p))
}

// DecodeAgain decodes p as the most lenient upstream would: every valid
// "%XX" escape, and IIS's "%uXXXX", while an invalid escape is kept as it
// is rather than failing the whole path (as PHP, Python and nginx do).
func DecodeAgain(p string) string {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '%' {
			if i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
				b.WriteByte(unhex(p[i+1])<<4 | unhex(p[i+2]))
				i += 2
				continue
			}
			if i+5 < len(p) && (p[i+1] == 'u' || p[i+1] == 'U') && isHex(p[i+2]) && isHex(p[i+3]) && isHex(p[i+4]) && isHex(p[i+5]) {
				r := rune(unhex(p[i+2]))<<12 | rune(unhex(p[i+3]))<<8 | rune(unhex(p[i+4]))<<4 | rune(unhex(p[i+5]))
				b.WriteRune(r)
				i += 5
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c | 0x20 - 'a' + 10
}

// cleanAsIs is IsClean for the path read as it is.
func cleanAsIs(p string) bool {
	return p != "" && CleanPath(p) == p && strings.IndexByte(p, '\\') < 0 && !hasCutDotSegment(p)
}

// hasCutDotSegment reports whether a segment of p starts with "." or ".."
// that some upstream reads as the whole segment: before a ";" (Tomcat,
// Jetty and Spring read "..;" as ".."), or before a "?" or "#" (sent as
// "%3F", "%23"), which an upstream that decodes the path and parses the
// result as a URL again reads as the start of the query or fragment.
func hasCutDotSegment(p string) bool {
	for i := strings.Index(p, "/."); i >= 0; {
		rest := p[i+2:]
		if rest != "" && rest[0] == '.' {
			rest = rest[1:]
		}
		if rest != "" && (rest[0] == ';' || rest[0] == '?' || rest[0] == '#') {
			return true
		}
		j := strings.Index(p[i+2:], "/.")
		if j < 0 {
			return false
		}
		i += 2 + j
	}
	return false
}

// needsClean is a fast scan for the segments path.Clean would change, so the
// common case does not allocate.
func needsClean(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] != '/' {
			continue
		}
		rest := p[i+1:]
		if strings.HasPrefix(rest, "/") || rest == "." || rest == ".." ||
			strings.HasPrefix(rest, "./") || strings.HasPrefix(rest, "../") {
			return true
		}
	}
	return false
}
