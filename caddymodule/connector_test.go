package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestConnectorOptions(t *testing.T) {
	var a App
	d := caddyfile.NewTestDispenser(`gatehouse {
		connector_cert_validity 720h
		connector_servers https://gw.example.com:8443 https://gw2.example.com
	}`)
	if err := a.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if time.Duration(a.ConnectorCertValidity) != 720*time.Hour || len(a.ConnectorServers) != 2 {
		t.Fatalf("parsed validity %v, servers %v", a.ConnectorCertValidity, a.ConnectorServers)
	}
	if err := a.validateConnectorOptions(); err != nil {
		t.Fatal(err)
	}
	for _, short := range []time.Duration{70 * time.Second, 59 * time.Minute, -time.Hour} {
		a := App{ConnectorCertValidity: caddy.Duration(short)}
		if err := a.validateConnectorOptions(); err == nil || !strings.Contains(err.Error(), "at least 1h") {
			t.Errorf("connector_cert_validity %v accepted: %v", short, err)
		}
	}
	for _, bad := range []string{"gw.example.com", "http://gw.example.com", "https://gw.example.com/path", "https://user@gw.example.com", "https://"} {
		a := App{ConnectorServers: []string{bad}}
		if err := a.validateConnectorOptions(); err == nil || !strings.Contains(err.Error(), "connector_servers") {
			t.Errorf("connector_servers %q accepted: %v", bad, err)
		}
	}
}

func TestConnectorCAPoolCaddyfile(t *testing.T) {
	var p ConnectorCAPool
	if err := p.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`gatehouse_connectors`)); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(p) //nolint:staticcheck // SA9005: the test checks that it marshals to {}
	if string(raw) != "{}" {
		t.Errorf("the pool has configuration %s; want none", raw)
	}
	for _, bad := range []string{"gatehouse_connectors extra", "gatehouse_connectors {\n\tfile x\n}"} {
		if err := new(ConnectorCAPool).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
