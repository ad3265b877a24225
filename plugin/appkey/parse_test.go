package appkey

import (
	"encoding/base64"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/keystore/keystoretest"
)

func TestKeyFormatAndIndex(t *testing.T) {
	ks := keystoretest.New(t)
	value, index := newKey(ks)
	if len(value) != KeyLength || !strings.HasPrefix(value, KeyPrefix) {
		t.Fatalf("key %q: want %d bytes starting with %q", value, KeyLength, KeyPrefix)
	}
	got, ok := indexOf(ks, value)
	if !ok || got != index {
		t.Fatalf("indexOf(issued key) = %q, %v; want %q, true", got, ok, index)
	}
	if other, _ := newKey(ks); other == value {
		t.Fatal("two keys with the same value")
	}

	// Every single-character change is refused without a lookup: either
	// the format breaks or the tag no longer matches.
	for i := len(KeyPrefix); i < len(value); i++ {
		for _, c := range []byte("AZaz09-_") {
			if c == value[i] {
				continue
			}
			forged := value[:i] + string(c) + value[i+1:]
			if _, ok := indexOf(ks, forged); ok {
				t.Fatalf("forged key %q (position %d) passed the tag check", forged, i)
			}
		}
	}
	// A key of another keystore (another installation) is refused too.
	if _, ok := indexOf(keystoretest.New(t), value); ok {
		t.Fatal("key of another keystore passed the tag check")
	}
	for _, bad := range []string{"", KeyPrefix, value + "A", value[1:], strings.ToUpper(value[:5]) + value[5:],
		value[:len(value)-1] + "=", " " + value[1:], strings.Repeat("a", KeyLength)} {
		if _, ok := indexOf(ks, bad); ok {
			t.Errorf("indexOf(%q) accepted a malformed key", bad)
		}
	}
}

func FuzzParseKey(f *testing.F) {
	ks := keystoretest.New(f)
	value, _ := newKey(ks)
	for _, seed := range []string{value, "", KeyPrefix, value[:KeyLength-1] + "\xff", strings.Repeat("_", KeyLength),
		KeyPrefix + strings.Repeat("=", KeyLength-len(KeyPrefix))} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		random, tag, ok := parseKey(s)
		if !ok {
			if _, ok := indexOf(ks, s); ok {
				t.Fatalf("indexOf accepted %q that parseKey refused", s)
			}
			return
		}
		// Only the canonical encoding parses.
		body := append(random[:], tag[:]...)
		if canon := KeyPrefix + base64.RawURLEncoding.EncodeToString(body); canon != s {
			t.Fatalf("parseKey(%q) accepted a non-canonical form of %q", s, canon)
		}
		if _, ok := indexOf(ks, s); ok && s != value {
			t.Fatalf("fuzzed key %q passed the tag check", s)
		}
	})
}

func TestQueryKey(t *testing.T) {
	for _, tc := range []struct {
		query string
		value string
		count int
	}{
		{"", "", 0},
		{"a=1&b=2", "", 0},
		{"appKey=K", "K", 1},
		{"x=1&appkey=K&y=2", "K", 1},
		{"APPKEY=K", "K", 1},
		{"app%4Bey=K", "K", 1},
		{"x=1;appKey=K", "K", 1},
		{"appKey=A&appKey=B", "A", 2},
		{"appKey", "", 1},
		{"appKey=K%2D1", "K-1", 1},
		{"appKeys=K&myappKey=K", "", 0},
		{"appKey=%zz", "", 1},
		// Only ASCII letters fold: a Kelvin sign is no K, a long s no s.
		{"app%E2%84%AAey=K", "", 0},
		{"app\u212aey=K", "", 0},
	} {
		v, n := queryKey(tc.query)
		if v != tc.value || n != tc.count {
			t.Errorf("queryKey(%q) = %q, %d; want %q, %d", tc.query, v, n, tc.value, tc.count)
		}
	}
}

func TestStripParams(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{"", ""},
		{"a=1", "a=1"},
		{"appKey=K", ""},
		{"appKey=K&a=1", "a=1"},
		{"a=1&appKey=K", "a=1"},
		{"a=1&appKey=K&b=2", "a=1&b=2"},
		{"a=1;AppKey=K;b=2", "a=1;b=2"},
		{"a=1&x-gatehouse-session=true&appKey=K&x-thingworx-session=true&b=%20", "a=1&b=%20"},
		{"app%4bey=K&a=1", "a=1"},
		{"a=1&&appKey=K", "a=1"},
		// Spellings some framework reads as appKey or a session request:
		// IIS's %u, PHP's NUL cut and arrays, Rack's and qs's brackets.
		{"a=1&app%u004Bey=K", "a=1"},
		{"a=1&%5BappKey%5D=K", "a=1"},
		{"a=1&appKey%00x=K", "a=1"},
		{"a=1&appKey[0]=K", "a=1"},
		{"a=1&+appKey=K", "a=1"},
		{"a=1&x-gatehouse-session%00=true", "a=1"},
		// Names Java's equalsIgnoreCase takes for them: the Kelvin sign,
		// a dotless i, a long s.
		{"a=1&app%E2%84%AAey=K", "a=1"},
		{"a=1&x-th%C4%B1ngworx-session=true", "a=1"},
		{"a=1&x-gatehou%C5%BFe-session=true", "a=1"},
		{"a=1&%C3%A4ppKey=K", "a=1&%C3%A4ppKey=K"},
		// Full case mapping's "ss" for 'ß' (Python, JavaScript, PHP's mb_),
		// and a query split off with its '?' kept (Node's url.parse).
		{"a=1&x-thingworx-se%C3%9Fion=true", "a=1"},
		{"a=1&X-THINGWORX-SE%E1%BA%9EION=1", "a=1"},
		{"?appKey=K&a=1", "a=1"},
		{"a=1&appKeys=K&myappKey=K", "a=1&appKeys=K&myappKey=K"},
		// Mixed separators: an '&' after the removed parameter is kept,
		// so "x" stays a parameter of its own for '&'-only readers.
		{"filter=name;appKey=zz&x=1", "filter=name&x=1"},
		{"filter=name;appKey=zz;x=1", "filter=name;x=1"},
		{"a=1&appKey=zz;b=2", "a=1&b=2"},
	} {
		got, removed := stripParams(tc.in, strippedParams)
		if got != tc.out || removed != (got != tc.in) {
			t.Errorf("stripParams(%q) = %q, %v; want %q", tc.in, got, removed, tc.out)
		}
	}
}

// TestStripKeyFromURL: a Referer loses the key parameters of its query,
// in every spelling stripParams removes, and keeps everything else.
func TestStripKeyFromURL(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{"https://h/page", "https://h/page"},
		{"https://h/page?a=1", "https://h/page?a=1"},
		{"https://h/page?appKey=K", "https://h/page"},
		{"https://h/Thingworx/index.html?mashup=M&appKey=K&x-thingworx-session=true",
			"https://h/Thingworx/index.html?mashup=M&x-thingworx-session=true"},
		{"https://h/p?APPKEY=K&%5BappKey%5D=K2;app%4bey=K3&b=2#appKey=frag", "https://h/p?b=2#appKey=frag"},
		{"/relative?appKey=K#top", "/relative#top"},
		{"https://h/p#x?appKey=K", "https://h/p#x?appKey=K"},
		{"https://h/p?myappKey=K", "https://h/p?myappKey=K"},
	} {
		got, removed := stripKeyFromURL(tc.in)
		if got != tc.out || removed != (got != tc.in) {
			t.Errorf("stripKeyFromURL(%q) = %q, %v; want %q", tc.in, got, removed, tc.out)
		}
	}
}

// FuzzStripKeyFromURL: whatever a client sends as its Referer, what is
// forwarded holds no parameter read as the key, keeps the address before
// the query and the fragment as sent, and is stripped once for all.
func FuzzStripKeyFromURL(f *testing.F) {
	for _, seed := range []string{"https://h/p?a=1&appKey=K#f", "/p?%5BappKey%5D=K;b", "?appKey", "#?appKey=K", "https://h/p??appKey=K&&"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, u string) {
		got, removed := stripKeyFromURL(u)
		if !removed {
			if got != u {
				t.Fatalf("stripKeyFromURL(%q) changed it to %q without removing anything", u, got)
			}
			return
		}
		rest, fragment, _ := strings.Cut(u, "#")
		if !strings.HasSuffix(got, fragment) || !strings.HasPrefix(got, rest[:strings.IndexByte(rest, '?')]) {
			t.Fatalf("stripKeyFromURL(%q) = %q: the address or the fragment changed", u, got)
		}
		if again, more := stripKeyFromURL(got); more {
			t.Fatalf("stripKeyFromURL(%q) = %q, which still held a key parameter (%q)", u, got, again)
		}
	})
}

// TestSessionAsked: a session is asked when every session parameter and
// header says "true"; some saying "true" and others not is refused.
func TestSessionAsked(t *testing.T) {
	for _, tc := range []struct {
		query   string
		headers map[string][]string
		want    bool
		unclear bool
	}{
		{query: "x-gatehouse-session=true", want: true},
		{query: "a=1&X-Thingworx-Session=TRUE", want: true},
		{query: "x-gatehouse-session=false"},
		{query: "x-gatehouse-session"},
		{query: "x-gatehouse-session=yes"},
		{query: "x-gatehouse-sessions=true"},
		{query: "appKey=K;x-thingworx-session=true", want: true},
		{query: "x-gatehouse-session=%74rue&appKey=", want: true},
		{query: "x-gatehouse-session=true&x-gatehouse-session=true", want: true},
		{query: "x-gatehouse-session=true&x-gatehouse-session=false", unclear: true},
		{query: "x-gatehouse-session=false;x-thingworx-session=true", unclear: true},
		{headers: map[string][]string{"X-Thingworx-Session": {" True "}}, want: true},
		{headers: map[string][]string{"X-Thingworx-Session": {"true", "no"}}, unclear: true},
		{query: "x-gatehouse-session=true", headers: map[string][]string{"X-Thingworx-Session": {"false"}}, unclear: true},
	} {
		r := httptest.NewRequest(http.MethodGet, "/api?"+tc.query, nil)
		maps.Copy(r.Header, tc.headers)
		got, err := sessionAsked(r)
		if got != tc.want || (err != nil) != tc.unclear {
			t.Errorf("sessionAsked(%q, %v) = %v, %v; want %v, unclear %v", tc.query, tc.headers, got, err, tc.want, tc.unclear)
		}
	}
}

// FuzzQuery checks the hand-written query scanner against its promises:
// after stripping, no key or session parameter is left by any reading of
// the query (ours, or Go's url.ParseQuery as an upstream would use it),
// every other parameter survives, and stripping is idempotent.
func FuzzQuery(f *testing.F) {
	for _, seed := range []string{"", "appKey=K", "a=1&appKey=K;b=2", "app%4Bey=K", "%", "a=%zz&appKey=1",
		"x-gatehouse-session=true&&;", "AppKey=a&appkey=b", "appKey=K#frag", "+appKey=K"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, q string) {
		stripped, removed := stripParams(q, strippedParams)
		if !removed && stripped != q {
			t.Fatalf("stripParams(%q) changed the query without removing anything: %q", q, stripped)
		}
		if _, n := queryKey(stripped); n != 0 {
			t.Fatalf("stripParams(%q) = %q still holds an appKey parameter", q, stripped)
		}
		for i := 0; i < len(stripped); {
			var p string
			if p, i = nextParam(stripped, i); paramIs(p, sessionParams) {
				t.Fatalf("stripParams(%q) = %q still holds a session parameter", q, stripped)
			}
		}
		if again, removedAgain := stripParams(stripped, strippedParams); removedAgain || again != stripped {
			t.Fatalf("stripParams is not idempotent on %q: %q then %q", q, stripped, again)
		}
		values, _ := url.ParseQuery(stripped)
		for name := range values {
			if slices.ContainsFunc(strippedParams, func(p string) bool { return strings.EqualFold(p, name) }) {
				t.Fatalf("url.ParseQuery(%q) still finds %q", stripped, name)
			}
		}
		for i := 0; i < len(stripped); {
			var p string
			if p, i = nextParam(stripped, i); paramReadAs(p, strippedParams) {
				t.Fatalf("stripParams(%q) = %q still holds %q, which a framework reads as a key or session request", q, stripped, p)
			}
		}
		if _, n := queryKey(q); n > 0 && !removed {
			t.Fatalf("queryKey(%q) found a key that stripParams did not remove", q)
		}
	})
}

func TestParseAllowlist(t *testing.T) {
	canonical, prefixes, err := parseAllowlist([]string{" 192.0.2.7 ", "10.0.0.0/8", "2001:db8::1", "::ffff:198.51.100.9",
		"::ffff:172.16.0.0/108", "2001:DB8:1::/48", "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.7", "10.0.0.0/8", "2001:db8::1", "198.51.100.9", "172.16.0.0/12", "2001:db8:1::/48"}
	if !slices.Equal(canonical, want) || len(prefixes) != len(want) {
		t.Fatalf("canonical = %q, want %q", canonical, want)
	}
	// Host bits set: 10.1.2.3/3, meant as /32, would widen the list to
	// 0.0.0.0/3 without a word.
	for bad, network := range map[string]string{"10.1.2.3/8": "10.0.0.0/8", "10.1.2.3/3": "0.0.0.0/3", "127.0.0.1/0": "0.0.0.0/0",
		"2001:db8::1/32": "2001:db8::/32", "::ffff:10.1.2.3/104": "10.0.0.0/8"} {
		if _, _, err := parseAllowlist([]string{bad}); err == nil || !strings.Contains(err.Error(), "the network is "+network) {
			t.Errorf("parseAllowlist(%q): %v; want it refused, naming the network %s", bad, err, network)
		}
	}
	for _, bad := range []string{"", "example.com", "10.0.0.256", "10.0.0.0/33", "fe80::1%eth0", "2001:db8::/129", "10.0.0.0/", "/8", "1.2.3.4/8/9"} {
		if _, _, err := parseAllowlist([]string{bad}); err == nil {
			t.Errorf("parseAllowlist(%q) accepted a bad entry", bad)
		} else if !strings.Contains(err.Error(), "ip_allowlist") {
			t.Errorf("parseAllowlist(%q): error %q does not name the field", bad, err)
		}
	}
	if _, _, err := parseAllowlist(make([]string, maxAllowlist+1)); err == nil {
		t.Error("an oversized allowlist was accepted")
	}
}

// TestAllows goes through a cached entry's compact form, so it checks
// that the prefixes come back from their bytes as they went in.
func TestAllows(t *testing.T) {
	withAllowlist := func(list ...string) entry {
		t.Helper()
		b, err := compactEntry(indexPrefix+"i", (&record{Name: "k", Index: "i", IPAllowlist: list}).encode())
		if err != nil {
			t.Fatal(err)
		}
		return entry{b}
	}
	// A stored prefix with host bits set (none is written: creation and
	// updates refuse it) is read masked: the key still loads.
	if e := withAllowlist("10.1.2.3/8"); !allows(e, "10.200.0.1") || allows(e, "11.0.0.1") {
		t.Error("a stored 10.1.2.3/8 is not read as 10.0.0.0/8")
	}
	e := withAllowlist("192.0.2.7", "10.0.0.0/8", "2001:db8::/32", "::1", "::ffff:198.51.100.0/120")
	for ip, want := range map[string]bool{
		"192.0.2.7": true, "192.0.2.8": false, "10.255.0.1": true, "11.0.0.1": false,
		"::ffff:10.1.1.1": true, "::ffff:192.0.2.8": false, "2001:db8:5::1": true, "2001:db9::1": false,
		"::1": true, "fe80::1%eth0": false, "127.0.0.1": false, "": false, "garbage": false,
		"198.51.100.9": true, "198.51.101.9": false,
	} {
		if got := allows(e, ip); got != want {
			t.Errorf("allows(%q) = %v, want %v", ip, got, want)
		}
	}
	if e := withAllowlist(); !allows(e, "203.0.113.1") || !allows(e, "garbage") {
		t.Error("an empty allowlist must allow every address")
	}
	if !allows(withAllowlist("fe80::/10"), "fe80::1%eth0") {
		t.Error("a zoned client address must match its prefix without the zone")
	}
}

func FuzzAllowlist(f *testing.F) {
	for _, seed := range []string{"10.0.0.0/8", "::ffff:1.2.3.4", "fe80::1%x", "2001:db8::/129", " 1.2.3.4 ", "0.0.0.0/0"} {
		f.Add(seed, "10.1.2.3")
	}
	f.Fuzz(func(t *testing.T, item, ip string) {
		canonical, prefixes, err := parseAllowlist([]string{item})
		if err != nil {
			return
		}
		// The canonical form is a fixed point and means the same thing.
		again, prefixesAgain, err := parseAllowlist(canonical)
		if err != nil || !slices.Equal(again, canonical) || !slices.Equal(prefixes, prefixesAgain) {
			t.Fatalf("canonical form %q of %q does not parse back to itself: %q, %v", canonical, item, again, err)
		}
		// A cached entry gives the prefixes back exactly.
		b, err := compactEntry(indexPrefix+"i", (&record{Name: "k", Index: "i", IPAllowlist: canonical}).encode())
		if err != nil {
			t.Fatal(err)
		}
		e := entry{b}
		if e.allowLen() != len(prefixes) {
			t.Fatalf("%q: the cached entry holds %d prefixes; want %d", item, e.allowLen(), len(prefixes))
		}
		for i, p := range prefixes {
			if got := e.allowAt(i); got != p {
				t.Fatalf("%q: the cached entry gives prefix %v back as %v", item, p, got)
			}
		}
		// The client is allowed exactly when its address, unmapped and
		// without a zone, is in one of the prefixes (an address that
		// does not parse never is).
		want := false
		if addr, err := netip.ParseAddr(ip); err == nil {
			addr = addr.Unmap().WithZone("")
			for _, p := range prefixes {
				want = want || p.Contains(addr)
			}
		}
		if got := allows(e, ip); got != want {
			t.Fatalf("allowlist %q, client %q: allowed %v; want %v", canonical, ip, got, want)
		}
	})
}

// TestAuditHidesKeys: a key sent where none is read (a path, a Basic
// username, lower-cased) is cut from the audit record: the audit package
// knows this package's key format.
func TestAuditHidesKeys(t *testing.T) {
	value, _ := newKey(keystoretest.New(t))
	for _, s := range []string{value, strings.ToLower(value), "/x/" + value + "/y"} {
		if got := audit.HideCredentials(s); strings.Contains(got, value[len(KeyPrefix):len(KeyPrefix)+20]) ||
			strings.Contains(strings.ToLower(got), strings.ToLower(value[len(KeyPrefix):len(KeyPrefix)+20])) {
			t.Errorf("HideCredentials(%q) = %q: the key is still there", s, got)
		}
	}
}
