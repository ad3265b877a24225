package caddymodule

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the caddyfile adapter
	_ "github.com/caddyserver/caddy/v2/modules/standard"          // reverse_proxy, tls, …
)

const (
	caddyfileReference = "../docs/operators/caddyfile.md"
	readme             = "../README.md"
)

// parserOptions are the options the Caddyfile parsers of this package
// accept: their `case "name":` labels.
func parserOptions(t *testing.T) []string {
	t.Helper()
	label := regexp.MustCompile(`case "([a-z_]+)"`)
	var options []string
	for _, src := range []string{"caddyfile.go", "twofactor.go", "directory.go"} {
		code, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range label.FindAllStringSubmatch(string(code), -1) {
			options = append(options, m[1])
		}
	}
	if len(options) < 25 {
		t.Fatalf("found only %d options in the parsers", len(options))
	}
	return options
}

// caddyfileBlocks returns the caddyfile blocks of the page at path, each
// checked to adapt with Caddy's own Caddyfile adapter without a warning.
func caddyfileBlocks(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	for _, part := range strings.Split(string(raw), "```caddyfile\n")[1:] {
		block, _, ok := strings.Cut(part, "\n```")
		if !ok {
			t.Fatalf("%s: unclosed caddyfile block: %.80q", path, part)
		}
		blocks = append(blocks, block)
		checkNoLineSwallowed(t, path, block)
		_, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(block+"\n"), nil)
		if err != nil {
			t.Errorf("%s: this block does not adapt: %v\n%s", path, err, block)
		}
		for _, w := range warnings {
			if !strings.Contains(w.Message, "not formatted") { // the pages align columns
				t.Errorf("%s: this block adapts with warning %v\n%s", path, w, block)
			}
		}
	}
	return blocks
}

// TestCaddyfileReferenceIsComplete checks docs/operators/caddyfile.md
// against the parsing code: every option a Caddyfile parser of this
// package accepts must be named on the page in backquoted text, and every
// caddyfile block of the page must adapt.
func TestCaddyfileReferenceIsComplete(t *testing.T) {
	raw, err := os.ReadFile(caddyfileReference)
	if err != nil {
		t.Fatal(err)
	}
	for _, option := range parserOptions(t) {
		if !regexp.MustCompile("`[^`\n]*\\b" + option + "\\b").Match(raw) {
			t.Errorf("option %q is not in %s", option, caddyfileReference)
		}
	}
	if blocks := caddyfileBlocks(t, caddyfileReference); len(blocks) < 5 {
		t.Errorf("only %d caddyfile blocks", len(blocks))
	}
}

// TestREADMECaddyfileHasEveryOption: README.md's Caddyfile shows every
// option the parsers accept, and adapts.
func TestREADMECaddyfileHasEveryOption(t *testing.T) {
	all := strings.Join(caddyfileBlocks(t, readme), "\n")
	for _, option := range parserOptions(t) {
		if !regexp.MustCompile(`\b` + option + `\b`).MatchString(all) {
			t.Errorf("option %q is not in a caddyfile block of %s", option, readme)
		}
	}
}

// checkNoLineSwallowed fails t for a line of the Caddyfile text (from
// the file at path) with a backslash outside quotes: one ending a line
// joins the next line to it, and so does one anywhere in a comment, or
// before one (Caddy's lexer keeps the escape until the newline), so the
// option on the next line silently becomes arguments of this one.
func checkNoLineSwallowed(t *testing.T, path, text string) {
	t.Helper()
	for line := range strings.SplitSeq(text, "\n") {
		quote := rune(0)
		for _, ch := range line {
			switch {
			case quote != 0 && ch == quote:
				quote = 0
			case quote == 0 && (ch == '"' || ch == '`'):
				quote = ch
			case quote == 0 && ch == '\\':
				t.Errorf("%s: a backslash outside quotes, which may swallow the next line: %q", path, line)
			}
		}
	}
}

// TestNoCaddyfileLineSwallowsTheNext: no Caddyfile an operator copies
// (Caddyfile.example, the caddyfile blocks of every page of docs/) has a
// line that swallows the next (checkNoLineSwallowed).
func TestNoCaddyfileLineSwallowsTheNext(t *testing.T) {
	raw, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	checkNoLineSwallowed(t, "Caddyfile.example", string(raw))
	pages, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("../docs/operators/*.md")
	for _, page := range append(pages, more...) {
		raw, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range strings.Split(string(raw), "```caddyfile\n")[1:] {
			block, _, _ := strings.Cut(part, "\n```")
			checkNoLineSwallowed(t, page, block)
		}
	}
	if len(pages)+len(more) < 10 {
		t.Fatalf("found only %d pages", len(pages)+len(more))
	}
}
