//go:build !unix

package caddymodule

// lockRekey is a no-op where flock is not available: there, running two
// rekeys of one keystore at once is the operator's to avoid.
func lockRekey(string) (unlock func(), err error) { return func() {}, nil }
