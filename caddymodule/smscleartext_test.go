package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestSMSWebhookInClearIsWarnedOf: an SMS webhook URL that is http:// to
// another machine is warned of when the config loads (its messages carry
// one-time codes and enrolment links, which show an authenticator secret,
// and its headers the gateway's key, all unencrypted), naming the host and
// nothing of the URL's path or query; https:// and http:// to this
// machine are not. Before, nothing was said.
func TestSMSWebhookInClearIsWarnedOf(t *testing.T) {
	for _, c := range []struct {
		url, host string // host: the one the warning names, "" for none
	}{
		{"http://sms-gateway.example.net/send?key=s3cret", "sms-gateway.example.net"},
		{"http://192.0.2.10:8080/send", "192.0.2.10:8080"},
		{"https://sms-gateway.example.net/send?key=s3cret", ""},
		{"http://localhost:9000/send", ""},
		{"http://127.0.0.1:9000/send", ""},
		{"http://[::1]:9000/send", ""},
	} {
		raw, err := json.Marshal(map[string]any{"sender": "webhook", "url": c.url})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		core, logs := observer.New(zap.WarnLevel)
		a := &App{SMSRaw: raw, logger: zap.New(core)}
		err = a.provisionTwoFactor(ctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", c.url, err)
		}
		warned := logs.FilterMessageSnippet("SMS webhook URL is http://").All()
		switch {
		case c.host == "" && len(warned) != 0:
			t.Errorf("%s: warned of: %v", c.url, warned)
		case c.host != "" && len(warned) != 1:
			t.Errorf("%s: %d warnings among %v; want one", c.url, len(warned), logs.All())
		case c.host != "":
			if got := fmt.Sprint(warned[0].ContextMap()); !strings.Contains(got, "host:"+c.host) ||
				strings.Contains(got+warned[0].Message, "s3cret") || strings.Contains(got, "/send") {
				t.Errorf("%s: the warning's fields %s; want the host %s and nothing of the path or query", c.url, got, c.host)
			}
		}
	}
}
