package basic

import (
	"context"
	"strconv"
	"strings"
	"time"

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
// whether it was not held before.
func (c *Credential) holdThrottled(name, key string, d time.Duration) bool {
	now := time.Now().UnixNano()
	end := now + int64(d)
	prev, _ := c.throttled.Peek(key)
	if prev > end {
		end = prev
	}
	c.throttled.Add(key, end)
	for {
		last := c.throttledEnd.Load()
		if last >= end || c.throttledEnd.CompareAndSwap(last, end) {
			break
		}
	}
	return prev < now
}

// isThrottled reports whether the counter at key is held at now (Unix
// ns).
func (c *Credential) isThrottled(key string, now int64) bool {
	end, ok := c.throttled.Get(key)
	return ok && now <= end
}
