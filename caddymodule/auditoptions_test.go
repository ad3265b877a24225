package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/internal/diskfree"
)

// TestAuditRefusalsPerMinute: the Caddyfile takes a number of at least 1
// or unlimited (-1 in JSON), and refuses anything else with an error that
// names the option.
func TestAuditRefusalsPerMinute(t *testing.T) {
	for in, want := range map[string]int{"50": 50, "1": 1, "unlimited": -1} {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n audit_refusals_per_minute " + in + "\n}")); err != nil || a.AuditRefusalsPerMinute != want {
			t.Errorf("audit_refusals_per_minute %s: %d, %v; want %d", in, a.AuditRefusalsPerMinute, err, want)
		}
	}
	for _, bad := range []string{"0", "-1", "lots", "1.5", "", "50 60"} {
		err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n audit_refusals_per_minute " + bad + "\n}"))
		if err == nil || (bad != "" && bad != "50 60" && !strings.Contains(err.Error(), "audit_refusals_per_minute")) {
			t.Errorf("audit_refusals_per_minute %q: %v; want an error naming the option", bad, err)
		}
	}
}

// TestAuditMaxSize: the Caddyfile takes a size, a share of data_dir's
// file system or off, and refuses anything else with an error that names
// the option; a share is refused with Redis, whose data is elsewhere.
func TestAuditMaxSize(t *testing.T) {
	for in, want := range map[string]AuditMaxSize{"512MiB": {Bytes: 512 << 20}, "1GB": {Bytes: 1e9}, "25%": {Percent: 25}, "off": {Off: true}} {
		var a App
		err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n audit_max_size " + in + "\n}"))
		got, perr := ParseAuditMaxSize(a.AuditMaxSize)
		if err != nil || perr != nil || got != want {
			t.Errorf("audit_max_size %s: %+v, %v, %v; want %+v", in, got, err, perr, want)
		}
	}
	for _, bad := range []string{"0", "100", "0%", "101%", "lots", "-5MiB", "on"} {
		err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n audit_max_size " + bad + "\n}"))
		if err == nil || !strings.Contains(err.Error(), "audit_max_size") {
			t.Errorf("audit_max_size %q: %v; want an error naming the option", bad, err)
		}
	}
	a := App{AuditMaxSize: "25%", Storage: "redis://localhost:35001/0"}
	if err := a.validateAuditMaxSize(); err == nil || !strings.Contains(err.Error(), "Redis") {
		t.Errorf("audit_max_size 25%% with Redis: %v; want an error", err)
	}
}

// TestAuditMaxSizeDefault: with Badger the default is a quarter of the
// size of data_dir's file system, with Redis none; a size is taken as it
// is, and off is none.
func TestAuditMaxSizeDefault(t *testing.T) {
	dir := t.TempDir()
	size, ok := diskfree.Size(dir)
	if !ok {
		t.Skip("the size of a file system cannot be told here")
	}
	for _, c := range []struct {
		option, storage string
		want            int64
	}{
		{"", "", int64(size / 100 * 25)},
		{"", "redis://localhost:35001/0", 0},
		{"10%", "", int64(size / 100 * 10)},
		{"1MiB", "redis://localhost:35001/0", 1 << 20},
		{"off", "", 0},
	} {
		a := App{AuditMaxSize: c.option, Storage: c.storage, DataDir: dir, logger: zap.NewNop()}
		if got := a.auditMaxBytes(); got != c.want {
			t.Errorf("audit_max_size %q, storage %q: %d bytes; want %d", c.option, c.storage, got, c.want)
		}
	}
}
