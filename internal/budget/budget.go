// Package budget is a limit shared by several caches that count what they
// hold in one unit (bytes). Each cache charges what it adds to an account
// of its own and releases what it drops; whoever adds to one of them then
// evicts while the sum is over the limit (see Shared.Over).
package budget

import "sync/atomic"

// Shared is a limit and what its accounts have charged against it. It is
// safe for concurrent use.
type Shared struct {
	limit int64
	used  atomic.Int64
}

// New returns a budget of limit (at least 1).
func New(limit int64) *Shared { return &Shared{limit: max(limit, 1)} }

// Account returns a new account charging b.
func (b *Shared) Account() *Account { return &Account{shared: b} }

// Limit is the budget's limit.
func (b *Shared) Limit() int64 { return b.limit }

// Over reports whether more than the limit is charged.
func (b *Shared) Over() bool { return b.used.Load() > b.limit }

// Nearly reports whether at least seven eighths of the limit are charged:
// someone is about to evict.
func (b *Shared) Nearly() bool { return b.used.Load() >= b.limit-b.limit/8 }

// Account is one cache's part of a Shared budget. A nil *Account has no
// limit and counts nothing. It is safe for concurrent use.
type Account struct {
	shared *Shared
	used   atomic.Int64
}

// Limit is the shared limit (0 for nil).
func (a *Account) Limit() int64 {
	if a == nil {
		return 0
	}
	return a.shared.limit
}

// Charge adds n to the account and its budget (negative: releases -n).
func (a *Account) Charge(n int64) {
	if a != nil {
		a.used.Add(n)
		a.shared.used.Add(n)
	}
}

// Used is what the account has charged.
func (a *Account) Used() int64 {
	if a == nil {
		return 0
	}
	return a.used.Load()
}

// Nearly reports whether the shared budget is nearly used up (false for
// nil).
func (a *Account) Nearly() bool { return a != nil && a.shared.Nearly() }

// Over reports whether the shared budget is over its limit (false for
// nil).
func (a *Account) Over() bool { return a != nil && a.shared.Over() }
