// Package diskfree tells the free space of a file system, for the writers
// that keep some of it free: the Badger store (badger.MinFreeSpace) and
// the audit spill file beside it; its size, of which the audit log's
// default audit_max_size is a share; whether a directory can be written;
// and the space a (sparse) file takes.
package diskfree
