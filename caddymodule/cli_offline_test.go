package caddymodule

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/storage/migrate"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// TestMigrateRefusesAnEmptySource: a copy from a store that holds no
// record (a Redis database number the instances do not use, a Badger
// directory never written) is refused before the destination is made. It
// answered "copied 0 records" with success and left an empty backup: an
// operator's backup of redis://…/9 instead of /1 held nothing.
func TestMigrateRefusesAnEmptySource(t *testing.T) {
	srv := redistest.Start(t)
	dst := filepath.Join(t.TempDir(), "backup")
	err := runMigrate(io.Discard, srv.URL(), "badger:"+dst, migrate.Source, migrate.IntoEmpty)
	if err == nil || !strings.Contains(err.Error(), "holds no records") {
		t.Fatalf("migrate from an empty Redis database = %v; want refused as holding no records", err)
	}
	if _, statErr := os.Stat(dst); !errors.Is(statErr, fs.ErrNotExist) {
		t.Errorf("the destination was made for an empty source: %v", statErr)
	}
}
