package audit

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// floodLog is a Log on a fresh Badger store storing refusalsPerMinute
// refusals a minute on their own, its structured log observed.
func floodLog(t *testing.T, refusalsPerMinute int) (*Log, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	l := New(badgerStore(t), zap.New(core), Options{Settings: Settings{RefusalsPerMinute: refusalsPerMinute}})
	t.Cleanup(l.Close)
	return l, logs
}

// stored returns every stored event, newest first.
func stored(t *testing.T, l *Log) []Event {
	t.Helper()
	events, err := l.Query(context.Background(), Filter{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// refusal is a refused request from ip.
func refusal(at time.Time, ip, username, path, reason string) Event {
	return Event{Time: at, Kind: "request", Username: username, Credential: "app_key", RemoteIP: ip,
		Method: "GET", Path: path, Outcome: OutcomeDenied, Reason: reason}
}

// TestAFloodOfRefusalsIsSummarised: past a tenth of the allowance from one
// client network, its refusals are counted in one summary per kind,
// network, username, credential and reason, which keeps the fields they
// share and blanks the others; other networks keep their own allowance,
// an IPv6 /64 counts as one client, and events that are not refusals
// (second-factor failures, or made by a console user) are never
// summarised. A Query shows the open summary without storing it; Close
// stores it once. Every refusal is accounted for, and the structured log
// mirrors what is stored.
func TestAFloodOfRefusalsIsSummarised(t *testing.T) {
	parallel(t)
	l, logs := floodLog(t, 100) // 10 a minute from one network
	start := time.Now().UTC()
	at := func(i int) time.Time { return start.Add(time.Duration(i) * time.Millisecond) }
	for i := range 1000 {
		l.Record(refusal(at(i), "192.0.2.1", "mallory", fmt.Sprint("/p/", i), "invalid application key"))
		if i%100 == 99 { // reading shows the open summary, and does not store it
			if got := stored(t, l); got[0].Count != i+1-10 {
				t.Fatalf("after %d refusals the newest event is %+v; want the open summary of %d", i+1, got[0], i+1-10)
			}
		}
	}
	for i := range 12 {
		l.Record(refusal(at(1000+i), fmt.Sprintf("2001:db8::%x", i+1), "bob", "/same", "invalid application key"))
	}
	l.Record(refusal(at(1100), "198.51.100.7", "carol", "/x", "invalid application key"))
	for i := range 30 {
		l.Record(Event{Time: at(1200 + i), Kind: "appkey", Username: "alice", Outcome: OutcomeSuccess, Reason: "created"})
		l.Record(Event{Time: at(1200 + i), Kind: "admin", Username: "alice", Outcome: OutcomeFailure, Actor: "root", Reason: "refused"})
		l.Record(Event{Time: at(1200 + i), Kind: "2fa", Username: "alice", Outcome: OutcomeFailure, Reason: "wrong code"})
	}
	l.Close() // writes the summaries still open

	events := stored(t, l)
	own := map[string]int{}
	summaries := map[string]Event{}
	refusals := 0
	for _, e := range events {
		switch {
		case e.Outcome == OutcomeDenied && e.Count > 0:
			if _, twice := summaries[e.RemoteIP]; twice {
				t.Fatalf("two summaries for %s: %+v", e.RemoteIP, events)
			}
			summaries[e.RemoteIP] = e
			refusals += e.Count
		case e.Outcome == OutcomeDenied:
			own[e.RemoteIP]++
			refusals++
		case e.Count != 0:
			t.Fatalf("an event that is not a refusal was summarised: %+v", e)
		}
	}
	if refusals != 1013 {
		t.Fatalf("the stored events stand for %d refusals, want 1013", refusals)
	}
	if own["192.0.2.1"] != 10 || own["198.51.100.7"] != 1 || len(summaries) != 2 {
		t.Fatalf("own events by address %v, summaries %v; want 10 from the flood, 1 from 198.51.100.7, one summary each for the flood and the /64", own, summaries)
	}
	flood := summaries["192.0.2.1"]
	if flood.Count != 990 || flood.Username != "mallory" || flood.Path != "" || flood.Method != "GET" ||
		flood.Reason != "invalid application key" || flood.Credential != "app_key" || flood.Kind != "request" ||
		!flood.First.Equal(at(10)) || !flood.Time.Equal(at(999)) {
		t.Fatalf("the flood's summary: %+v; want 990 refusals from %v to %v, the paths blank (they differed), the rest kept", flood, at(10), at(999))
	}
	v6, v6Own := summaries["2001:db8::/64"], 0
	for i := range 12 {
		v6Own += own[fmt.Sprintf("2001:db8::%x", i+1)]
	}
	if v6Own != 10 || v6.Count != 2 || v6.Username != "bob" || v6.Path != "/same" {
		t.Fatalf("the /64: own events %v, summary %+v; want its first 10 on their own, 2 summarised with the username and path they share", own, v6)
	}
	if n := logs.FilterMessage("audit").Len(); n != len(events) {
		t.Fatalf("%d structured log lines for %d stored events", n, len(events))
	}
	if len(events) != 10+1+10+1+1+90 {
		t.Fatalf("%d events stored", len(events))
	}
}

// TestTheAllowanceIsSharedAndLastsAMinute: the allowance is for all
// networks together; once the minute is over, the next refusal closes it
// (its summaries are written) and a new one starts.
func TestTheAllowanceIsSharedAndLastsAMinute(t *testing.T) {
	parallel(t)
	l, _ := floodLog(t, 20) // 2 a minute from one network
	start := time.Now().UTC()
	for i := range 30 { // 30 networks, one refusal each, within a second
		l.Record(refusal(start.Add(time.Duration(i)*time.Millisecond), fmt.Sprint("192.0.2.", i), "", "/", "no credential was presented"))
	}
	l.Record(refusal(start.Add(floodWindow), "192.0.2.200", "", "/", "no credential was presented"))
	events := stored(t, l)
	own, counted := 0, 0
	for _, e := range events {
		if e.Count == 0 {
			own++
		}
		counted += max(e.Count, 1)
	}
	if own != 21 || counted != 31 || len(events) != 31 {
		t.Fatalf("%d events on their own, %d events standing for %d refusals; want the first 20 and the next minute's first on their own, the other 10 in a summary each (one per network)", own, len(events), counted)
	}
	if events[0].RemoteIP != "192.0.2.200" || events[0].Count != 0 {
		t.Fatalf("newest %+v; want the next minute's refusal, on its own", events[0])
	}
}

// TestSummariesAreBounded: a flood from more networks than the first
// tiers have summaries for ends in one summary per kind, outcome and
// credential kind.
func TestSummariesAreBounded(t *testing.T) {
	parallel(t)
	l, _ := floodLog(t, 10)
	start := time.Now().UTC()
	const networks = 2000
	for i := range networks {
		ip := fmt.Sprintf("10.%d.%d.1", i/256, i%256)
		l.Record(refusal(start.Add(time.Duration(i)*time.Microsecond), ip, "", "/", "invalid application key"))
	}
	l.Close()
	events := stored(t, l)
	counted := 0
	var rest *Event
	for i, e := range events {
		counted += max(e.Count, 1)
		if e.Count > 1 {
			rest = &events[i]
		}
	}
	if want := 10 + maxFullGroups + maxNetworkGroups + 1; len(events) != want || counted != networks {
		t.Fatalf("%d events standing for %d refusals; want %d for %d", len(events), counted, want, networks)
	}
	if rest == nil || rest.Count != networks-10-maxFullGroups-maxNetworkGroups || rest.RemoteIP != "" ||
		rest.Credential != "app_key" || rest.Reason != "invalid application key" {
		t.Fatalf("the summary of the rest: %+v; want the rest's count, no one address, the credential and reason they share", rest)
	}
}

// TestUnlimitedAndReconfiguredAllowance: a negative allowance stores every
// refusal on its own; a reload's new allowance applies to the next ones.
func TestUnlimitedAndReconfiguredAllowance(t *testing.T) {
	parallel(t)
	l, _ := floodLog(t, -1)
	start := time.Now().UTC()
	for i := range 300 {
		l.Record(refusal(start.Add(time.Duration(i)*time.Microsecond), "192.0.2.1", "", "/", "invalid application key"))
	}
	if events := stored(t, l); len(events) != 300 {
		t.Fatalf("unlimited: %d events for 300 refusals", len(events))
	}
	l.Reconfigure(zap.NewNop(), Settings{RefusalsPerMinute: 50})
	for i := range 300 {
		l.Record(refusal(start.Add(time.Second+time.Duration(i)*time.Microsecond), "192.0.2.1", "", "/", "invalid application key"))
	}
	if events := stored(t, l); len(events) != 300+5+1 || events[0].Count != 295 {
		t.Fatalf("after the reload: %d events, newest %+v; want 5 more on their own and one summary of 295", len(events), events[0])
	}
}

// TestSummariesAreWrittenWhenTheMinuteEnds: with no further refusal, the
// writer's tick writes a summary once its minute is over.
func TestSummariesAreWrittenWhenTheMinuteEnds(t *testing.T) {
	parallel(t)
	core, logs := observer.New(zap.InfoLevel)
	l := New(badgerStore(t), zap.New(core), Options{FlushInterval: 10 * time.Millisecond, Settings: Settings{RefusalsPerMinute: 10}})
	t.Cleanup(l.Close)
	past := time.Now().UTC().Add(-floodWindow) // a minute that is over as soon as it starts
	for range 5 {
		l.Record(refusal(past, "192.0.2.1", "", "/", "invalid application key"))
	}
	deadline := time.Now().Add(30 * time.Second)
	for logs.FilterField(zap.Int("count", 4)).Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no summary of 4 refusals logged within 30 s: %d lines", logs.Len())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOneNetworkCannotHideOthers: a flooding network gets a tenth of
// the allowance's events and bytes, and starts at most
// maxFullGroupsPerSource summaries of the first tier (the rest of its
// refusals keep its address); another client's refusals keep events of
// their own.
func TestOneNetworkCannotHideOthers(t *testing.T) {
	parallel(t)
	l, _ := floodLog(t, 100)
	start := time.Now().UTC()
	fat := "/" + strings.Repeat("\x01", 1000) // six bytes of JSON each
	for i := range 500 {
		l.Record(refusal(start.Add(time.Duration(i)*time.Microsecond), "192.0.2.1", fmt.Sprint("u", i), fat, "invalid application key"))
	}
	for i := range 3 {
		l.Record(Event{Time: start.Add(time.Millisecond + time.Duration(i)), Kind: "login", Username: "bob", Credential: "portal",
			RemoteIP: "203.0.113.9", Outcome: OutcomeFailure, Reason: "wrong password"})
	}
	l.Close()
	var own, victim, firstTier, byNetwork int
	for _, e := range stored(t, l) {
		switch {
		case e.Username == "bob" && e.Count == 0:
			victim++
		case e.Count == 0:
			own++
		case e.Username != "":
			firstTier++
		case e.RemoteIP == "192.0.2.1":
			byNetwork += e.Count
		}
	}
	if victim != 3 {
		t.Fatalf("%d of bob's 3 refusals from another network are events of their own", victim)
	}
	if own > 10 || own*(len(fat)*6) > 100*ownEventBytes/10+len(fat)*6 {
		t.Fatalf("the flooding network got %d events of their own", own)
	}
	if firstTier != maxFullGroupsPerSource || byNetwork != 500-own-maxFullGroupsPerSource {
		t.Fatalf("the flood: %d first-tier summaries, %d refusals in its network's summary; want %d and the rest",
			firstTier, byNetwork, maxFullGroupsPerSource)
	}
}

// TestSummariesPastTheTiersKeepKindAndOutcome: past the first tiers,
// another client's refusal is counted by kind, outcome and credential
// kind, and past those by kind and outcome, which never fill up.
func TestSummariesPastTheTiersKeepKindAndOutcome(t *testing.T) {
	parallel(t)
	l, _ := floodLog(t, 10)
	start := time.Now().UTC()
	at := func(i int) time.Time { return start.Add(time.Duration(i) * time.Microsecond) }
	i := 0
	for ; i < 10+maxFullGroups+maxNetworkGroups; i++ {
		l.Record(refusal(at(i), fmt.Sprintf("10.0.%d.%d", i/256, i%256), "", "/", "invalid application key"))
	}
	for c := range maxCredentialGroups { // made-up credential kinds fill the third tier
		ev := refusal(at(i+c), "10.9.9.9", "", "/", "invalid application key")
		ev.Credential = fmt.Sprint("kind", c, ":x")
		l.Record(ev)
	}
	victim := Event{Time: at(i + 100), Kind: "login", Username: "bob", Credential: "portal", RemoteIP: "198.51.100.7",
		Outcome: OutcomeFailure, Reason: "wrong password"}
	l.Record(victim)
	l.Close()
	var got *Event
	events := stored(t, l)
	counted := 0
	for j, e := range events {
		counted += max(e.Count, 1)
		if e.Kind == "login" {
			got = &events[j]
		}
	}
	if counted != i+maxCredentialGroups+1 {
		t.Fatalf("the events stand for %d refusals; want %d", counted, i+maxCredentialGroups+1)
	}
	if got == nil || got.Count != 1 || got.Outcome != OutcomeFailure || got.Username != "bob" || got.Reason != "wrong password" {
		t.Fatalf("the victim's refusal: %+v; want a summary of 1 with its kind, outcome, user and reason", got)
	}
}

// TestProducersChooseWhatIsSummarised: the portal's refusals of a code
// (SummariseNever) stay events of their own past the allowance, and the
// failures a producer marks SummariseAlways (the ESA API's codes of a
// locked user) are summarised though their kind is not, and so are the
// successes marked so (a connector's token grants), where other successes
// (a key created) never are; the console's refusals are summarised by
// their kind, checked codes (kind 2fa) never.
func TestProducersChooseWhatIsSummarised(t *testing.T) {
	parallel(t)
	l, _ := floodLog(t, 20) // 2 a minute from one network
	now := time.Now().UTC()
	for range 20 {
		l.Record(Event{Time: now, Kind: "login", Username: "alice", RemoteIP: "192.0.2.1", Outcome: OutcomeFailure,
			Reason: "wrong or expired code", Summarise: SummariseNever})
		l.Record(Event{Time: now, Kind: "2fa", Username: "bob", RemoteIP: "192.0.2.1", Outcome: OutcomeFailure,
			Reason: "the user is locked", Summarise: SummariseAlways})
		l.Record(Event{Time: now, Kind: "2fa", Username: "carol", RemoteIP: "192.0.2.2", Outcome: OutcomeFailure,
			Reason: "wrong or expired code"})
		l.Record(Event{Time: now, Kind: "console", Username: "erin", RemoteIP: "192.0.2.3", Outcome: OutcomeDenied,
			Reason: "console form refused: the CSRF token does not match the session"})
		l.Record(Event{Time: now, Kind: "token", Username: "gina", RemoteIP: "192.0.2.4", Outcome: OutcomeSuccess,
			Reason: "issued token pair", Summarise: SummariseAlways})
		l.Record(Event{Time: now, Kind: "app_key", Username: "hank", RemoteIP: "192.0.2.5", Outcome: OutcomeSuccess,
			Reason: "created"})
	}
	counts := map[string][2]int{} // by user: events of their own, refusals summarised
	for _, e := range stored(t, l) {
		c := counts[e.Username]
		if e.Count == 0 {
			c[0]++
		}
		c[1] += e.Count
		counts[e.Username] = c
	}
	if counts["alice"] != [2]int{20, 0} || counts["bob"] != [2]int{2, 18} || counts["carol"] != [2]int{20, 0} || counts["erin"] != [2]int{2, 18} ||
		counts["gina"] != [2]int{2, 18} || counts["hank"] != [2]int{20, 0} {
		t.Fatalf("events of their own and summarised, by user: %v; want alice's, carol's and hank's 20 on their own, bob's, erin's and gina's first 2 on their own and 18 summarised", counts)
	}
}

// TestQueryDuringCloseWaitsForTheWriter: a Query made while the writer
// closes answers once the writer has written what it holds, the
// summaries too: every refusal recorded before is accounted for.
func TestQueryDuringCloseWaitsForTheWriter(t *testing.T) {
	parallel(t)
	for round := range 5 {
		l, _ := floodLog(t, 10)
		now := time.Now().UTC()
		for i := range 3000 {
			l.Record(refusal(now.Add(time.Duration(i)), "192.0.2.1", "", "/", "invalid application key"))
		}
		go l.Close()
		if n := sum(stored(t, l)); n != 3000 {
			t.Fatalf("round %d: a Query during Close accounts for %d of 3000 refusals", round, n)
		}
	}
}

// sum is the number of refusals events stand for.
func sum(events []Event) int {
	n := 0
	for _, e := range events {
		n += max(e.Count, 1)
	}
	return n
}

// TestOutcomesAreSummarisedApart: a denied request and a failed sign-in
// from the same network are never counted in one summary.
func TestOutcomesAreSummarisedApart(t *testing.T) {
	parallel(t)
	l, _ := floodLog(t, 1)
	now := time.Now().UTC()
	l.Record(refusal(now, "192.0.2.1", "", "/", "first"))
	for range 3 {
		l.Record(Event{Time: now, Kind: "request", RemoteIP: "192.0.2.1", Outcome: OutcomeDenied, Reason: "same"})
		l.Record(Event{Time: now, Kind: "request", RemoteIP: "192.0.2.1", Outcome: OutcomeFailure, Reason: "same"})
	}
	outcomes := map[string]int{}
	for _, e := range stored(t, l) {
		if e.Reason == "same" {
			outcomes[e.Outcome] += e.Count
		}
	}
	if outcomes[OutcomeDenied] != 3 || outcomes[OutcomeFailure] != 3 || len(outcomes) != 2 {
		t.Fatalf("summaries by outcome: %v; want 3 denied and 3 failed, apart", outcomes)
	}
}

// TestLargeRefusalsGetFewerEventsOfTheirOwn: the allowance is in bytes
// too (ownEventBytes an event on average), so refusals shaped to be large
// cannot make the store take more; characters HTML would escape are
// stored as they are, and a summary's fields are cut short.
func TestLargeRefusalsGetFewerEventsOfTheirOwn(t *testing.T) {
	parallel(t)
	l, _ := floodLog(t, 100)
	start := time.Now().UTC()
	path := "/" + strings.Repeat("<", 1000)
	for i := range 300 {
		l.Record(refusal(start.Add(time.Duration(i)*time.Microsecond), fmt.Sprint("10.0.0.", i%250), "", path, "invalid application key"))
	}
	l.Close()
	own, ownBytes, counted := 0, 0, 0
	for _, e := range stored(t, l) {
		counted += max(e.Count, 1)
		if e.Count == 0 {
			own++
			ownBytes += len(encode(&e))
			continue
		}
		if len(e.Path) > summaryField {
			t.Fatalf("a summary's path of %d bytes; want at most %d", len(e.Path), summaryField)
		}
	}
	if counted != 300 || own == 0 || ownBytes > 100*ownEventBytes || own > 100*ownEventBytes/len(path) {
		t.Fatalf("%d events of their own (%d bytes of JSON) for 300 refusals of %d-byte paths, %d counted; want at most %d bytes",
			own, ownBytes, len(path), counted, 100*ownEventBytes)
	}
	if raw := encode(&Event{Path: path}); len(raw) > len(encode(&Event{}))+len(path) { // '<' not escaped
		t.Fatalf("a %d-byte path of '<' is %d bytes of JSON", len(path), len(raw))
	}
}

// TestRefusalsDoNotBurySuccesses: a flood of refusals from many networks,
// which fills every summary tier that keeps the client's network, does
// not merge the successes summarised like refusals (a connector's token
// grants) into a summary that loses where they came from: they are
// counted apart, within an allowance of their own (an outside review
// buried a stolen refresh token's grant beside the real connector's).
func TestRefusalsDoNotBurySuccesses(t *testing.T) {
	parallel(t)
	l, _ := floodLog(t, 20)
	now := time.Now().UTC()
	for n := range 200 {
		for i := range 20 {
			l.Record(refusal(now, fmt.Sprintf("2001:db8:%x::%x", n, i), "", "/", fmt.Sprintf("invalid application key %d", i)))
		}
	}
	for _, ip := range []string{"192.0.2.7", "198.51.100.9"} {
		l.Record(Event{Time: now, Kind: KindToken, Username: "plant7", Credential: "connector:plant7", RemoteIP: ip,
			Outcome: OutcomeSuccess, Reason: "issued token pair from " + ip, Summarise: SummariseAlways})
	}
	grants := map[string]string{}
	for _, e := range stored(t, l) {
		if e.Kind == KindToken {
			grants[e.RemoteIP] = e.Reason
		}
	}
	if len(grants) != 2 || grants["192.0.2.7"] != "issued token pair from 192.0.2.7" || grants["198.51.100.9"] != "issued token pair from 198.51.100.9" {
		t.Fatalf("the grants as stored, by address: %v; want both on their own, with address and reason", grants)
	}
}
