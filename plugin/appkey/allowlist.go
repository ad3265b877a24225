package appkey

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/gatehouse-auth/gatehouse/failure"
)

// maxAllowlist bounds the entries of one key's IP allowlist.
const maxAllowlist = 256

// parseAllowlist validates an IP allowlist of IPv4/IPv6 addresses and CIDR
// prefixes and returns its canonical form (duplicates dropped, IPv4-mapped
// IPv6 written as IPv4) and the parsed prefixes. Zoned addresses are
// refused: a zone names an interface of one host, not a client; so is a
// prefix with host bits set ("10.1.2.3/3", likely meant as /32), which
// would silently widen the list. storedAllowlist reads a stored one.
func parseAllowlist(entries []string) ([]string, []netip.Prefix, error) {
	return readAllowlist(entries, true)
}

// storedAllowlist is parseAllowlist for the allowlist of a stored key,
// written in canonical form: a prefix with host bits set (none is ever
// written) is masked rather than refused, so that the key still loads.
func storedAllowlist(entries []string) ([]netip.Prefix, error) {
	_, prefixes, err := readAllowlist(entries, false)
	return prefixes, err
}

// readAllowlist is parseAllowlist, refusing prefixes with host bits set
// when strict, else masking them.
func readAllowlist(entries []string, strict bool) ([]string, []netip.Prefix, error) {
	if len(entries) > maxAllowlist {
		return nil, nil, failure.Invalid("ip_allowlist has %d entries; the limit is %d", len(entries), maxAllowlist)
	}
	canonical := make([]string, 0, len(entries))
	prefixes := make([]netip.Prefix, 0, len(entries))
	for _, e := range entries {
		p, err := parseAllowEntry(e, strict)
		if err != nil {
			return nil, nil, err
		}
		if slices.Contains(prefixes, p) {
			continue
		}
		prefixes = append(prefixes, p)
		if p.IsSingleIP() {
			canonical = append(canonical, p.Addr().String())
		} else {
			canonical = append(canonical, p.String())
		}
	}
	return canonical, prefixes, nil
}

// parseAllowEntry parses one allowlist entry (readAllowlist).
func parseAllowEntry(entry string, strict bool) (netip.Prefix, error) {
	s := strings.TrimSpace(entry)
	bad := func(why string) (netip.Prefix, error) {
		return netip.Prefix{}, failure.Invalid("ip_allowlist entry %q is not %s", entry, why)
	}
	if strings.Contains(s, "%") {
		return bad("valid: zoned IPv6 addresses are not allowed")
	}
	if !strings.Contains(s, "/") {
		addr, err := netip.ParseAddr(s)
		if err != nil {
			return bad("an IPv4/IPv6 address or CIDR prefix (e.g. 192.0.2.7, 2001:db8::1, 10.0.0.0/8)")
		}
		addr = addr.Unmap()
		return netip.PrefixFrom(addr, addr.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return bad("a valid CIDR prefix (e.g. 10.0.0.0/8, 2001:db8::/32)")
	}
	if addr := p.Addr(); addr.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(addr.Unmap(), p.Bits()-96)
	}
	if m := p.Masked(); m != p && strict {
		// 10.1.2.3/3 (meant as /32) would be 0.0.0.0/3: a typo widening
		// the allowlist without a word.
		return bad(fmt.Sprintf("a network address: its prefix length leaves host bits set (the network is %s; for the one address write %s)",
			m, netip.PrefixFrom(p.Addr(), p.Addr().BitLen())))
	}
	return p.Masked(), nil
}

// prefixList is an allowlist as the data plane reads it: a cached entry,
// read in place.
type prefixList interface {
	allowLen() int
	allowAt(i int) netip.Prefix
}

// allows reports whether the client address ip (as Caddy resolved it) is
// in the list's prefixes; an empty list allows every address. An address
// that does not parse is refused.
func allows[L prefixList](list L, ip string) bool {
	n := list.allowLen()
	if n == 0 {
		return true
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	addr = addr.Unmap().WithZone("")
	for i := range n {
		if list.allowAt(i).Contains(addr) {
			return true
		}
	}
	return false
}
