package directory

import (
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// domain is the directory's domain, as users type it in front of or
// after their name: EXAMPLE\alice, alice@example.test.
type domain struct {
	// netbios is the first DC= label ("example"), compared in any case.
	netbios string
	// dns is the DC= labels joined by dots ("example.test").
	dns string
}

// domainOf derives the domain from a base DN's DC= parts.
func domainOf(baseDN string) domain {
	dn, err := ldap.ParseDN(baseDN)
	if err != nil {
		return domain{}
	}
	var labels []string
	for _, rdn := range dn.RDNs {
		for _, a := range rdn.Attributes {
			if strings.EqualFold(a.Type, "dc") {
				labels = append(labels, a.Value)
			}
		}
	}
	if len(labels) == 0 {
		return domain{}
	}
	return domain{netbios: labels[0], dns: strings.Join(labels, ".")}
}

// AccountName returns the account name a user typed in any of the forms
// the directory's users know: alice, EXAMPLE\alice or
// alice@example.test name the same account, "alice". A name qualified
// with another domain is returned as typed, and so names no directory
// account (its backslash or @ is escaped in the filter).
func (d domain) AccountName(typed string) string {
	if before, after, ok := strings.Cut(typed, `\`); ok && d.netbios != "" && strings.EqualFold(before, d.netbios) {
		return after
	}
	if i := strings.LastIndexByte(typed, '@'); i > 0 && d.dns != "" && strings.EqualFold(typed[i+1:], d.dns) {
		return typed[:i]
	}
	return typed
}

// fill replaces placeholder in a filter template by value, escaped as an
// assertion value (RFC 4515): whatever value holds, the filter keeps its
// shape, and value is matched as text.
func fill(template, placeholder, value string) string {
	return strings.ReplaceAll(template, placeholder, ldap.EscapeFilter(value))
}
