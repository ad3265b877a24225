package caddymodule

import "testing"

// TestServesPortal: a portal_url is taken to reach the login portal when
// it names a site serving it (any case, the default port written or
// not), or that site's host name on a port this Caddy does not listen on
// (a load balancer's address); not when it names another site of this
// Caddy (another port it listens on) or a host name no portal site has.
func TestServesPortal(t *testing.T) {
	sites := []string{"https://corp.example.com", "https://login.example.com:8444"}
	listened := []uint{80, 443, 8444, 9443}
	for _, tc := range []struct {
		portal string
		want   bool
	}{
		{"https://corp.example.com", true},
		{"https://CORP.example.com:443", true},
		{"https://login.example.com:8444", true},
		{"https://login.example.com", false},      // 443: this Caddy's, where login.example.com serves no portal
		{"https://corp.example.com:9443", false},  // another site of this Caddy
		{"https://login.example.com:10443", true}, // not a port of this Caddy: a proxy in front of it
		{"https://www.example.com", false},
		{"http://corp.example.com", false}, // 80: this Caddy's, plain HTTP, no portal
	} {
		if got := servesPortal(sites, listened, tc.portal); got != tc.want {
			t.Errorf("portal_url %s: %t; want %t", tc.portal, got, tc.want)
		}
	}
}
