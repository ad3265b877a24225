package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/clientnet"
)

// Refusal floods. Anyone can make Gatehouse refuse a request, and every
// refusal is an event kept for the whole retention: unchecked, a client
// sending garbage fills the store's disk (some 250 bytes an event, 4 MB a
// second at 16 000 refusals a second on two cores) until the store fails
// and every request is refused.
//
// So each minute the writer stores at most the allowance
// (Settings.RefusalsPerMinute) of refusals as events of their own, in at
// most ownEventBytes of JSON each on average, and at most a tenth of
// both from any one client network (an IPv4 address, an IPv6 /64:
// clientnet.Of). It counts the minute's other refusals in summary events
// (Event.Count, Event.First), in the first tier that has room:
//
//  1. one per kind, outcome, client network, username, credential and
//     reason: at most maxFullGroups, and maxFullGroupsPerSource of one
//     network, so that one network cannot fill them;
//  2. one per kind, outcome and client network: at most maxNetworkGroups
//     (one network makes at most twelve);
//  3. one per kind, outcome and credential kind (the credential up to its
//     ':'): at most maxCredentialGroups;
//  4. one per kind and outcome: never more than twelve (see below).
//
// A summary keeps the fields its refusals share (an empty one differed),
// each cut to summaryField bytes. Summaries are written when the minute
// ends, or when the writer closes; Query shows the open ones without
// writing them.
//
// Refusals are what a client can cause at will: refused requests (the
// ESA API's refusals of API credentials among them), TLS handshakes,
// portal sign-ins, token requests, and console pages and forms (a
// signed-in user's, or a form another site makes a browser send); and the
// failures whose producer says so (SummariseAlways: the ESA API's codes
// of locked, blocked or unenrolled users, which nothing bounds), and the
// successes a credential's holder repeats at will, which its producer
// marks alike (a connector's token grants, sessions opened with an
// application key). Nothing else is summarised: second-factor failures the lockout bounds
// (SummariseNever marks the portal's), admin and console changes,
// credential lifecycle events. So refusals have at most twelve kinds and
// outcomes: the five kinds above and the ESA API's "2fa", each denied or
// failed.

const (
	// floodWindow is how long an allowance lasts.
	floodWindow = time.Minute
	// DefaultRefusalsPerMinute is the allowance when none is set.
	DefaultRefusalsPerMinute = 600
	// ownEventBytes is the JSON an event of its own may take on average:
	// the allowance's bytes are the allowance times it, so that refusals
	// shaped to be large get fewer events of their own, not more bytes.
	ownEventBytes = 512
	// The limits of the summary tiers, which bound what a flood from
	// many networks can take a minute.
	maxFullGroups          = 128
	maxFullGroupsPerSource = 16
	maxNetworkGroups       = 128
	maxCredentialGroups    = 64
	// summaryField bounds each text field of a summary.
	summaryField = 128
	// maxFloodSources bounds the client networks counted in one window:
	// one not counted when it is full gets no event of its own and no
	// summary of the first tier.
	maxFloodSources = 4096
)

// isRefusal reports whether a client can cause e at will, and it may be
// summarised.
func (e *Event) isRefusal() bool {
	if e.Outcome == OutcomeAllowed || e.Actor != "" {
		return false
	}
	switch e.Summarise {
	case SummariseNever:
		return false
	case SummariseAlways:
		return true
	}
	if e.Outcome != OutcomeDenied && e.Outcome != OutcomeFailure {
		return false
	}
	switch e.Kind {
	case KindRequest, KindTLS, KindLogin, KindToken, KindConsole:
		return true
	}
	return false
}

// floodKey is what a summary's refusals have in common: all of it in the
// first tier, less in the others.
type floodKey struct{ kind, outcome, network, username, credential, reason string }

// floodSource is what one client network had in the current window: its
// events of their own, their bytes, and the summaries of the first tier
// it started.
type floodSource struct{ events, bytes, groups int }

// floodGate is the writer goroutine's count of the current window's
// refusals; it is not safe for concurrent use.
type floodGate struct {
	// allowance is the refusals stored as events of their own per window
	// (all networks together); 0 or less stores every refusal on its own.
	allowance int
	// end is when the current window ends; zero before its first refusal.
	end time.Time
	// written counts the window's events of their own, and their bytes.
	written, writtenBytes int
	sources               map[string]*floodSource
	// tiers are the summaries being counted, by tier.
	tiers [4]map[floodKey]*Event
}

// due reports whether the window ended before t: its summaries are to be
// written (closeWindow) before anything from t on is counted.
func (g *floodGate) due(t time.Time) bool { return !g.end.IsZero() && !t.Before(g.end) }

// admit reports whether e is written as an event of its own; a refusal
// past its window's allowance is counted in a summary instead.
func (g *floodGate) admit(e *Event) bool {
	if g.allowance <= 0 || !e.isRefusal() {
		return true
	}
	if g.end.IsZero() {
		g.end = e.Time.Add(floodWindow)
	}
	network := clientnet.Of(e.RemoteIP)
	src := g.source(network)
	perSource := max(g.allowance/10, 1)
	if src != nil && g.written < g.allowance && src.events < perSource {
		size := len(encode(e))
		if g.writtenBytes+size <= g.allowance*ownEventBytes && src.bytes+size <= perSource*ownEventBytes {
			src.events++
			src.bytes += size
			g.written++
			g.writtenBytes += size
			return true
		}
	}
	g.count(e, network, src)
	return false
}

// source returns the window's count of network, nil when there are too
// many networks to count another.
func (g *floodGate) source(network string) *floodSource {
	if src := g.sources[network]; src != nil {
		return src
	}
	if len(g.sources) >= maxFloodSources {
		return nil
	}
	if g.sources == nil {
		g.sources = make(map[string]*floodSource)
	}
	src := &floodSource{}
	g.sources[network] = src
	return src
}

// count adds e, from network (src, when counted), to its summary in the
// first tier that has room.
func (g *floodGate) count(e *Event, network string, src *floodSource) {
	credentialKind, _, _ := strings.Cut(e.Credential, ":")
	keys := [len(g.tiers)]floodKey{
		{e.Kind, e.Outcome, network, e.Username, e.Credential, e.Reason},
		{kind: e.Kind, outcome: e.Outcome, network: network},
		{kind: e.Kind, outcome: e.Outcome, credential: credentialKind},
		{kind: e.Kind, outcome: e.Outcome},
	}
	for tier, key := range keys {
		if s := g.tiers[tier][key]; s != nil {
			add(s, e, network)
			return
		}
		room := true
		switch tier {
		case 0:
			room = len(g.tiers[0]) < maxFullGroups && src != nil && src.groups < maxFullGroupsPerSource
			if room {
				src.groups++
			}
		case 1:
			room = len(g.tiers[1]) < maxNetworkGroups
		case 2:
			room = len(g.tiers[2]) < maxCredentialGroups
		}
		if room {
			if g.tiers[tier] == nil {
				g.tiers[tier] = make(map[floodKey]*Event)
			}
			g.tiers[tier][key] = summaryOf(e, network)
			return
		}
	}
}

// summaryOf starts a summary with the refusal e, from network.
func summaryOf(e *Event, network string) *Event {
	s := *e
	s.RemoteIP, s.Count, s.First = network, 1, e.Time
	s.clipTo(summaryField)
	return &s
}

// add counts e, from network, in the summary s, blanking the fields they
// do not share.
func add(s, e *Event, network string) {
	s.Count++
	s.Time = later(s.Time, e.Time)
	s.First = earlier(s.First, e.Time)
	seen := Event{Kind: e.Kind, Outcome: e.Outcome, Username: e.Username, Credential: e.Credential,
		RemoteIP: network, Method: e.Method, Path: e.Path, Host: e.Host, Reason: e.Reason}
	seen.clipTo(summaryField)
	for _, f := range [...]struct{ kept, seen *string }{
		{&s.Kind, &seen.Kind}, {&s.Outcome, &seen.Outcome}, {&s.Username, &seen.Username},
		{&s.Credential, &seen.Credential}, {&s.RemoteIP, &seen.RemoteIP}, {&s.Method, &seen.Method},
		{&s.Path, &seen.Path}, {&s.Host, &seen.Host}, {&s.Reason, &seen.Reason},
	} {
		if *f.kept != *f.seen {
			*f.kept = ""
		}
	}
}

// open returns copies of the summaries counted so far, for Query.
func (g *floodGate) open() []Event {
	var out []Event
	for _, tier := range g.tiers {
		for _, s := range tier {
			out = append(out, *s)
		}
	}
	return out
}

// closeWindow returns the summaries counted so far (to be written) and
// starts counting new ones; the allowance starts afresh too when the
// window ended before now (Close in the middle of a window keeps what
// was written).
func (g *floodGate) closeWindow(now time.Time) []Event {
	out := g.open()
	g.tiers = [len(g.tiers)]map[floodKey]*Event{}
	for _, src := range g.sources {
		src.groups = 0
	}
	if g.due(now) {
		g.end, g.written, g.writtenBytes, g.sources = time.Time{}, 0, 0, nil
	}
	return out
}

// encode is e's JSON as stored. It leaves <, > and & as they are (the
// admin API's and the console's own encoders escape what they show), so
// that a client cannot make an event six times its size with them.
func encode(e *Event) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(e) // an Event always encodes
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
