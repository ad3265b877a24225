package caddymodule

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/plugin"
)

// parseHandlerOptions reads a gatehouse directive and returns the
// handler's route options as Provision checks them.
func parseHandlerOptions(t *testing.T, directive string) (*Handler, error) {
	t.Helper()
	h := new(Handler)
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(directive)); err != nil {
		return h, err
	}
	_, err := h.routeOptions()
	return h, err
}

// TestEveryKindIsAccepted: a route's accept option takes every kind of
// the list, alone or all together.
func TestEveryKindIsAccepted(t *testing.T) {
	var all []string
	for _, k := range credentialKinds {
		all = append(all, string(k.name))
		if _, err := parseHandlerOptions(t, "gatehouse {\n\taccept "+string(k.name)+"\n}"); err != nil {
			t.Errorf("accept %s: %v", k.name, err)
		}
	}
	h, err := parseHandlerOptions(t, "gatehouse {\n\taccept "+strings.Join(all, " ")+"\n}")
	if err != nil || !slices.Equal(h.Accept, all) {
		t.Errorf("accept %v: %v, parsed %v", all, err, h.Accept)
	}
}

// TestUnknownKindsAreRefusedWithTheList: a kind not in the list, or no
// kind, is refused by a message naming every kind of the list.
func TestUnknownKindsAreRefusedWithTheList(t *testing.T) {
	var names []string
	for _, k := range credentialKinds {
		names = append(names, string(k.name))
	}
	list := strings.Join(names, ", ")
	first := names[0]
	for directive, want := range map[string]string{
		"gatehouse {\n\taccept " + first + " no_such_kind\n}":     `unknown credential kind "no_such_kind" (known: ` + list + ")",
		"gatehouse {\n\tpublic /healthz\n}":                       "accept lists no credential kind; use one or more of " + list,
		"gatehouse {\n\taccept " + strings.ToUpper(first) + "\n}": `unknown credential kind "` + strings.ToUpper(first) + `" (known: ` + list + ")",
	} {
		if _, err := parseHandlerOptions(t, directive); err == nil || err.Error() != want {
			t.Errorf("%q: error %v, want %q", directive, err, want)
		}
	}
}

// TestEveryKindBuildsUnderItsName builds every kind of the list on a real
// engine, as the app starts them: each credential carries its name, the
// names are distinct, and a route accepting all of them in any order asks
// them in the list's order (cheapest first), as the order of its 401
// challenges shows.
func TestEveryKindBuildsUnderItsName(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	a := &App{DataDir: t.TempDir()}
	twoFactor, _ := startTwoFactor(e, a)
	var challenges []string
	for _, k := range credentialKinds {
		kind, admin, err := k.build(kindDeps{ctx: context.Background(), engine: e, app: a, twoFactor: twoFactor})
		if err != nil {
			t.Fatalf("building %s: %v", k.name, err)
		}
		if c, ok := admin.(io.Closer); ok {
			t.Cleanup(func() { _ = c.Close() })
		}
		if kind.Method() != k.name {
			t.Errorf("the kind listed as %q builds a credential of method %q", k.name, kind.Method())
		}
		if _, dup := e.Credential(k.name); dup {
			t.Errorf("kind %q is listed twice", k.name)
		}
		e.Register(kind)
		if ch, ok := kind.(plugin.Challenger); ok {
			challenges = append(challenges, ch.Challenge())
		}
	}
	accept := slices.Clone(kindNames())
	slices.Reverse(accept)
	route, err := e.NewRoute(engine.RouteOptions{Accept: accept})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	if err := route.Serve(w, httptest.NewRequest("GET", "/", nil), nil); err != nil {
		t.Fatal(err)
	}
	if got := w.Header().Values("WWW-Authenticate"); w.Code != http.StatusUnauthorized || !slices.Equal(got, challenges) {
		t.Errorf("status %d, challenges %q; want 401 with %q", w.Code, got, challenges)
	}
}

// TestKindsAreDocumented: every place that names the kinds for a reader
// names each kind of the list, and each kind's directive sub-options are
// documented and do not collide with the directive's own options.
func TestKindsAreDocumented(t *testing.T) {
	read := func(path string) string {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(raw)
	}
	caddyfileGo := read("caddyfile.go")
	places := map[string]string{
		"the accept row of " + caddyfileReference:     regexp.MustCompile("(?m)^\\| `accept .*$").FindString(read(caddyfileReference)),
		"the Accept field's doc comment (handler.go)": regexp.MustCompile(`(?s)// Accept lists.*?Accept \[\]string`).FindString(read("handler.go")),
		"parseHandler's doc comment (caddyfile.go)":   regexp.MustCompile(`(?m)^//\s+accept\s+.*$`).FindString(caddyfileGo),
		"the package doc of plugin/plugin.go":         strings.Split(read("../plugin/plugin.go"), "\npackage plugin")[0],
	}
	for place, text := range places {
		if text == "" {
			t.Errorf("%s not found", place)
			continue
		}
		for _, k := range credentialKinds {
			if !regexp.MustCompile(`\b` + string(k.name) + `\b`).MatchString(text) {
				t.Errorf("%s does not name the kind %q", place, k.name)
			}
		}
	}
	page := read(caddyfileReference)
	for _, k := range credentialKinds {
		for opt := range k.routeOptions {
			if !regexp.MustCompile("`[^`\n]*\\b" + opt + "\\b").MatchString(page) {
				t.Errorf("option %q of kind %s is not in %s", opt, k.name, caddyfileReference)
			}
			if strings.Contains(caddyfileGo, `case "`+opt+`"`) {
				t.Errorf("option %q of kind %s is also an option of caddyfile.go, which would shadow it", opt, k.name)
			}
		}
	}
}

// TestKindRouteOptionsParse: a kind's sub-option is parsed into the
// handler like the directive's own options, and refused when malformed.
func TestKindRouteOptionsParse(t *testing.T) {
	h, err := parseHandlerOptions(t, "gatehouse {\n\taccept app_key\n\tappkey_query off\n}")
	if err != nil || !h.NoAppKeyQuery {
		t.Errorf("appkey_query off: %v, NoAppKeyQuery %v", err, h.NoAppKeyQuery)
	}
	for _, bad := range []string{"appkey_query", "appkey_query maybe", "appkey_query on off", "appkey_queries off"} {
		if _, err := parseHandlerOptions(t, "gatehouse {\n\taccept app_key\n\t"+bad+"\n}"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
