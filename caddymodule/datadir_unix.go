//go:build unix

package caddymodule

import (
	"os"
	"path/filepath"
	"syscall"

	"go.uber.org/zap"
)

// warnLooseDataDir warns of a data directory, or its Badger directory,
// that others may write to or that another user owns (who could plant a
// file or a link where Gatehouse writes, or replace the store), and of a
// Badger directory others may read (its records hold password hashes;
// Badger creates its files readable by all but the umask). Gatehouse
// creates both 0700; this catches ones made or loosened by hand.
func warnLooseDataDir(logger *zap.Logger, dataDir string) {
	for _, dir := range []struct {
		path  string
		loose os.FileMode
	}{{dataDir, 0o022}, {filepath.Join(dataDir, "badger"), 0o077}} {
		info, err := os.Stat(dir.path)
		if err != nil {
			continue // not there (a Redis store has no Badger directory)
		}
		if perm := info.Mode().Perm(); perm&dir.loose != 0 {
			logger.Warn("a Gatehouse data directory is open to other users: chmod 700 it",
				zap.String("path", dir.path), zap.String("mode", perm.String()), zap.String("fix", "chmod 700 "+shellQuote(dir.path)))
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
			logger.Warn("a Gatehouse data directory belongs to another user, who could replace what Gatehouse keeps there",
				zap.String("path", dir.path), zap.Uint32("uid", st.Uid))
		}
	}
}
