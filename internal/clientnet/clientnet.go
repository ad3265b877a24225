// Package clientnet names the network a client address stands for when
// Gatehouse counts what one client does: an IPv4 address alone, an IPv6
// address by its /64, which one client usually holds whole (a client
// given a /64 would otherwise count as 2^64 clients).
package clientnet

import "net/netip"

// Of returns the client network of ip: the IPv4 address itself (an
// IPv4-mapped IPv6 address counts as its IPv4 address), the /64 of an
// IPv6 address (its zone dropped), and anything that is not an IP
// address as itself.
func Of(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		return netip.PrefixFrom(addr, 64).Masked().String()
	}
	return addr.String()
}
