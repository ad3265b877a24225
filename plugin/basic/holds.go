package basic

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"weak"

	"github.com/gatehouse-auth/gatehouse/internal/monoclock"
	"github.com/gatehouse-auth/gatehouse/storage/counters"
)

// A hold is this instance's note that a counter of a name's attempts (the
// name's shared Basic count, its count for one familiar network, its
// failed binds) is spent until the end of its window: a cached success
// does not answer a request that a sign-in would count there (heldBack).
// An instance holds a counter when a sign-in here finds it spent, and
// when another instance sharing the store says it found it spent (news,
// storage.Announcer): the first right guess at an instance that had not
// counted a try of the name itself was otherwise answered from its
// cache, once per instance each time its own hold had ended, while the
// guesser kept the count spent elsewhere.

// holdNewsPrefix starts the news of a hold: "basic-hold/<ms>/<name>/<key>",
// the counter at key of name's attempts held for ms milliseconds from
// the moment the news arrives (no clock is compared).
const holdNewsPrefix = "basic-hold/"

// holdNews is the news of a hold of the counter at key of name's
// attempts, for d.
func holdNews(name, key string, d time.Duration) string {
	return holdNewsPrefix + strconv.FormatInt(d.Milliseconds(), 10) + "/" + name + "/" + key
}

// heard takes the news of another instance: a hold, held here as well
// for its time (and told nobody: every instance heard it). News of
// anything else, or a hold of a key that is not one of the name's
// counters, is ignored.
func (c *Credential) heard(news string) {
	rest, ok := strings.CutPrefix(news, holdNewsPrefix)
	ms, rest, ok2 := strings.Cut(rest, "/")
	name, key, ok3 := strings.Cut(rest, "/")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || !ok2 || !ok3 || err != nil || n <= 0 || !countsOf(name, key) {
		return
	}
	c.holdThrottled(name, key, time.Duration(n)*time.Millisecond)
}

// countsOf reports whether key is one of the counters of name's attempts
// that Basic holds.
func countsOf(name, key string) bool {
	return key == counters.BasicFailures(name) || key == counters.DirectoryBindFailures(name) ||
		strings.HasPrefix(key, counters.BasicNetworkFailuresOf(name)) && len(key) > len(counters.BasicNetworkFailuresOf(name))
}

// hold holds the counter at key of name's attempts for d
// (holdThrottled) and, when this instance did not hold it yet, tells
// the other instances sharing the store, which hold it on receipt
// (heard). The news is sent before the request that found the counter
// spent is answered, so its sender's next try at another instance finds
// it held there. It is best effort: an instance whose subscription to
// the store's channel is down meanwhile does not hear it, and holds the
// counter only once a sign-in there finds it spent.
func (c *Credential) hold(ctx context.Context, name, key string, d time.Duration) {
	if c.holdThrottled(name, key, d) && c.news != nil {
		// Not cancelled with the request: a guesser hanging up at once
		// must not keep the news from the other instances.
		_ = c.news.Announce(context.WithoutCancel(ctx), holdNews(name, key, d))
	}
}

// holdThrottled notes that the counter at key of name's attempts was
// found spent, for d (at most its window: held longer, a try only goes
// through the gate, which knows the window's true end), and reports
// whether it was not held before. The hold is kept in throttled and, for
// a name with an entry in the verification cache, with its entries
// (nameHolds), where no flood of holds of other names can push it out.
func (c *Credential) holdThrottled(name, key string, d time.Duration) bool {
	now := monoclock.Nanos(c.now())
	end := now + int64(d)
	h := c.holds.lookup(name)
	prev := c.heldUntil(h, key)
	if prev > end {
		end = prev
	}
	c.throttled.Add(key, end)
	if h != nil {
		h.set(key, end, now)
	}
	for {
		last := c.throttledEnd.Load()
		if last >= end || c.throttledEnd.CompareAndSwap(last, end) {
			break
		}
	}
	return prev < now
}

// release drops the hold of the counter at key of name's attempts: a
// sign-in found it not spent.
func (c *Credential) release(name, key string) {
	c.throttled.Remove(key)
	if h := c.holds.lookup(name); h != nil {
		h.drop(key)
	}
}

// heldUntil is the end (monoclock.Nanos) of the hold of the counter at key,
// among throttled and h (nil: none); zero when neither holds it.
func (c *Credential) heldUntil(h *nameHolds, key string) int64 {
	end, _ := c.throttled.Peek(key)
	if h != nil {
		end = max(end, h.end(key))
	}
	return end
}

// isThrottled reports whether the counter at key, of the attempts of the
// name v is of, is held at now (monoclock.Nanos).
func (c *Credential) isThrottled(v verified, key string, now int64) bool {
	if end, ok := c.throttled.Get(key); ok && now <= end {
		return true
	}
	return v.holds != nil && now <= v.holds.end(key)
}

// nameHolds are the holds of one name's counters (counter key → end,
// monoclock.Nanos) kept with the verification cache's entries of that name:
// every entry of the name points to them (verified.holds), so they last
// as long as one of its entries does. The holds in throttled are
// bounded, and a flood of holds of other names (guesses that spend their
// counts, at any instance) could push a name's hold out of it; no flood
// reaches these, since an entry is made only by a right password.
type nameHolds struct {
	mu   sync.Mutex
	ends map[string]int64
}

// set holds key until end, at now (monoclock.Nanos).
func (h *nameHolds) set(key string, end, now int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, e := range h.ends { // the ended ones go: a name has few counters
		if e < now {
			delete(h.ends, k)
		}
	}
	h.ends[key] = end
}

// end is the end of key's hold, zero when there is none.
func (h *nameHolds) end(key string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ends[key]
}

// drop ends key's hold.
func (h *nameHolds) drop(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.ends, key)
}

// holdIndex finds the holds of a name (nameHolds) while an entry of the
// verification cache points to them: it keeps them by weak pointer, so
// that they go with the name's last entry, and holds nothing else (a
// cleanup of its own, which keeps no entry reachable, drops the name).
type holdIndex struct {
	mu     sync.Mutex
	byName map[string]weak.Pointer[nameHolds]
}

// indexed is a name and its holds in a holdIndex, for the cleanup that
// drops them.
type indexed struct {
	name  string
	holds weak.Pointer[nameHolds]
}

// holdsOf returns the holds of name, made anew when no entry points to them,
// with the holds in throttled of the name's shared count and failed binds
// (the other instances' news, or this one's finds, from before the entry).
func (c *Credential) holdsOf(name string) *nameHolds {
	x := c.holds
	x.mu.Lock()
	defer x.mu.Unlock()
	if h := x.byName[name].Value(); h != nil {
		return h
	}
	h := &nameHolds{ends: map[string]int64{}}
	for _, key := range []string{counters.BasicFailures(name), counters.DirectoryBindFailures(name)} {
		if end, ok := c.throttled.Peek(key); ok {
			h.ends[key] = end
		}
	}
	p := weak.Make(h)
	x.byName[name] = p
	runtime.AddCleanup(h, x.forget, indexed{name: name, holds: p})
	return h
}

// lookup returns the holds of name while an entry points to them, else
// nil.
func (x *holdIndex) lookup(name string) *nameHolds {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.byName[name].Value()
}

// forget drops a name whose holds are gone, unless it has others by now.
func (x *holdIndex) forget(e indexed) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.byName[e.name] == e.holds {
		delete(x.byName, e.name)
	}
}
