package clientnet

import "testing"

// TestOf: IPv4 addresses count alone, IPv6 ones by /64, and an
// IPv4-mapped IPv6 address as its IPv4 address.
func TestOf(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":         "192.0.2.1",
		"::ffff:192.0.2.1":  "192.0.2.1",
		"2001:db8::1":       "2001:db8::/64",
		"2001:db8::2:3:4:5": "2001:db8::/64",
		"fe80::1%eth0":      "fe80::/64",
		"not an address":    "not an address",
	} {
		if got := Of(in); got != want {
			t.Errorf("Of(%q) = %q, want %q", in, got, want)
		}
	}
}
