package basic

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/directory/slapdtest"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/storage/counters"
)

// answer is how a request was answered, as a guesser sees it: the
// status, and for a 429 its Retry-After.
func answer(w *httptest.ResponseRecorder) string {
	if w.Code == http.StatusTooManyRequests {
		return fmt.Sprintf("429 Retry-After %s", w.Header().Get("Retry-After"))
	}
	return fmt.Sprint(w.Code)
}

// authenticate is what the instance c (Basic of another Caddy sharing
// b's store, as on Redis) answers the credentials from addr.
func (b *basicRoute) authenticate(c *Credential, user, pass, addr string) string {
	r := httptest.NewRequest("GET", "/x", nil)
	r.RemoteAddr = addr
	r.SetBasicAuth(user, pass)
	_, err := c.Authenticate(r)
	refusal, refused := identity.AsRefusal(err)
	switch {
	case err == nil:
		return "200"
	case !refused:
		b.t.Fatalf("%s from %s: %v", user, addr, err)
	case refusal.RetryAfter > 0:
		return fmt.Sprintf("429 Retry-After %d", int(refusal.RetryAfter.Seconds()))
	}
	return "401"
}

// checkedUntilThrottled sends wrong passwords for user from addr until
// one is refused unchecked (429), and returns how many were checked (401)
// and that 429's Retry-After.
func (b *basicRoute) checkedUntilThrottled(user, addr string) (int, string) {
	b.t.Helper()
	for i := range 100 {
		w := b.get(user, fmt.Sprintf("guess %d from %s", i, addr), addr)
		switch w.Code {
		case http.StatusUnauthorized:
		case http.StatusTooManyRequests:
			return i, w.Header().Get("Retry-After")
		default:
			b.t.Fatalf("guess %d at %s from %s: %d %s", i, user, addr, w.Code, w.Body)
		}
	}
	b.t.Fatalf("100 wrong passwords at %s from %s, none throttled", user, addr)
	return 0, ""
}

// TestGuessesAtALocalAccountWithADirectory: with a directory configured
// (failed_binds 4 in 15 minutes), a local account's name takes, within a
// window, the Basic limit's wrong passwords from each of its familiar
// networks (ten a minute, as without a directory: a client sharing a
// user's NAT) and failed_binds' four from everywhere else together, each
// bound apart; past either its 429 says its own window.
func TestGuessesAtALocalAccountWithADirectory(t *testing.T) {
	const limit = 10
	b := aliceAtHome(t, limit)
	b.withDirectory(4)
	if n, after := b.checkedUntilThrottled("alice", home); n != limit || after != "60" {
		t.Errorf("from alice's familiar network: %d checked, then Retry-After %s; want %d, then 60", n, after, limit)
	}
	if n, after := b.checkedUntilThrottled("alice", guesser); n != 4 || after != "900" {
		t.Errorf("from elsewhere: %d checked, then Retry-After %s; want 4, then 900", n, after)
	}
}

// TestFailedBindsTellNothingOfLocalAccounts: a guesser on a network
// familiar to nobody gets the same answers for a local account's name, a
// directory account's and a name nobody has, whatever the accounts' own
// devices do meanwhile on their familiar networks (a sign-in at home
// after each guess). The directory account's devices stay bound: once
// the name's failed_binds are spent, its cached right password at home,
// a sign-in at home and one under the entry's other name get 429 with
// the bound's window.
func TestFailedBindsTellNothingOfLocalAccounts(t *testing.T) {
	b := aliceAtHome(t, 10)
	srv := b.withDirectory(4)
	dn := srv.AddUser("dave", password, "", slapdtest.OperatorsDN)
	srv.Modify("dn: " + dn + "\nchangetype: modify\nadd: uid\nuid: davey\n")
	if w := b.get("dave", password, home); w.Code != http.StatusOK {
		t.Fatalf("dave at home: %d %s", w.Code, w.Body)
	}
	var seen []string
	for _, name := range []string{"alice", "dave", "zed"} {
		var guessed, atHome []string
		for i := range 6 {
			guessed = append(guessed, answer(b.get(name, fmt.Sprintf("guess %d", i), guesser)))
			if name != "zed" {
				atHome = append(atHome, answer(b.get(spelling(name, i+1), password, home)))
			}
		}
		if seen == nil {
			seen = guessed
		} else if !slices.Equal(guessed, seen) {
			t.Errorf("the guesser's answers for %s: %v; for alice %v", name, guessed, seen)
		}
		t.Logf("%s: the guesser got %v, the sign-ins at home %v", name, guessed, atHome)
	}
	spent := "429 Retry-After 900"
	for _, user := range []string{"dave", spelling("dave", 9), "davey"} {
		if got := answer(b.get(user, password, home)); got != spent {
			t.Errorf("%s's right password at home, dave's failed_binds spent: %s; want %s", user, got, spent)
		}
	}
}

// TestAnotherInstanceHoldsTheBoundOfALocalAccount: two instances share
// the store (Redis). Once guesses spent a local account's failed_binds,
// its sign-ins on its familiar network at either instance succeed but
// take nothing off the bound that instance holds: the right password
// from elsewhere stays refused there, cached or not.
func TestAnotherInstanceHoldsTheBoundOfALocalAccount(t *testing.T) {
	b := aliceAtHome(t, 10)
	b.withDirectory(4)
	other := New(b.e)
	spent := "429 Retry-After 900"
	if got := b.authenticate(other, "alice", password, home); got != "200" {
		t.Fatalf("alice at home on the other instance: %s", got)
	}
	if n, after := b.checkedUntilThrottled("alice", guesser); n != 4 || after != "900" {
		t.Fatalf("from elsewhere: %d checked, then Retry-After %s; want 4, then 900", n, after)
	}
	if got := b.authenticate(other, "alice", "a guess at the other instance", guesser); got != spent {
		t.Fatalf("a guess at the other instance: %s; want %s", got, spent)
	}
	for i := 1; i <= 3; i++ {
		if got := b.authenticate(other, spelling("alice", i), password, home); got != "200" {
			t.Fatalf("a sign-in at home on the other instance, the bound spent: %s; want 200", got)
		}
		for _, user := range []string{"alice", spelling("alice", i)} {
			// 429 either way: by now the guesser's tries spent the
			// name's shared Basic count too (Retry-After 60).
			if got := b.authenticate(other, user, password, guesser); !strings.HasPrefix(got, "429") {
				t.Fatalf("round %d: %s's right password from elsewhere at the other instance: %s; want 429", i, user, got)
			}
			if got := answer(b.get(user, password, guesser)); !strings.HasPrefix(got, "429") {
				t.Fatalf("round %d: %s's right password from elsewhere: %s; want 429", i, user, got)
			}
		}
	}
}

// TestAnOldAccountsFamiliarNetworksAreNotSpared: networks familiar to a
// local account earn nothing once its password changes, once it is
// deleted and created again, or once its name is a directory account's
// (either way): guesses elsewhere that spend the name's failed_binds
// refuse the new password there too.
func TestAnOldAccountsFamiliarNetworksAreNotSpared(t *testing.T) {
	b := newBasicRoute(t, engine.Config{BasicFailureLimit: 10}, nil, "alice", "bella", "carl")
	srv := b.withDirectory(4)
	srv.AddUser("dora", "dora password", "", slapdtest.OperatorsDN)
	ctx := context.Background()
	for _, name := range []string{"alice", "bella", "carl"} {
		if w := b.get(name, password, home); w.Code != http.StatusOK {
			t.Fatalf("%s at home: %d %s", name, w.Code, w.Body)
		}
	}
	if w := b.get("dora", "dora password", home); w.Code != http.StatusOK {
		t.Fatalf("dora at home: %d %s", w.Code, w.Body)
	}
	changed := "battery staple"
	if _, err := b.e.Accounts.UpdateUser(ctx, "alice", account.UserPatch{Password: &changed}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bella", "carl", "dora"} {
		if err := b.e.Accounts.DeleteUser(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	pw := password
	if _, err := b.e.Accounts.CreateUser(ctx, account.NewUser{Username: "bella", Roles: []string{"reader"}, Password: &pw}); err != nil {
		t.Fatal(err)
	}
	srv.AddUser("carl", "carl password", "", slapdtest.OperatorsDN)
	srv.Modify("dn: uid=dora," + slapdtest.PeopleDN + "\nchangetype: delete\n")
	if _, err := b.e.Accounts.CreateUser(ctx, account.NewUser{Username: "dora", Roles: []string{"reader"}, Password: &pw}); err != nil {
		t.Fatal(err)
	}
	spent := "429 Retry-After 900"
	for name, now := range map[string]string{"alice": changed, "bella": password, "carl": "carl password", "dora": password} {
		if n, after := b.checkedUntilThrottled(name, guesser); n != 4 || after != "900" {
			t.Fatalf("%s from elsewhere: %d checked, then Retry-After %s; want 4, then 900", name, n, after)
		}
		if got := answer(b.get(name, now, home)); got != spent {
			t.Errorf("%s's password now at home, familiar to the account before: %s; want %s", name, got, spent)
		}
	}
}

// TestAnotherInstanceHoldsTheBoundPastTheMinutesCount: two instances
// share the store (Redis). A guesser who spent a name's failed_binds at
// one instance and keeps the name's shared Basic count past its limit
// there is refused at the other instance by that count first; the other
// instance holds failed_binds all the same (Retry-After 900), so once
// the minute's count ends its cache does not answer the right password
// from elsewhere. Before, it held the minute's count alone, and answered
// a right guess from its cache once a minute while failed_binds were
// spent (an outside review: 3 of 3 minutes, alice using the other
// instance from home meanwhile).
func TestAnotherInstanceHoldsTheBoundPastTheMinutesCount(t *testing.T) {
	const limit = 10
	b := aliceAtHome(t, limit)
	b.withDirectory(4)
	other := New(b.e)
	if got := b.authenticate(other, "alice", password, home); got != "200" {
		t.Fatalf("alice at home on the other instance: %s", got)
	}
	if n, after := b.checkedUntilThrottled("alice", guesser); n != 4 || after != "900" {
		t.Fatalf("from elsewhere: %d checked, then Retry-After %s; want 4, then 900", n, after)
	}
	for i := range limit { // the shared count past its limit too
		b.get("alice", fmt.Sprintf("one more %d", i), guesser)
	}
	if got := b.authenticate(other, "alice", "a guess at the other instance", guesser); got != "429 Retry-After 900" {
		t.Errorf("a guess at the other instance past both: %s; want 429 Retry-After 900", got)
	}
	// The minute's end, as the other instance sees it: the shared count
	// gone from the store and from what the instance holds.
	if err := b.e.Store.Delete(context.Background(), counters.BasicFailures("alice")); err != nil {
		t.Fatal(err)
	}
	other.throttled.Remove(counters.BasicFailures("alice"))
	if got := b.authenticate(other, "alice", password, guesser); got != "429 Retry-After 900" {
		t.Errorf("the right password from elsewhere at the other instance, failed_binds spent: %s; want 429 Retry-After 900", got)
	}
	if got := b.authenticate(other, "alice", password, home); got != "200" {
		t.Errorf("alice at home on the other instance: %s; want 200", got)
	}
}

// TestARefreshEndsAnOldDirectoryPassword: a directory account's
// password changed in the directory still signs in from the verification
// cache within status_ttl (an hour here), but once an administrator
// refreshes the account (the admin API's POST
// /gatehouse/directory/refresh, on any instance sharing the store) the
// old password is bound again at its next use, refused, and the new one
// signs in; an open stream's check refuses the old one as well. Before,
// the refresh read the account again but left the cached success,
// which answered the old password until status_ttl.
func TestARefreshEndsAnOldDirectoryPassword(t *testing.T) {
	ctx := context.Background()
	b := newBasicRoute(t, engine.Config{}, nil)
	srv := b.withDirectory(4)
	dn := srv.AddUser("gina", "gina password", "", slapdtest.OperatorsDN)
	if w := b.get("gina", "gina password", home); w.Code != http.StatusOK {
		t.Fatalf("gina before: %d %s", w.Code, w.Body)
	}
	srv.Modify("dn: " + dn + "\nchangetype: modify\nreplace: userPassword\nuserPassword: gina's new password\n")
	if w := b.get("gina", "gina password", home); w.Code != http.StatusOK {
		t.Fatalf("the old password within status_ttl, not refreshed: %d; want 200 from the cache", w.Code)
	}
	u, err := b.e.Accounts.UserByCanonicalName(ctx, "gina")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.e.Accounts.RefreshDirectoryAccount(ctx, u); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/x", nil)
	r.SetBasicAuth("gina", "gina password")
	if _, err := b.cred.Recheck(r); err == nil {
		t.Error("an open stream's check passed the old password after the refresh")
	}
	if w := b.get("gina", "gina password", home); w.Code != http.StatusUnauthorized {
		t.Errorf("the old password after the refresh: %d %s; want 401", w.Code, w.Body)
	}
	if w := b.get("gina", "gina's new password", home); w.Code != http.StatusOK {
		t.Errorf("the new password after the refresh: %d %s", w.Code, w.Body)
	}
}
