package caddymodule

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the caddyfile adapter
	_ "github.com/caddyserver/caddy/v2/modules/standard"          // reverse_proxy, tls, …
)

const caddyfileReference = "../docs/operators/caddyfile.md"

// TestCaddyfileReferenceIsComplete checks docs/operators/caddyfile.md
// against the parsing code: every option a Caddyfile parser of this
// package accepts (its `case "name":` labels) must be named on the page in
// backquoted text, and every caddyfile block of the page must adapt.
func TestCaddyfileReferenceIsComplete(t *testing.T) {
	raw, err := os.ReadFile(caddyfileReference)
	if err != nil {
		t.Fatal(err)
	}
	page := string(raw)
	label := regexp.MustCompile(`case "([a-z_]+)"`)
	options := 0
	for _, src := range []string{"caddyfile.go", "twofactor.go", "directory.go"} {
		code, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range label.FindAllStringSubmatch(string(code), -1) {
			options++
			if !regexp.MustCompile("`[^`\n]*\\b" + m[1] + "\\b").MatchString(page) {
				t.Errorf("option %q of %s is not in %s", m[1], src, caddyfileReference)
			}
		}
	}
	if options < 25 {
		t.Fatalf("found only %d options in the parsers", options)
	}
	blocks := 0
	for _, part := range strings.Split(page, "```caddyfile\n")[1:] {
		block, _, ok := strings.Cut(part, "\n```")
		if !ok {
			t.Fatalf("unclosed caddyfile block: %.80q", part)
		}
		blocks++
		_, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(block+"\n"), nil)
		if err != nil {
			t.Errorf("this block does not adapt: %v\n%s", err, block)
		}
		for _, w := range warnings {
			if !strings.Contains(w.Message, "not formatted") { // the page aligns columns
				t.Errorf("this block adapts with warning %v\n%s", w, block)
			}
		}
	}
	if blocks < 5 {
		t.Errorf("only %d caddyfile blocks", blocks)
	}
}
