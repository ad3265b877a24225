package audit

import (
	"bytes"
	"encoding/json"
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
// (Settings.RefusalsPerMinute) of refusals as events of their own, and
// at most a tenth of it from any one client network (an IPv4 address,
// an IPv6 /64: clientnet.Of), in at most ownEventBytes of JSON each on
// average. It counts the minute's other refusals in summary events
// (Event.Count, Event.First): one per kind, outcome, client network,
// username, credential and reason, at most maxFloodGroups of them; then
// one per kind, outcome, credential and reason, at most
// maxOverflowGroups; then one for all the rest. A summary keeps the
// fields its refusals share (an empty one differed), each cut to
// summaryField bytes. Summaries are written when the minute ends, or when
// the writer closes; Query shows the open ones without writing them.
//
// Refusals are what a client can cause at will, without any credential:
// refused requests, TLS handshakes, portal sign-ins and token requests.
// Nothing else is summarised: second-factor failures and lockouts, admin
// and console changes, credential lifecycle events.

const (
	// floodWindow is how long an allowance lasts.
	floodWindow = time.Minute
	// DefaultRefusalsPerMinute is the allowance when none is set.
	DefaultRefusalsPerMinute = 600
	// ownEventBytes is the JSON an event of its own may take on average:
	// the allowance's bytes are the allowance times it, so that refusals
	// shaped to be large (a long path of characters JSON escapes) get
	// fewer events of their own, not more bytes.
	ownEventBytes = 512
	// maxFloodGroups and maxOverflowGroups bound the summaries of one
	// window, and so what a flood from many networks can take.
	maxFloodGroups    = 256
	maxOverflowGroups = 32
	// summaryField bounds each text field of a summary.
	summaryField = 128
	// maxFloodSources bounds the client networks whose events of their
	// own are counted in one window: one not counted when it is full gets
	// none (its refusals are summarised).
	maxFloodSources = 4096
)

// isRefusal reports whether a client can cause e at will, and it may be
// summarised.
func (e *Event) isRefusal() bool {
	if (e.Outcome != OutcomeDenied && e.Outcome != OutcomeFailure) || e.Actor != "" {
		return false
	}
	switch e.Kind {
	case "request", "tls", "login", "token":
		return true
	}
	return false
}

// floodKey is what a summary's refusals have in common: all of it for
// the first groups, less (network and username empty) for the overflow.
type floodKey struct{ kind, outcome, network, username, credential, reason string }

// floodGate is the writer goroutine's count of the current window's
// refusals; it is not safe for concurrent use.
type floodGate struct {
	// allowance is the refusals stored as events of their own per window
	// (all networks together); 0 or less stores every refusal on its own.
	allowance int
	// end is when the current window ends; zero before its first refusal.
	end time.Time
	// written counts the window's events of their own, and their bytes,
	// in all and by client network.
	written, writtenBytes int
	bySource              map[string]int
	// groups and overflow are the summaries being counted; others takes
	// the refusals that found both full.
	groups, overflow map[floodKey]*Event
	others           *Event
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
	n, known := g.bySource[network]
	if g.written < g.allowance && n < max(g.allowance/10, 1) && (known || len(g.bySource) < maxFloodSources) {
		if size := len(encode(e)); g.writtenBytes+size <= g.allowance*ownEventBytes {
			if g.bySource == nil {
				g.bySource = make(map[string]int)
			}
			g.bySource[network] = n + 1
			g.written++
			g.writtenBytes += size
			return true
		}
	}
	g.count(e, network)
	return false
}

// count adds e, from network, to its summary: the first that has room.
func (g *floodGate) count(e *Event, network string) {
	full := floodKey{e.Kind, e.Outcome, network, e.Username, e.Credential, e.Reason}
	if s := g.groups[full]; s != nil || addGroup(&g.groups, full, maxFloodGroups, e, network) {
		add(s, e, network)
		return
	}
	coarse := floodKey{kind: e.Kind, outcome: e.Outcome, credential: e.Credential, reason: e.Reason}
	if s := g.overflow[coarse]; s != nil || addGroup(&g.overflow, coarse, maxOverflowGroups, e, network) {
		add(s, e, network)
		return
	}
	if g.others == nil {
		g.others = summaryOf(e, network)
		return
	}
	add(g.others, e, network)
}

// addGroup starts the summary of key in groups with e, if they have room
// for one more than limit.
func addGroup(groups *map[floodKey]*Event, key floodKey, limit int, e *Event, network string) bool {
	if len(*groups) >= limit {
		return false
	}
	if *groups == nil {
		*groups = make(map[floodKey]*Event)
	}
	(*groups)[key] = summaryOf(e, network)
	return true
}

// summaryOf starts a summary with the refusal e, from network.
func summaryOf(e *Event, network string) *Event {
	s := *e
	s.RemoteIP, s.Count, s.First = network, 1, e.Time
	s.clipTo(summaryField)
	return &s
}

// add counts e, from network, in the summary s (nothing when s is nil:
// addGroup just started it with e), blanking the fields they do not share.
func add(s, e *Event, network string) {
	if s == nil {
		return
	}
	s.Count++
	s.Time = later(s.Time, e.Time)
	s.First = earlier(s.First, e.Time)
	seen := Event{Kind: e.Kind, Outcome: e.Outcome, Username: e.Username, Credential: e.Credential,
		RemoteIP: network, Method: e.Method, Path: e.Path, Reason: e.Reason}
	seen.clipTo(summaryField)
	for _, f := range [...]struct{ kept, seen *string }{
		{&s.Kind, &seen.Kind}, {&s.Outcome, &seen.Outcome}, {&s.Username, &seen.Username},
		{&s.Credential, &seen.Credential}, {&s.RemoteIP, &seen.RemoteIP}, {&s.Method, &seen.Method},
		{&s.Path, &seen.Path}, {&s.Reason, &seen.Reason},
	} {
		if *f.kept != *f.seen {
			*f.kept = ""
		}
	}
}

// open returns copies of the summaries counted so far, for Query.
func (g *floodGate) open() []Event {
	var out []Event
	for _, groups := range [...]map[floodKey]*Event{g.groups, g.overflow} {
		for _, s := range groups {
			out = append(out, *s)
		}
	}
	if g.others != nil {
		out = append(out, *g.others)
	}
	return out
}

// closeWindow returns the summaries counted so far (to be written) and
// starts counting new ones; the allowance starts afresh too when the
// window ended before now (Close in the middle of a window keeps what
// was written).
func (g *floodGate) closeWindow(now time.Time) []Event {
	out := g.open()
	g.groups, g.overflow, g.others = nil, nil, nil
	if g.due(now) {
		g.end, g.written, g.writtenBytes, g.bySource = time.Time{}, 0, 0, nil
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
