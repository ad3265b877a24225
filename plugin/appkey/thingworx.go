package appkey

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/failure"
)

// Allowlist is an IP allowlist as the admin API reads it: a JSON array of
// addresses and CIDR prefixes, or one string of them separated by commas
// (ThingWorx's whitelist property); blanks around entries are dropped.
type Allowlist []string

// UnmarshalJSON implements json.Unmarshaler.
func (a *Allowlist) UnmarshalJSON(data []byte) error {
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte(`"`)) {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*a = Allowlist{}
		for entry := range strings.SplitSeq(s, ",") {
			if entry = strings.TrimSpace(entry); entry != "" {
				*a = append(*a, entry)
			}
		}
		return nil
	}
	var list []string
	if err := json.Unmarshal(data, &list); err != nil {
		return err
	}
	*a = list
	return nil
}

// DateTime is a ThingWorx DATETIME: an RFC 3339 time, or one without a
// zone (2006-01-02T15:04:05, fractions and a space for the T allowed),
// which is taken as UTC.
type DateTime time.Time

// zonelessLayouts are the DATETIME forms without a zone.
var zonelessLayouts = []string{"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999"}

// UnmarshalJSON implements json.Unmarshaler.
func (d *DateTime) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return failure.Invalid("expirationDate must be a string such as 2030-01-31T12:00:00 (UTC) or an RFC 3339 time")
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		*d = DateTime(t)
		return nil
	}
	for _, layout := range zonelessLayouts {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			*d = DateTime(t)
			return nil
		}
	}
	return failure.Invalid("expirationDate %q is not a date and time such as 2030-01-31T12:00:00 (UTC) or an RFC 3339 time", s)
}

// ThingWorxAliases are ThingWorx's property names for fields of NewKey
// and Patch, accepted in their place so that a ThingWorx client's body
// works unchanged. Naming one field under both names is refused.
type ThingWorxAliases struct {
	// User is the alias of NewKey.Username (a new key only).
	User *string `json:"user,omitempty"`
	// Whitelist is the alias of ip_allowlist.
	Whitelist *Allowlist `json:"whitelist,omitempty"`
	// ClientNameAlias is the alias of client_name ("clientName").
	ClientNameAlias *string `json:"clientName,omitempty"`
	// ExpirationDate is the alias of expires_at; a DATETIME without a
	// zone is UTC.
	ExpirationDate *DateTime `json:"expirationDate,omitempty"`
	// HomeMashup is the alias of home_url: a mashup name or a URL.
	HomeMashup *string `json:"homeMashup,omitempty"`
}

// alias moves an alias's value into its field, refusing both at once.
func alias[T any](field **T, value *T, fieldName, aliasName string) error {
	if value == nil {
		return nil
	}
	if *field != nil {
		return failure.Invalid("give %s or its ThingWorx name %s, not both", fieldName, aliasName)
	}
	*field = value
	return nil
}

// expiry returns ExpirationDate as a time.
func (a *ThingWorxAliases) expiry() *time.Time {
	if a.ExpirationDate == nil {
		return nil
	}
	t := time.Time(*a.ExpirationDate)
	return &t
}

// resolveAliases moves the ThingWorx aliases into the key's own fields.
func (in *NewKey) resolveAliases() error {
	a := in.ThingWorxAliases
	in.ThingWorxAliases = ThingWorxAliases{}
	username := &in.Username
	if in.Username == "" {
		username = nil
	}
	allowlist := &in.IPAllowlist
	if in.IPAllowlist == nil {
		allowlist = nil
	}
	clientName, homeURL := optional(in.ClientName), optional(in.HomeURL)
	err := firstError(alias(&username, a.User, "username", "user"),
		alias(&allowlist, a.Whitelist, "ip_allowlist", "whitelist"),
		alias(&in.ExpiresAt, a.expiry(), "expires_at", "expirationDate"),
		alias(&clientName, a.ClientNameAlias, "client_name", "clientName"),
		alias(&homeURL, a.HomeMashup, "home_url", "homeMashup"))
	if err != nil {
		return err
	}
	in.Username, in.ClientName, in.HomeURL = deref(username), deref(clientName), deref(homeURL)
	if allowlist != nil {
		in.IPAllowlist = *allowlist
	}
	return nil
}

// resolveAliases moves the ThingWorx aliases into the patch's own fields.
func (p *Patch) resolveAliases() error {
	a := p.ThingWorxAliases
	p.ThingWorxAliases = ThingWorxAliases{}
	if a.User != nil {
		return failure.Invalid("user cannot be changed: a key runs as the user it was created for")
	}
	return firstError(alias(&p.IPAllowlist, a.Whitelist, "ip_allowlist", "whitelist"),
		alias(&p.ExpiresAt, a.expiry(), "expires_at", "expirationDate"),
		alias(&p.ClientName, a.ClientNameAlias, "client_name", "clientName"),
		alias(&p.HomeURL, a.HomeMashup, "home_url", "homeMashup"))
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
