package audit

import (
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/clientnet"
)

// Refusal floods. Anyone can make Gatehouse refuse a request, and every
// refusal is an event kept for the whole retention: unchecked, a client
// sending garbage fills the store's disk (some 250 bytes an event, 4 MB a
// second at 16 000 refusals a second on two cores) until the store fails
// and every request is refused. So each minute the writer stores at most
// the allowance (Settings.RefusalsPerMinute) of refusals as events of
// their own, and at most a tenth of it from any one client network (an
// IPv4 address, an IPv6 /64: clientnet.Of). It counts the minute's other
// refusals in summary events, one per kind, client network, username,
// credential and reason (at most maxFloodGroups of them, then one for all
// the rest), and writes those when the minute ends, or at once on Flush.
// A summary keeps the fields its refusals share (an empty one differed)
// and says how many it stands for (Event.Count) and since when
// (Event.First).

const (
	// floodWindow is how long an allowance lasts.
	floodWindow = time.Minute
	// maxFloodGroups bounds the summaries of one window, and so the
	// memory and store a flood from many networks can take.
	maxFloodGroups = 256
	// maxFloodSources bounds the client networks whose individual events
	// are counted in one window: one not counted when it is full gets
	// none (its refusals are summarised).
	maxFloodSources = 4096
	// DefaultRefusalsPerMinute is the allowance when none is set.
	DefaultRefusalsPerMinute = 600
)

// floodKey is what a summary's refusals have in common.
type floodKey struct{ kind, network, username, credential, reason string }

// floodGate is the writer goroutine's count of the current window's
// refusals; it is not safe for concurrent use.
type floodGate struct {
	// allowance is the refusals stored individually per window (all
	// networks together); 0 or less stores every refusal individually.
	allowance int
	// end is when the current window ends; zero before its first refusal.
	end time.Time
	// written counts the window's individual refusals, in all and by
	// client network.
	written  int
	bySource map[string]int
	// groups are the summaries being counted; others takes the refusals
	// that found the groups full.
	groups map[floodKey]*Event
	others *Event
}

// isRefusal reports whether e is one a client can make at will: a
// denied or failed event that no console user made.
func (e *Event) isRefusal() bool {
	return (e.Outcome == OutcomeDenied || e.Outcome == OutcomeFailure) && e.Actor == ""
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
	perSource := max(g.allowance/10, 1)
	n, known := g.bySource[network]
	if g.written < g.allowance && n < perSource && (known || len(g.bySource) < maxFloodSources) {
		if g.bySource == nil {
			g.bySource = make(map[string]int)
		}
		g.bySource[network] = n + 1
		g.written++
		return true
	}
	g.count(e, floodKey{e.Kind, network, e.Username, e.Credential, e.Reason})
	return false
}

// count adds e to the summary of key, or to others when the groups are full.
func (g *floodGate) count(e *Event, key floodKey) {
	s := g.groups[key]
	if s == nil && len(g.groups) < maxFloodGroups {
		if g.groups == nil {
			g.groups = make(map[floodKey]*Event)
		}
		s = summaryOf(e, key.network)
		g.groups[key] = s
		return
	}
	if s == nil {
		if g.others == nil {
			g.others = summaryOf(e, key.network)
			return
		}
		s = g.others
	}
	s.Count++
	s.Time = later(s.Time, e.Time)
	s.First = earlier(s.First, e.Time)
	for _, f := range [...]struct {
		kept *string
		seen string
	}{
		{&s.Kind, e.Kind}, {&s.Username, e.Username}, {&s.Credential, e.Credential}, {&s.RemoteIP, key.network},
		{&s.Method, e.Method}, {&s.Path, e.Path}, {&s.Reason, e.Reason},
	} {
		if *f.kept != f.seen {
			*f.kept = ""
		}
	}
}

// summaryOf starts a summary with the refusal e, from network.
func summaryOf(e *Event, network string) *Event {
	s := *e
	s.RemoteIP, s.Count, s.First = network, 1, e.Time
	return &s
}

// closeWindow returns the summaries counted so far (to be written) and
// starts counting new ones; the allowance starts afresh too when the
// window ended before now (a Flush in the middle of a window keeps what
// was written).
func (g *floodGate) closeWindow(now time.Time) []Event {
	var out []Event
	for _, s := range g.groups {
		out = append(out, *s)
	}
	if g.others != nil {
		out = append(out, *g.others)
	}
	g.groups, g.others = nil, nil
	if g.due(now) {
		g.end, g.written, g.bySource = time.Time{}, 0, nil
	}
	return out
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
