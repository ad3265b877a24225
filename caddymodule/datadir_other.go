//go:build !unix

package caddymodule

import "go.uber.org/zap"

// warnLooseDataDir checks nothing where file modes are not Unix's.
func warnLooseDataDir(*zap.Logger, string) {}
