package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/plugin/connector"
)

// TestConnectorsPageShowsThePagesTokens: the connectors page shows 25
// connectors a page, and the live token pairs of those connectors alone,
// at most tokensPerConnector of each with a note saying how many more
// and how to list them; not every live pair of every connector. Its
// forms post back to the page they are on.
func TestConnectorsPageShowsThePagesTokens(t *testing.T) {
	ctx := context.Background()
	e, b := newBrowser(t)
	p := connectorPlugin(t, e, nil)
	b.c.admin = adminapi.NewHandler(e, adminapi.NewCore(e), p)
	pairs := map[string]int{"c-00": tokensPerConnector + 2, "c-01": 1, "c-27": 2}
	ids := map[string][]string{}
	for i := range 30 {
		name := fmt.Sprintf("c-%02d", i)
		if _, err := p.Create(ctx, connector.CreateRequest{Name: name, Username: "bob"}); err != nil {
			t.Fatal(err)
		}
		if _, err := connector.SeedTokens(ctx, e.Store, name, pairs[name], time.Hour); err != nil {
			t.Fatal(err)
		}
		live, err := p.ListTokens(ctx, name, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range live {
			ids[name] = append(ids[name], v.ID)
		}
	}
	shown := func(page string) int { return strings.Count(page, `value="revoke-token"`) }

	first := b.get(Prefix + "connectors")
	if !strings.Contains(first, "c-24") || strings.Contains(first, "c-25") || !strings.Contains(first, `id="next-page"`) {
		t.Fatalf("page 1 does not show c-00 to c-24 and a next page:\n%s", first)
	}
	if n := shown(first); n != tokensPerConnector+1 {
		t.Errorf("page 1 shows %d token pairs; want %d (c-00's newest %d, c-01's one)", n, tokensPerConnector+1, tokensPerConnector)
	}
	for _, id := range ids["c-27"] {
		if strings.Contains(first, id) {
			t.Errorf("page 1 shows pair %s of c-27, a connector on page 2", id)
		}
	}
	if !strings.Contains(first, "2 more live token pair(s) of connector c-00 not shown") || !strings.Contains(first, "tokens list --connector c-00") {
		t.Errorf("page 1 does not say that 2 of c-00's pairs are not shown")
	}

	second := b.get(Prefix + "connectors?page=2")
	if !strings.Contains(second, "c-29") || strings.Contains(second, ">c-24<") || shown(second) != 2 {
		t.Fatalf("page 2: want c-25 to c-29 and c-27's 2 pairs, shows %d pairs:\n%s", shown(second), second)
	}
	for _, id := range ids["c-27"] {
		if !strings.Contains(second, id) {
			t.Errorf("page 2 does not show pair %s of c-27", id)
		}
	}
	if strings.Contains(second, "not shown") || !strings.Contains(second, `action="/gatehouse/console/connectors?page=2"`) {
		t.Errorf("page 2: a note of pairs not shown, or forms that do not post back to page 2")
	}

	// Revoking a pair from page 2 answers page 2, without the pair.
	gone := ids["c-27"][0]
	w := b.post(Prefix+"connectors?page=2", url.Values{"action": {"revoke-token"}, "id": {gone}, "nonce": {nonce()}})
	if after := w.Body.String(); w.Code != http.StatusOK || !strings.Contains(after, "c-29") || shown(after) != 1 || !strings.Contains(after, "Token pair "+gone+" revoked.") {
		t.Errorf("revoking %s on page 2: %d, %d pairs shown\n%s", gone, w.Code, shown(after), after)
	}
}

// connectorPlugin is a connector plugin registered on e, its CA in a
// temporary directory, offering packages for servers (nil: none).
func connectorPlugin(t *testing.T, e *engine.Engine, servers []string) *connector.Plugin {
	t.Helper()
	ca, err := connector.OpenCA(t.TempDir(), e.Keystore)
	if err != nil {
		t.Fatal(err)
	}
	p, err := connector.New(context.Background(), e, connector.Options{CA: ca, Servers: func() []string { return servers }})
	if err != nil {
		t.Fatal(err)
	}
	e.Register(p)
	return p
}
