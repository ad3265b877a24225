package appkey

import (
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/internal/reccodec"
)

// Store layout. A presented key is found with one read of its index
// record; the name pointer serves the admin API.
//
//	appkey/<name>          the index of the key's current value
//	appkeyidx/<index>      the key's record (JSON); after a rotation, the
//	                       old index holds a stub naming its successor
//	appkeyused/<name>      when the key was last used (RFC 3339), written
//	                       off the request path
//	appkeysess/<name>/<id> a session opened with the key: the index it
//	                       was opened under, checked on each of its
//	                       requests, and its token, sealed, so revoking
//	                       the key can end it (see binding)
//	appkeyuser/<user ID>/<name>
//	                       a key of the account (empty): what one user's
//	                       keys are listed from, never a whole scan; an
//	                       entry left over from a key since deleted or
//	                       whose name another account's key took is
//	                       skipped (the key's record says whose it is)
//	appkeyuser-indexed     present once every key written before
//	                       appkeyuser/ existed has its entry (indexUserKeys)
const (
	namePrefix     = "appkey/"
	indexPrefix    = "appkeyidx/"
	usedPrefix     = "appkeyused/"
	sessionPrefix  = "appkeysess/"
	userKeysPrefix = "appkeyuser/"
	userKeysDone   = "appkeyuser-indexed"
)

// userKeyKey is the key of name's entry among the keys of the account
// userID.
func userKeyKey(userID, name string) string { return userKeysPrefix + userID + "/" + name }

// Metadata are an application key's descriptive fields (ThingWorx's).
type Metadata struct {
	// Description says what the key is for.
	Description string `json:"description"`
	// Project groups keys.
	Project string `json:"project"`
	// Tags are free-form labels.
	Tags []string `json:"tags"`
	// ClientName names the client or device using the key.
	ClientName string `json:"client_name"`
	// Documentation is free text or a link about the client.
	Documentation string `json:"documentation"`
	// HomeURL is the client's home page: an absolute http or https URL, or
	// the name of a ThingWorx mashup.
	HomeURL string `json:"home_url"`
}

const (
	maxShortText = 256
	maxLongText  = 4096
	maxTags      = 32
	maxTagLength = 64
)

// normalize validates m in place; tags are de-duplicated and never nil.
func (m *Metadata) normalize() error {
	checks := []struct {
		field, value string
		limit        int
		multiline    bool
	}{
		{"description", m.Description, maxLongText, true},
		{"documentation", m.Documentation, maxLongText, true},
		{"project", m.Project, maxShortText, false},
		{"client_name", m.ClientName, maxShortText, false},
		{"home_url", m.HomeURL, maxShortText * 8, false},
	}
	for _, c := range checks {
		if err := checkText(c.field, c.value, c.limit, c.multiline); err != nil {
			return err
		}
	}
	if m.HomeURL != "" && strings.ContainsAny(m.HomeURL, ":/") {
		u, err := url.Parse(m.HomeURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return failure.Invalid("home_url %q must be an absolute http:// or https:// URL or a mashup name", m.HomeURL)
		}
	} else if m.HomeURL != "" {
		if err := account.ValidateName("home mashup", m.HomeURL); err != nil {
			return failure.Invalid("home_url %q must be an absolute http:// or https:// URL or a mashup name: %s", m.HomeURL, failure.Message(err))
		}
	}
	if len(m.Tags) > maxTags {
		return failure.Invalid("tags has %d entries; the limit is %d", len(m.Tags), maxTags)
	}
	tags := make([]string, 0, len(m.Tags))
	for _, t := range m.Tags {
		if t == "" {
			return failure.Invalid("tags must not hold an empty string")
		}
		if err := checkText("tag", t, maxTagLength, false); err != nil {
			return err
		}
		if !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	m.Tags = tags
	return nil
}

func checkText(field, value string, limit int, multiline bool) error {
	if n := utf8.RuneCountInString(value); n > limit {
		return failure.Invalid("%s is %d characters long; the limit is %d", field, n, limit)
	}
	for _, r := range value {
		if r == utf8.RuneError || (unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\r' || r == '\t'))) {
			return failure.Invalid("%s must not hold control characters", field)
		}
	}
	return nil
}

// maxLifetime bounds how far in the future a key may expire.
const maxLifetime = 100 * 365 * 24 * time.Hour

func checkExpiry(t, now time.Time) (time.Time, error) {
	if !t.After(now) {
		return time.Time{}, failure.Invalid("expires_at %s is not in the future (to revoke a key, DELETE it)", t.Format(time.RFC3339))
	}
	if t.Sub(now) > maxLifetime {
		return time.Time{}, failure.Invalid("expires_at %s is more than 100 years away", t.Format(time.RFC3339))
	}
	return reccodec.Stamp(t), nil
}

// record is what the store keeps under appkeyidx/<index> (in the binary
// form of codec.go): either a key (Successor empty) or the stub a rotation
// leaves under the old index.
type record struct {
	// Name is the key's unique name.
	Name string
	// Index is the HMAC index the record is stored under.
	Index string
	// Username is the canonical name of the user the key runs as, and
	// UserID that account's ID when the key was created.
	Username, UserID string
	// SealedKey is the key value sealed with the keystore (context
	// "appkey/<name>"); never stored in clear.
	SealedKey   []byte
	ExpiresAt   time.Time
	IPAllowlist []string
	Metadata
	CreatedAt, LastModifiedAt time.Time
	// PrevIndex is the index of the value a rotation replaced; its stub
	// is honoured only while it names this record as successor and this
	// record names it here. PrevValidUntil is the end of that value's
	// grace period.
	PrevIndex      string
	PrevValidUntil time.Time
	// Successor, on a stub, is the index of the key's current value, and
	// GraceUntil the end of the old value's grace period.
	Successor  string
	GraceUntil time.Time
}

func (r *record) isStub() bool { return r.Successor != "" }

// entry is a record as the data plane caches it: holding only what a
// request needs, not the record's metadata or sealed key, in a compact
// form of bytes (compactEntry) that the cache keeps and hands out on
// every hit (cache.LoadJoinedCompact). The cache keeps the bytes in large
// arrays outside the Go heap (internal/bytecache): a cached key is no
// object of its own, however many keys the cache holds. A hit hands out a
// copy of them, and an entry is a view of that copy, read in place (its
// strings point into it: nothing writes it once made).
//
// The layout, little-endian:
//
//	[0:8)   expiresAt, Unix nanoseconds (0: the zero time)
//	[8:16)  graceUntil, likewise
//	[16:26) the ends of the five strings in the text, uint16 each
//	[26:28) the number of allowlist prefixes, uint16
//	[28:…)  the text: name, username, user ID, and the indexes of the
//	        value a rotation replaced and, on a stub, of the successor
//	then    the prefixes, allowEntrySize bytes each: the address as 16
//	        bytes (IPv4 as IPv4-mapped), its bit count, 1 for IPv4
//
// Not the index the entry is filed under: compactEntry checks it once,
// against the key the record was read under, and the cache key holds it.
type entry struct {
	b []byte
}

// The strings of an entry's text, in order.
const (
	entryName = iota
	entryUsername
	entryUserID
	entryPrevIndex
	entrySuccessor
	numEntryStrings
)

// The layout's fixed part.
const (
	entryEndsAt    = 16
	entryAllowAt   = entryEndsAt + 2*numEntryStrings
	entryTextAt    = entryAllowAt + 2
	allowEntrySize = 18
)

// end is where the i-th string of the text ends (from the text's start).
func (e entry) end(i int) int { return int(binary.LittleEndian.Uint16(e.b[entryEndsAt+2*i:])) }

// str is the i-th string of the entry's text, pointing into its bytes.
func (e entry) str(i int) string {
	start := 0
	if i > 0 {
		start = e.end(i - 1)
	}
	n := e.end(i) - start
	if n == 0 {
		return ""
	}
	return unsafe.String(&e.b[entryTextAt+start], n) //nolint:gosec // G103: cached entry bytes are never written once made
}

func (e entry) name() string      { return e.str(entryName) }
func (e entry) username() string  { return e.str(entryUsername) }
func (e entry) userID() string    { return e.str(entryUserID) }
func (e entry) prevIndex() string { return e.str(entryPrevIndex) }
func (e entry) successor() string { return e.str(entrySuccessor) }

// expires is when the key stops working.
func (e entry) expires() time.Time { return fromUnixNano(int64(binary.LittleEndian.Uint64(e.b[0:]))) } //nolint:gosec // G115: written from an int64

// graceEnds is, for a stub, when the replaced value stops working.
func (e entry) graceEnds() time.Time { return fromUnixNano(int64(binary.LittleEndian.Uint64(e.b[8:]))) } //nolint:gosec // G115: written from an int64

func (e entry) isStub() bool { return e.end(entrySuccessor) != e.end(entryPrevIndex) }

// allowLen is the number of allowlist prefixes.
func (e entry) allowLen() int { return int(binary.LittleEndian.Uint16(e.b[entryAllowAt:])) }

// allowAt is the i-th allowlist prefix.
func (e entry) allowAt(i int) netip.Prefix {
	at := entryTextAt + e.end(numEntryStrings-1) + i*allowEntrySize
	addr := netip.AddrFrom16([16]byte(e.b[at : at+16]))
	if e.b[at+17] == 1 {
		addr = addr.Unmap()
	}
	return netip.PrefixFrom(addr, int(e.b[at+16]))
}

// unixNano is t in Unix nanoseconds, 0 for the zero time. A time an
// int64 of nanoseconds cannot hold (after April 2262, before 1678) is the
// nearest one it can, not one UnixNano wrapped around: a key expiring in
// 2300 then works until 2262 rather than reading as expired in 1716.
func unixNano(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.After(maxUnixNano):
		return math.MaxInt64
	case t.Before(minUnixNano):
		return math.MinInt64
	}
	return t.UnixNano()
}

// maxUnixNano and minUnixNano are the last and first times Unix
// nanoseconds in an int64 hold.
var maxUnixNano, minUnixNano = time.Unix(0, math.MaxInt64), time.Unix(0, math.MinInt64)

// fromUnixNano is the time of unixNano's n.
func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// compactEntry is the entry of the record read under key (indexPrefix +
// its index), in its compact form, refusing a record whose own index is
// not the key's: a record filed under the wrong index is never trusted.
func compactEntry(key string, raw []byte) ([]byte, error) {
	rec, err := decodeRecord(raw)
	if err != nil {
		return nil, err
	}
	index, _ := strings.CutPrefix(key, indexPrefix)
	if subtle.ConstantTimeCompare([]byte(rec.Index), []byte(index)) != 1 {
		return nil, errMisfiled
	}
	allow, err := storedAllowlist(rec.IPAllowlist)
	if err != nil {
		return nil, fmt.Errorf("application key %q has a corrupt allowlist: %w", rec.Name, err)
	}
	strs := [numEntryStrings]string{entryName: rec.Name, entryUsername: rec.Username,
		entryUserID: rec.UserID, entryPrevIndex: rec.PrevIndex, entrySuccessor: rec.Successor}
	text := 0
	for _, s := range strs {
		text += len(s)
	}
	if text > math.MaxUint16 || len(allow) > math.MaxUint16 {
		return nil, errCorrupt // names and indexes are far shorter, allowlists far shorter
	}
	b := make([]byte, 0, entryTextAt+text+len(allow)*allowEntrySize)          // one allocation, not the record's
	b = binary.LittleEndian.AppendUint64(b, uint64(unixNano(rec.ExpiresAt)))  //nolint:gosec // G115: read back as an int64
	b = binary.LittleEndian.AppendUint64(b, uint64(unixNano(rec.GraceUntil))) //nolint:gosec // G115: read back as an int64
	n := 0
	for _, s := range strs {
		n += len(s)
		b = binary.LittleEndian.AppendUint16(b, uint16(n)) //nolint:gosec // G115: n <= text, checked above
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(allow))) //nolint:gosec // G115: checked above
	for _, s := range strs {
		b = append(b, s...)
	}
	for _, p := range allow {
		is4 := byte(0)
		if p.Addr().Is4() {
			is4 = 1
		}
		a16 := p.Addr().As16()
		b = append(append(b, a16[:]...), byte(p.Bits()), is4) //nolint:gosec // G115: a prefix has at most 128 bits
	}
	return b, nil
}

// View is an application key as the admin API shows it: never the value.
type View struct {
	// Name is the key's unique name (X-Gatehouse-App-Key).
	Name string `json:"name"`
	// Username is the user the key runs as.
	Username string `json:"username"`
	// ExpiresAt is when the key stops working; Expired says whether it has.
	ExpiresAt time.Time `json:"expires_at"`
	// Expired reports whether ExpiresAt had passed when the view was made.
	Expired bool `json:"expired"`
	// IPAllowlist holds the client addresses and prefixes allowed to use
	// the key; empty allows any.
	IPAllowlist []string `json:"ip_allowlist"`
	Metadata
	// CreatedAt and LastModifiedAt are when the key was created and last
	// changed (rotation included).
	CreatedAt time.Time `json:"created_at"`
	// LastModifiedAt is when the key was last changed, rotation included.
	LastModifiedAt time.Time `json:"last_modified_at"`
	// LastUsedAt is the first use within the hour-long window of the
	// key's latest use (recorded at most once an hour, so less than an
	// hour behind that use); null when never used.
	LastUsedAt *time.Time `json:"last_used_at"`
	// PreviousKeyValidUntil is the end of a rotation's grace period while
	// the replaced value still works.
	PreviousKeyValidUntil *time.Time `json:"previous_key_valid_until,omitempty"`
}

// Updated is the answer to a patch: the view and warnings about the
// change (an allowlist entry that lets every address use the key).
type Updated struct {
	View
	// Warnings are advice about the change; empty when there is none.
	Warnings []string `json:"warnings"`
}

// Created is the answer to a creation: the view, the key value (also
// available later through GET …/key) and warnings.
type Created struct {
	View
	// Key is the key value.
	Key string `json:"key"`
	// Warnings are advice about the key, e.g. that its user holds an
	// admin role; never null.
	Warnings []string `json:"warnings"`
}

// NewKey is the body of POST /gatehouse/appkeys.
type NewKey struct {
	// Name is the key's unique name: 1 to 64 of A-Z a-z 0-9 - _ .
	Name string `json:"name"`
	// Username is the existing user the key runs as.
	Username string `json:"username"`
	// ExpiresAt defaults to now plus the configured lifetime.
	ExpiresAt *time.Time `json:"expires_at"`
	// IPAllowlist holds IPv4/IPv6 addresses and CIDR prefixes (an array,
	// or one comma-separated string); empty allows any.
	IPAllowlist Allowlist `json:"ip_allowlist"`
	Metadata
	ThingWorxAliases
}

// Patch is the body of PATCH /gatehouse/appkeys/{name}: each field, when
// present, replaces the key's field of the same JSON name (see NewKey and
// Metadata); absent fields are left unchanged.
type Patch struct {
	// ExpiresAt sets a new expiry, which must be in the future; it ends the
	// sessions opened with the key.
	ExpiresAt *time.Time `json:"expires_at"`
	// IPAllowlist replaces the allowlist (empty allows any); it ends the
	// sessions opened with the key.
	IPAllowlist *Allowlist `json:"ip_allowlist"`
	// Description replaces Metadata.Description.
	Description *string `json:"description"`
	// Project replaces Metadata.Project.
	Project *string `json:"project"`
	// Tags replaces Metadata.Tags.
	Tags *[]string `json:"tags"`
	// ClientName replaces Metadata.ClientName.
	ClientName *string `json:"client_name"`
	// Documentation replaces Metadata.Documentation.
	Documentation *string `json:"documentation"`
	// HomeURL replaces Metadata.HomeURL.
	HomeURL *string `json:"home_url"`
	ThingWorxAliases
}

// narrows reports whether the patch changes who may use the key or until
// when, which ends the sessions opened with it.
func (p *Patch) narrows() bool { return p.ExpiresAt != nil || p.IPAllowlist != nil }

func (p *Patch) empty() bool { return len(p.fields()) == 0 }

// fields names the fields a patch sets, for the audit log.
func (p *Patch) fields() []string {
	var out []string
	add := func(set bool, name string) {
		if set {
			out = append(out, name)
		}
	}
	add(p.ExpiresAt != nil, "expires_at")
	add(p.IPAllowlist != nil, "ip_allowlist")
	add(p.Description != nil, "description")
	add(p.Project != nil, "project")
	add(p.Tags != nil, "tags")
	add(p.ClientName != nil, "client_name")
	add(p.Documentation != nil, "documentation")
	add(p.HomeURL != nil, "home_url")
	return out
}

// apply changes rec as the patch says, validating every field.
func (p *Patch) apply(rec *record, now time.Time) error {
	if p.ExpiresAt != nil {
		t, err := checkExpiry(*p.ExpiresAt, now)
		if err != nil {
			return err
		}
		rec.ExpiresAt = t
	}
	if p.IPAllowlist != nil {
		canonical, _, err := parseAllowlist(*p.IPAllowlist)
		if err != nil {
			return err
		}
		rec.IPAllowlist = canonical
	}
	m := rec.Metadata
	setIf := func(dst *string, v *string) {
		if v != nil {
			*dst = strings.TrimSpace(*v)
		}
	}
	setIf(&m.Description, p.Description)
	setIf(&m.Project, p.Project)
	setIf(&m.ClientName, p.ClientName)
	setIf(&m.Documentation, p.Documentation)
	setIf(&m.HomeURL, p.HomeURL)
	if p.Tags != nil {
		m.Tags = *p.Tags
	}
	if err := m.normalize(); err != nil {
		return err
	}
	rec.Metadata = m
	return nil
}
