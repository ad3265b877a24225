// Package clientnet names the network a client address stands for when
// Gatehouse counts what one client does: an IPv4 address alone, an IPv6
// address by its /64, which one client usually holds whole (a client
// given a /64 would otherwise count as 2^64 clients).
package clientnet

import "net/netip"

// nat64 is the NAT64 well-known prefix (RFC 6052): an IPv6-only server
// behind a stateless translator (SIIT, RFC 7915) sees IPv4 client
// a.b.c.d as 64:ff9b::a.b.c.d, every IPv4 client in the one /64.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Of returns the client network of ip: the IPv4 address itself (an
// IPv4-mapped IPv6 address, and one of the NAT64 well-known prefix,
// count as the IPv4 address they hold), the /64 of an IPv6 address (its
// zone dropped), and anything that is not an IP address as itself.
func Of(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap().WithZone("")
	if nat64.Contains(addr) {
		b := addr.As16()
		addr = netip.AddrFrom4([4]byte(b[12:]))
	}
	if addr.Is6() {
		return netip.PrefixFrom(addr, 64).Masked().String()
	}
	return addr.String()
}
