package directory

import (
	"encoding/binary"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// An Active Directory account's primary group (its primaryGroupID, Domain
// Users for most accounts) is not among the groups whose member attribute
// names the account, so the search for its groups (LDAP_MATCHING_RULE_IN_CHAIN
// on member) does not find it, nor the groups it is a member of. Gatehouse
// finds the group by its SID, the account's objectSid with the last
// relative identifier replaced by the primaryGroupID (MS-ADTS 3.1.1.4.5.19;
// MS-DTYP 2.4.2.2 for the SID's binary form), then that group's own groups.
//
// The primary group is membership wherever it lies (Domain Users is in
// CN=Users, which a group_base_dn of OU=Groups leaves out), so it is
// searched in the account's whole domain (the DC= part of its DN); the
// groups it is in are searched like the account's own, under
// group_base_dn (the mapped ones alone), and a group maps only when a
// group_role names it, which must lie under group_base_dn (Config).

// primaryGroupSID is the binary SID of the primary group of the account
// whose objectSid is sid and primaryGroupID is rid, or false when either
// is not one.
func primaryGroupSID(sid []byte, rid string) (string, bool) {
	n, err := strconv.ParseUint(rid, 10, 32)
	// revision 1, sub-authority count, 6-byte authority, then the count's
	// 32-bit little-endian sub-authorities (the last the account's RID).
	if err != nil || len(sid) < 12 || sid[0] != 1 || sid[1] == 0 || len(sid) != 8+4*int(sid[1]) {
		return "", false
	}
	group := append([]byte(nil), sid...)
	binary.LittleEndian.PutUint32(group[len(group)-4:], uint32(n))
	return string(group), true
}

// binaryFilterValue escapes every byte of v for an LDAP filter (RFC 4515),
// as a binary attribute value such as objectSid is matched.
func binaryFilterValue(v string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(3 * len(v))
	for i := range len(v) {
		b.WriteByte('\\')
		b.WriteByte(hex[v[i]>>4])
		b.WriteByte(hex[v[i]&0xf])
	}
	return b.String()
}

// primaryGroups caches the groups of each primary group read, by SID, for
// as long as the status of an account is (status_ttl): a domain's
// accounts share a few primary groups, one search per group and period.
type primaryGroups struct {
	mu   sync.Mutex
	read map[string]primaryGroupsRead
}

type primaryGroupsRead struct {
	groups []string
	at     time.Time
}

// maxPrimaryGroups bounds the primary groups cached.
const maxPrimaryGroups = 256

// domainOf is the DN of the domain that holds the entry dn: its DC=
// part (DC=example,DC=test of CN=gus,CN=Users,DC=example,DC=test), or
// fallback when it has none.
func domainOf(dn, fallback string) string {
	parsed, err := ldap.ParseDN(dn)
	if err != nil {
		return fallback
	}
	first := len(parsed.RDNs)
	for first > 0 {
		rdn := parsed.RDNs[first-1]
		if len(rdn.Attributes) != 1 || !strings.EqualFold(rdn.Attributes[0].Type, "DC") {
			break
		}
		first--
	}
	if first == len(parsed.RDNs) {
		return fallback
	}
	return (&ldap.DN{RDNs: parsed.RDNs[first:]}).String()
}

// primaryGroupsOf returns the DN of the group whose SID is sid followed by
// the DNs of the groups it is in, read at most once per status_ttl, and
// again for a read an administrator's refresh asked for (marked); none
// when no group has the SID. The group is searched in the domain of the
// account (its DN, userDN), wherever it lies there; the groups it is in
// under group_base_dn.
func (d *Directory) primaryGroupsOf(userDN, sid string, now time.Time, marked bool) ([]string, error) {
	d.primary.mu.Lock()
	r, ok := d.primary.read[sid]
	d.primary.mu.Unlock()
	if ok && !marked && now.Sub(r.at) < time.Duration(d.cfg.StatusTTL) {
		return r.groups, nil
	}
	entries, err := d.pool.search("search_primary_group", domainOf(userDN, d.cfg.GroupBaseDN), "(objectSid="+binaryFilterValue(sid)+")", []string{"1.1"})
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		entries, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	var groups []string
	if len(entries) == 1 {
		parents, err := d.groupsOf(entries[0].DN)
		if err != nil {
			return nil, err
		}
		groups = append([]string{entries[0].DN}, parents...)
	}
	d.primary.mu.Lock()
	if d.primary.read == nil || len(d.primary.read) > maxPrimaryGroups {
		d.primary.read = map[string]primaryGroupsRead{}
	}
	d.primary.read[sid] = primaryGroupsRead{groups: groups, at: now}
	d.primary.mu.Unlock()
	return groups, nil
}
