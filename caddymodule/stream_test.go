package caddymodule

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestStreamRecheckOption(t *testing.T) {
	for in, want := range map[string]caddy.Duration{"90s": caddy.Duration(90 * time.Second), "1s": caddy.Duration(time.Second), "off": -1} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\naccept basic\nstream_recheck " + in + "\n}")); err != nil || h.StreamRecheck != want {
			t.Errorf("stream_recheck %s: %v %v", in, h.StreamRecheck, err)
		}
		opts, err := h.routeOptions()
		if err != nil || opts.StreamRecheck != time.Duration(want) {
			t.Errorf("stream_recheck %s: route options %v %v", in, opts.StreamRecheck, err)
		}
	}
	for _, bad := range []string{"stream_recheck", "stream_recheck 10ms", "stream_recheck 0", "stream_recheck -5s", "stream_recheck soon", "stream_recheck 1m 2m", "stream_recheck off 1m"} {
		if err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser("gatehouse {\n" + bad + "\n}")); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// JSON written by hand is checked at provisioning.
	var h Handler
	if err := json.Unmarshal([]byte(`{"accept":["basic"],"stream_recheck":"100ms"}`), &h); err != nil {
		t.Fatal(err)
	}
	if _, err := h.routeOptions(); err == nil {
		t.Error("a check every 100ms was accepted")
	}
}
