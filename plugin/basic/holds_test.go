package basic

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/storage/counters"
)

// relay carries news to other instances, as the channel of a store they
// share (Redis) does.
type relay []*Credential

// Announce implements storage.Announcer.
func (r relay) Announce(_ context.Context, news string) error {
	for _, c := range r {
		c.heard(news)
	}
	return nil
}

// Listen implements storage.Announcer: the instances are told directly.
func (relay) Listen(func(string)) func() { return func() {} }

// linked returns the instance that b's route uses and another on b's
// store, each telling the other its news.
func linked(b *basicRoute) (first, other *Credential) {
	kind, _ := b.e.Credential(identity.MethodBasic)
	first, other = kind.(*Credential), New(b.e)
	first.news, other.news = relay{other}, relay{first}
	return first, other
}

// TestAnotherInstanceHoldsWhatOneSpends: two instances share the store.
// Alice's right password is in the other instance's verification cache.
// The guesser's wrong passwords at the first, up to the one that spends
// the name's count (the shared Basic count: ten; failed_binds: four)
// and no further, have the other hold the name too: his next try there,
// with the right password, is refused (429) as it is at the first,
// though the other never counted a try of the name, and so is it at the
// first. Alice's own network is still answered there from its cache. Before, the other answered
// that right guess from its cache (200), and again each time its own
// hold had ended while the guesser kept the count spent at the first.
func TestAnotherInstanceHoldsWhatOneSpends(t *testing.T) {
	for _, tc := range spendings {
		t.Run(tc.name, func(t *testing.T) {
			b := aliceAtHome(t, 10)
			if tc.binds > 0 {
				b.withDirectory(tc.binds)
			}
			_, other := linked(b)
			if got := b.authenticate(other, "alice", password, home); got != "200" {
				t.Fatalf("alice at home on the other instance: %s", got)
			}
			for i := range tc.guesses {
				if got := answer(b.get("alice", fmt.Sprintf("guess %d", i), guesser)); got != "401" {
					t.Fatalf("guess %d at the first instance: %s; want 401", i, got)
				}
			}
			if got := b.authenticate(other, "alice", password, guesser); got != tc.want {
				t.Errorf("the right password from the guesser at the other instance: %s; want %s", got, tc.want)
			}
			if got := answer(b.get("alice", password, guesser)); got != tc.want {
				t.Errorf("the right password from the guesser at the first instance: %s; want %s", got, tc.want)
			}
			if got := b.authenticate(other, "alice", password, home); got != "200" {
				t.Errorf("alice at home on the other instance: %s; want 200", got)
			}
		})
	}
}

// TestAFamiliarSignInFindsTheCountSpent: an instance that did not hear
// that a name's count was spent (started, or reloaded, after the news;
// its subscription down then) and caches alice's password at a sign-in
// from her own network, which that count does not hold, holds the count
// all the same: her right password from the guesser is refused there
// (429), not answered from its cache. Before, it was, until the
// instance found the count spent itself.
func TestAFamiliarSignInFindsTheCountSpent(t *testing.T) {
	for _, tc := range spendings {
		t.Run(tc.name, func(t *testing.T) {
			b := aliceAtHome(t, 10)
			if tc.binds > 0 {
				b.withDirectory(tc.binds)
			}
			for i := range tc.guesses {
				b.get("alice", fmt.Sprintf("guess %d", i), guesser)
			}
			started := New(b.e) // after the news
			if got := b.authenticate(started, "alice", password, home); got != "200" {
				t.Fatalf("alice at home on the instance started since: %s", got)
			}
			if got := b.authenticate(started, "alice", password, guesser); got != tc.want {
				t.Errorf("the right password from the guesser there: %s; want %s", got, tc.want)
			}
			if got := b.authenticate(started, "alice", password, home); got != "200" {
				t.Errorf("alice at home there again: %s; want 200", got)
			}
		})
	}
}

// TestAHoldOutlastsAFloodOfOtherNames: the holds an instance keeps are
// bounded (65 536), but a flood of holds of other names (their counts
// spent by guesses at any instance of the cluster: here 200 000 names'
// news) does not push out the hold of a name with a success in its
// verification cache: the right password from the guesser is still
// refused. Before, the flood pushed it out, and the cache answered.
func TestAHoldOutlastsAFloodOfOtherNames(t *testing.T) {
	b := aliceAtHome(t, 10)
	first, other := linked(b)
	if got := b.authenticate(other, "alice", password, home); got != "200" {
		t.Fatalf("alice at home on the other instance: %s", got)
	}
	for i := range 10 {
		b.get("alice", fmt.Sprintf("guess %d", i), guesser)
	}
	for i := range 200_000 {
		name := fmt.Sprintf("flood%d", i)
		_ = relay{first, other}.Announce(context.Background(), holdNews(name, counters.BasicFailures(name), time.Minute))
	}
	for _, c := range []*Credential{first, other} {
		if got := b.authenticate(c, "alice", password, guesser); got != "429 Retry-After 60" {
			t.Errorf("the right password from the guesser after the flood: %s; want 429 Retry-After 60", got)
		}
	}
}

// TestNewsOfOtherThingsIsIgnored: news that is no hold, or the hold of a
// key that is not one of the name's counters, holds nothing.
func TestNewsOfOtherThingsIsIgnored(t *testing.T) {
	b := aliceAtHome(t, 10)
	_, other := linked(b)
	for _, news := range []string{
		"something else",
		holdNews("alice", counters.BasicFailures("bob"), time.Minute),
		holdNews("alice", "users/alice", time.Minute),
		holdNews("alice", counters.BasicNetworkFailuresOf("alice"), time.Minute),
		holdNewsPrefix + "x/alice/" + counters.BasicFailures("alice"),
		holdNewsPrefix + "-5/alice/" + counters.BasicFailures("alice"),
	} {
		other.heard(news)
	}
	if other.throttledEnd.Load() != 0 {
		t.Fatalf("news of other things held something until %d", other.throttledEnd.Load())
	}
	other.heard(holdNews("alice", counters.BasicNetworkFailures("alice", "203.0.113.0"), time.Minute))
	if other.throttledEnd.Load() == 0 {
		t.Fatal("the hold of a network count of alice held nothing")
	}
}

// TestHoldsGoWithTheLastEntry: the holds kept with a name's entries in
// the verification cache are dropped, name and all, once no entry is
// left: what the instance keeps for them is bounded by its entries.
func TestHoldsGoWithTheLastEntry(t *testing.T) {
	b := aliceAtHome(t, 10)
	first, _ := linked(b)
	if first.holds.lookup("alice") == nil {
		t.Fatal("alice's entry has no holds")
	}
	first.verified.Purge()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		runtime.GC()
		first.holds.mu.Lock()
		left := len(first.holds.byName)
		first.holds.mu.Unlock()
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d names still indexed 10 s after the last entry went", left)
		}
	}
}

// spendings are the counts a guesser spends, each with the failed_binds
// bound of its directory (0: none), the wrong passwords that spend it
// and the answer to a right one then.
var spendings = []struct {
	name    string
	binds   int
	guesses int
	want    string
}{
	{"the Basic count", 0, 10, "429 Retry-After 60"},
	{"failed_binds", 4, 4, "429 Retry-After 900"},
}
