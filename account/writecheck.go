package account

import "context"

// writeCheckKey is the context key of WithWriteCheck's check.
type writeCheckKey struct{}

// WithWriteCheck returns ctx carrying check, which CreateUser and
// UpdateUser run once a new password is hashed, just before they write:
// the hash may wait long for a slot (hashslots), and a caller acting in
// someone's name (the console, for a signed-in administrator) needs what
// it checked before the call to still hold when the change is made.
// check's error is returned, and nothing is written.
func WithWriteCheck(ctx context.Context, check func(context.Context) error) context.Context {
	return context.WithValue(ctx, writeCheckKey{}, check)
}

// checkWrite runs the check of WithWriteCheck in ctx, if any.
func checkWrite(ctx context.Context) error {
	if check, ok := ctx.Value(writeCheckKey{}).(func(context.Context) error); ok {
		return check(ctx)
	}
	return nil
}
