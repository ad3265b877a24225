package clientnet

import "testing"

// TestOf: IPv4 addresses count alone, IPv6 ones by /64, and an
// IPv4-mapped IPv6 address, or one of the NAT64 well-known prefix, as
// the IPv4 address it holds: not as the /64 holding every IPv4 address.
func TestOf(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":          "192.0.2.1",
		"::ffff:192.0.2.1":   "192.0.2.1",
		"64:ff9b::192.0.2.1": "192.0.2.1",
		"64:ff9b::c633:6407": "198.51.100.7",
		"64:ff9b:1::1":       "64:ff9b:1::/64",
		"64:ff9b::1:0:0:1":   "64:ff9b::/64",
		"2001:db8::1":        "2001:db8::/64",
		"2001:db8::2:3:4:5":  "2001:db8::/64",
		"fe80::1%eth0":       "fe80::/64",
		"not an address":     "not an address",
	} {
		if got := Of(in); got != want {
			t.Errorf("Of(%q) = %q, want %q", in, got, want)
		}
	}
}
