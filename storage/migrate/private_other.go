//go:build !unix

package migrate

// checkPrivate checks nothing where permission bits do not say who may
// read a directory (Windows: its access list does): keep the destination
// where only the account running Gatehouse can read it.
func checkPrivate(string) error { return nil }
