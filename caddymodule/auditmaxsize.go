package caddymodule

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/internal/diskfree"
)

// defaultAuditMaxPercent is audit_max_size's default with Badger: a
// quarter of data_dir's file system, which leaves the rest to the other
// records, Badger's tables before compaction and the spill file.
const defaultAuditMaxPercent = 25

// AuditMaxSize is audit_max_size read (ParseAuditMaxSize): at most one
// of its fields is set; none is the default.
type AuditMaxSize struct {
	// Bytes is a size given in bytes.
	Bytes uint64
	// Percent is a share of the size of data_dir's file system, 1 to 100.
	Percent uint64
	// Off says that the audit log has no bound but audit_retention.
	Off bool
}

// ParseAuditMaxSize reads audit_max_size: "" (the default), "off", a
// share of data_dir's file system ("25%") or a size of at least 1KiB
// ("512MiB", "2GB").
func ParseAuditMaxSize(s string) (AuditMaxSize, error) {
	switch {
	case s == "":
		return AuditMaxSize{}, nil
	case s == "off":
		return AuditMaxSize{Off: true}, nil
	case strings.HasSuffix(s, "%"):
		p, err := strconv.ParseUint(strings.TrimSuffix(s, "%"), 10, 64)
		if err != nil || p < 1 || p > 100 {
			return AuditMaxSize{}, fmt.Errorf("audit_max_size %q: want a share of data_dir's file system from 1%% to 100%%", s)
		}
		return AuditMaxSize{Percent: p}, nil
	}
	b, err := humanize.ParseBytes(s)
	if err != nil || s[0] < '0' || s[0] > '9' || b < 1024 {
		return AuditMaxSize{}, fmt.Errorf("audit_max_size %q: want a size of at least 1KiB such as 512MiB, a share of data_dir's file system such as 25%%, or off", s)
	}
	return AuditMaxSize{Bytes: b}, nil
}

// validateAuditMaxSize checks audit_max_size against the storage: a share
// of data_dir's file system bounds nothing with Redis.
func (a *App) validateAuditMaxSize() error {
	m, err := ParseAuditMaxSize(a.AuditMaxSize)
	if err == nil && m.Percent > 0 && isRedisURL(a.Storage) {
		err = fmt.Errorf("audit_max_size %q: with Redis the audit log is not on data_dir's file system; give a size (such as 512MiB) or off", a.AuditMaxSize)
	}
	return err
}

// auditMaxBytes is the bound audit_max_size sets (0: none), which it
// logs: a share is of the size of data_dir's file system now.
func (a *App) auditMaxBytes() int64 {
	m, _ := ParseAuditMaxSize(a.AuditMaxSize) // Provision checked it
	if m == (AuditMaxSize{}) && !isRedisURL(a.Storage) {
		m.Percent = defaultAuditMaxPercent
	}
	limit := m.Bytes
	if m.Percent > 0 {
		size, ok := diskfree.Size(a.DataDir)
		if !ok {
			a.logger.Warn("the size of data_dir's file system cannot be told: the audit log has no audit_max_size", zap.String("data_dir", a.DataDir))
			return 0
		}
		limit = size / 100 * m.Percent
	}
	if limit > 0 {
		a.logger.Info("the audit log's oldest refusals are deleted before audit_retention past audit_max_size",
			zap.String("audit_max_size", humanize.IBytes(limit)), zap.Uint64("bytes", limit))
	}
	return int64(min(limit, 1<<62))
}
