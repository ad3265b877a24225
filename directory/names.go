package directory

import (
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// domainsOf derives the names of a directory's domain from a base DN's
// DC= parts: the first label ("example", the NetBIOS name as Active
// Directory sets it by default) and all of them joined ("example.test").
func domainsOf(baseDN string) []string {
	dn, err := ldap.ParseDN(baseDN)
	if err != nil {
		return nil
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
		return nil
	}
	return []string{labels[0], strings.Join(labels, ".")}
}

// fill replaces placeholder in a filter template by value, escaped as an
// assertion value (RFC 4515): whatever value holds, the filter keeps its
// shape, and value is matched as text.
func fill(template, placeholder, value string) string {
	return strings.ReplaceAll(template, placeholder, ldap.EscapeFilter(value))
}
