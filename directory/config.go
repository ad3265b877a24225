// Package directory makes an LDAP directory (Active Directory, OpenLDAP)
// a source of Gatehouse accounts: their passwords are checked by an LDAP
// bind, and their status (disabled, locked, expired, deleted, out of
// every mapped group) and roles (from group membership) are read from the
// directory and cached for status_ttl, so that the per-request account
// check needs no LDAP round trip.
package directory

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/go-ldap/ldap/v3"
)

// Flavor names a kind of directory server; it presets the filters and
// says which attributes carry an account's state.
type Flavor string

// Flavors.
const (
	// ActiveDirectory: sAMAccountName, nested groups through
	// LDAP_MATCHING_RULE_IN_CHAIN, userAccountControl, lockoutTime,
	// accountExpires, pwdLastSet.
	ActiveDirectory Flavor = "active_directory"
	// OpenLDAP: uid, groupOfNames (nested groups followed by Gatehouse),
	// pwdAccountLockedTime of the ppolicy overlay.
	OpenLDAP Flavor = "openldap"
)

// GroupRole maps the members of a directory group (and of the groups
// nested in it) to a Gatehouse role.
type GroupRole struct {
	// Group is the group's DN.
	Group string `json:"group"`
	// Role is the Gatehouse role its members hold.
	Role string `json:"role"`
}

// Config is the directory global option (JSON of
// `gatehouse { directory ldap { … } }`).
type Config struct {
	// URLs are the directory servers, ldaps:// or ldap://, tried in order:
	// the next one when a server cannot be reached.
	URLs []string `json:"urls"`
	// CAFile is a PEM file of the CAs that sign the servers' certificates.
	// Default: the system's roots.
	CAFile string `json:"ca_file,omitempty"`
	// StartTLS upgrades ldap:// connections with StartTLS before binding.
	StartTLS bool `json:"starttls,omitempty"`
	// BindDN is the service account that searches the directory.
	BindDN string `json:"bind_dn"`
	// BindPassword is the service account's password, or a placeholder
	// such as {env.GATEHOUSE_LDAP_PASSWORD}; it is never logged or shown.
	BindPassword string `json:"bind_password"`
	// BaseDN is where users are searched. Its DC= parts name the domain
	// for the EXAMPLE\alice and alice@example.test forms of a username.
	BaseDN string `json:"base_dn"`
	// UserFilter finds a user; {username} is replaced by the (escaped)
	// username. Default: by flavor.
	UserFilter string `json:"user_filter,omitempty"`
	// NameAttribute is the attribute holding an account's own name
	// (Entry.Name; of several values the one in the entry's DN, else
	// none), by which Gatehouse knows the account whatever name found
	// its entry: a second uid, or a mail address a user_filter
	// matches, is then the same account, with the same second factors,
	// keys, sessions and bounds, not one of its own. Default: the
	// flavor's (sAMAccountName, uid) with the default user_filter; none
	// with another user_filter, where each name the filter matches is
	// its own account, as before this option: set it whenever the filter
	// lets one entry be found by several names. "none" turns it off.
	NameAttribute string `json:"name_attribute,omitempty"`
	// GroupBaseDN is where groups are searched. Default: BaseDN.
	GroupBaseDN string `json:"group_base_dn,omitempty"`
	// GroupFilter finds the groups of a user; {dn} is replaced by the
	// (escaped) user DN. Default: by flavor.
	GroupFilter string `json:"group_filter,omitempty"`
	// GroupRoles map directory groups to Gatehouse roles. A user in none of
	// them is refused.
	GroupRoles []GroupRole `json:"group_roles,omitempty"`
	// StatusTTL is how long an account's status is used before it is read
	// again, and so how long a change in the directory takes to count;
	// also how long a cached status is used while the directory is down.
	// Default: 30s.
	StatusTTL caddy.Duration `json:"status_ttl,omitempty"`
	// Flavor is "active_directory" (default) or "openldap".
	Flavor Flavor `json:"flavor,omitempty"`
	// Timeout bounds dialling and each LDAP request. Default: 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// FailedBinds bounds the wrong passwords checked against the
	// directory for one name within FailedBindsWindow, every front end
	// together (HTTP Basic, the portal, the ESA API, the console): past
	// it, sign-ins of the name are throttled without a bind until the
	// window ends. Keep it below the directory's own lockout threshold,
	// so that guesses through Gatehouse cannot lock the account for every
	// service. Default: 4; negative: no bound.
	FailedBinds int `json:"failed_binds,omitempty"`
	// FailedBindsWindow is the window of FailedBinds, from the first
	// wrong password. Default: 15m.
	FailedBindsWindow caddy.Duration `json:"failed_binds_window,omitempty"`
	// DefaultPasswordPolicy is the DN of the password policy entry an
	// OpenLDAP server applies to accounts without a pwdPolicySubentry of
	// their own (slapo-ppolicy's ppolicy_default, olcPPolicyDefault), which
	// lives in the server's configuration where the service account cannot
	// read it. With it, such an account's lockout ends and its password
	// expires as the server says; without it, a lockout lasts until the
	// account's next bind and its password never expires here. OpenLDAP
	// flavor only.
	DefaultPasswordPolicy string `json:"default_password_policy,omitempty"`
}

// Default failed-bind bound: below Active Directory's common lockout
// threshold of 5 wrong passwords.
const (
	defaultFailedBinds       = 4
	defaultFailedBindsWindow = 15 * time.Minute
)

// Filter defaults by flavor.
var defaultFilters = map[Flavor]struct{ user, group string }{
	ActiveDirectory: {
		user:  "(&(objectCategory=person)(objectClass=user)(sAMAccountName={username}))",
		group: "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:={dn}))",
	},
	OpenLDAP: {
		user:  "(&(objectClass=inetOrgPerson)(uid={username}))",
		group: "(&(objectClass=groupOfNames)(member={dn}))",
	},
}

// defaultNameAttributes hold an account's own name, by flavor
// (Config.NameAttribute).
var defaultNameAttributes = map[Flavor]string{ActiveDirectory: "sAMAccountName", OpenLDAP: "uid"}

// validAttribute reports whether s is an attribute description of RFC
// 4512: a letter, then letters, digits and hyphens (or an OID).
func validAttribute(s string) bool {
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '-' || r == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// Validate reports the first invalid option, ca_file read too (so that
// `caddy validate` finds it missing, as a start would); it never mentions
// the bind password.
func (c Config) Validate() error {
	if _, err := c.withDefaults(); err != nil {
		return err
	}
	if c.CAFile != "" {
		_, err := readCAFile(c.CAFile)
		return err
	}
	return nil
}

// withDefaults returns c with its defaults filled in, or an error naming
// the first invalid option. It never mentions the bind password.
func (c Config) withDefaults() (Config, error) {
	if c.Flavor == "" {
		c.Flavor = ActiveDirectory
	}
	defaults, ok := defaultFilters[c.Flavor]
	if !ok {
		return c, fmt.Errorf("directory: flavor %q: use %s or %s", c.Flavor, ActiveDirectory, OpenLDAP)
	}
	if c.UserFilter == "" {
		c.UserFilter = defaults.user
		if c.NameAttribute == "" {
			c.NameAttribute = defaultNameAttributes[c.Flavor]
		}
	}
	switch {
	case c.NameAttribute == "none":
		c.NameAttribute = ""
	case c.NameAttribute != "" && !validAttribute(c.NameAttribute):
		return c, fmt.Errorf("directory: name_attribute %q is not an attribute name", c.NameAttribute)
	}
	if c.GroupFilter == "" {
		c.GroupFilter = defaults.group
	}
	if c.GroupBaseDN == "" {
		c.GroupBaseDN = c.BaseDN
	}
	if c.StatusTTL <= 0 {
		c.StatusTTL = caddy.Duration(30 * time.Second)
	}
	if c.Timeout <= 0 {
		c.Timeout = caddy.Duration(5 * time.Second)
	}
	if c.FailedBinds == 0 {
		c.FailedBinds = defaultFailedBinds
	}
	if c.FailedBindsWindow <= 0 {
		c.FailedBindsWindow = caddy.Duration(defaultFailedBindsWindow)
	}
	if len(c.URLs) == 0 {
		return c, errors.New("directory: url is required")
	}
	for _, u := range c.URLs {
		if !strings.HasPrefix(u, "ldaps://") && !strings.HasPrefix(u, "ldap://") {
			return c, fmt.Errorf("directory: url %q: use ldaps:// or ldap://", u)
		}
		if strings.HasPrefix(u, "ldap://") && !c.StartTLS && !isLoopbackURL(u) {
			return c, fmt.Errorf("directory: url %q sends passwords in clear text: use ldaps:// or starttls", u)
		}
	}
	if c.BindDN == "" || c.BindPassword == "" {
		return c, errors.New("directory: bind_dn and bind_password are required")
	}
	for _, dn := range []struct{ name, value string }{{"base_dn", c.BaseDN}, {"group_base_dn", c.GroupBaseDN}, {"bind_dn", c.BindDN}} {
		if _, err := ldap.ParseDN(dn.value); err != nil || dn.value == "" {
			return c, fmt.Errorf("directory: %s %q is not a DN", dn.name, dn.value)
		}
	}
	if err := checkTemplate("user_filter", c.UserFilter, "{username}"); err != nil {
		return c, err
	}
	if err := checkTemplate("group_filter", c.GroupFilter, "{dn}"); err != nil {
		return c, err
	}
	if c.DefaultPasswordPolicy != "" {
		if _, err := ldap.ParseDN(c.DefaultPasswordPolicy); err != nil {
			return c, fmt.Errorf("directory: default_password_policy %q is not a DN", c.DefaultPasswordPolicy)
		}
		if c.Flavor != OpenLDAP {
			return c, errors.New("directory: default_password_policy is for the openldap flavor (Active Directory's policy is read from the account)")
		}
	}
	groupBase, _ := ldap.ParseDN(c.GroupBaseDN) // checked above
	for _, gr := range c.GroupRoles {
		dn, err := ldap.ParseDN(gr.Group)
		if err != nil || gr.Group == "" || gr.Role == "" {
			return c, fmt.Errorf("directory: group_role %q %q: a group DN and a role name", gr.Group, gr.Role)
		}
		// Groups are searched under group_base_dn: a group outside it is
		// never found, and its mapping would never give its role.
		if !groupBase.EqualFold(dn) && !groupBase.AncestorOfFold(dn) {
			return c, fmt.Errorf("directory: group_role %q lies outside group_base_dn %q, where groups are searched: its members would never get %q (widen group_base_dn)",
				gr.Group, c.GroupBaseDN, gr.Role)
		}
	}
	return c, nil
}

// isLoopbackURL reports whether an ldap:// URL names this machine: its
// host is localhost or a loopback address, and it has no user part (which
// a prefix check would take for the host: ldap://127.0.0.1@192.0.2.2).
func isLoopbackURL(u string) bool {
	parsed, err := url.Parse(u)
	if err != nil || parsed.User != nil {
		return false
	}
	host := parsed.Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkTemplate checks that a filter template holds its placeholder and
// is a valid filter once the placeholder is filled in.
func checkTemplate(option, template, placeholder string) error {
	if !strings.Contains(template, placeholder) {
		return fmt.Errorf("directory: %s %q must contain %s", option, template, placeholder)
	}
	if _, err := ldap.CompileFilter(strings.ReplaceAll(template, placeholder, "x")); err != nil {
		return fmt.Errorf("directory: %s %q is not an LDAP filter: %v", option, template, err)
	}
	return nil
}
