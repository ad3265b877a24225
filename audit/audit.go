// Package audit is Gatehouse's audit log: every refusal, credential
// lifecycle event, admin change and 2FA event (and, when configured, every
// allowed request) is recorded off the request path, written to the store
// in batches with a retention TTL, mirrored as a structured log line, and
// queried newest first by the admin API. Events the store refuses wait in
// memory and, with Options.SpillFile, in a local file (spill.go) that the
// next writer replays, so that a crash during a store outage loses none.
package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/internal/logthin"
	"github.com/gatehouse-auth/gatehouse/storage"
)

const keyPrefix = "audit/"

// Outcomes of an event.
const (
	OutcomeAllowed = "allowed"
	OutcomeDenied  = "denied"
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// Outcomes lists every outcome of an event: what GET
// /gatehouse/audit?outcome= filters on.
var Outcomes = []string{OutcomeAllowed, OutcomeDenied, OutcomeSuccess, OutcomeFailure}

// The kinds of audit events (Event.Kind): what GET /gatehouse/audit?kind=
// filters on.
const (
	// KindRequest: a request to a protected route, allowed (when audited)
	// or refused, and a refused ESA API call.
	KindRequest = "request"
	// KindTLS: a client certificate the TLS handshake refused.
	KindTLS = "tls"
	// KindLogin: a login-portal sign-in step.
	KindLogin = "login"
	// KindToken: a connector's token request, and a token pair revoked.
	KindToken = "token"
	// KindConsole: a console refusal or sensitive action.
	KindConsole = "console"
	// KindTwoFactor: a second factor enrolled, removed, locked or unlocked.
	KindTwoFactor = "2fa"
	// KindAdmin: an admin API call that changes something.
	KindAdmin = "admin"
	// KindAppKey: an application key's lifecycle and uses.
	KindAppKey = "appkey"
	// KindConnector: a connector's lifecycle.
	KindConnector = "connector"
	// KindDirectory: a bind or refresh against the directory.
	KindDirectory = "directory"
)

// Kinds lists every kind of audit event.
var Kinds = []string{KindRequest, KindTLS, KindLogin, KindToken, KindConsole, KindTwoFactor, KindAdmin, KindAppKey, KindConnector, KindDirectory}

// Event is one audit record; its JSON is what GET /gatehouse/audit returns.
// The fields the contract names (time, kind, username, credential,
// remote_ip, method, path, outcome, reason) are always present, "" when
// unknown, so that clients reading every key find them.
type Event struct {
	// Time is when the event happened; Record sets it to the current UTC
	// time when zero.
	Time time.Time `json:"time"`
	// Kind says what happened: one of Kinds.
	Kind string `json:"kind"`
	// Username is the account the event concerns; empty when unknown.
	Username string `json:"username"`
	// Credential names the credential used (kind and non-secret ID), never its value.
	Credential string `json:"credential"`
	// RemoteIP is the client address of the request, when there was one.
	RemoteIP string `json:"remote_ip"`
	// Method is the HTTP method of the request, when there was one.
	Method string `json:"method"`
	// Path is the URL path of the request, when there was one.
	Path string `json:"path"`
	// Host is the host (and port, when the client named one) the request
	// was sent to, as the client named it: with several sites on one
	// Caddy, the site. Empty when there was no request.
	Host string `json:"host,omitempty"`
	// Outcome is one of OutcomeAllowed, OutcomeDenied, OutcomeSuccess and
	// OutcomeFailure.
	Outcome string `json:"outcome"`
	// Reason explains the outcome in words (why a request was refused, what
	// was issued or changed).
	Reason string `json:"reason"`
	// Actor is the signed-in console user who made the change, when it
	// was made in the console (see WithActor); empty for the admin API.
	Actor string `json:"actor,omitempty"`
	// Count is, on the summary of a flood of refusals (flood.go), how many
	// refusals it stands for; absent on an event that stands for itself.
	// A summary's text fields are those its refusals share (empty where
	// they differed), RemoteIP is their client network (an IPv4 address,
	// an IPv6 /64), and Time is the last one's.
	Count int `json:"count,omitempty"`
	// First is, on a summary, the time of the first refusal it counts.
	First time.Time `json:"first,omitzero"`
	// Summarise says whether the event may be counted in the summary of a
	// flood of refusals (flood.go); it is not stored.
	Summarise SummaryRule `json:"-"`
	// logged says that Record wrote the event's log line (logsAtOnce), so
	// that the writer does not write it again.
	logged bool
}

// Credential is an event's Credential for a credential of kind named id
// ("app_key:meter-7"), or kind alone when id is empty.
func Credential(kind, id string) string {
	if id == "" {
		return kind
	}
	return kind + ":" + id
}

// SummaryRule says whether an event may be counted in the summary of a
// flood of refusals (flood.go).
type SummaryRule uint8

const (
	// SummariseByKind, the zero value, summarises the refusals of the
	// kinds a client repeats at will: request, tls, login, token and
	// console.
	SummariseByKind SummaryRule = iota
	// SummariseNever keeps a failure the lockout bounds on its own (a
	// second factor refused after the right password).
	SummariseNever
	// SummariseAlways summarises a failure of another kind that a caller
	// repeats at will, as nothing bounds it (a code of a locked, blocked
	// or unenrolled user, which is not checked), and a success a
	// credential's holder repeats at will (a token grant, a session
	// opened with a key).
	SummariseAlways
)

// actorKey is the context key of WithActor.
type actorKey struct{}

// WithActor returns ctx naming the console user acting in it: the audit
// events recorded for the admin calls made with ctx carry it as Actor.
func WithActor(ctx context.Context, username string) context.Context {
	return context.WithValue(ctx, actorKey{}, username)
}

// ActorOf returns the user WithActor named in ctx, or "".
func ActorOf(ctx context.Context) string {
	name, _ := ctx.Value(actorKey{}).(string)
	return name
}

// mustKeep reports whether the event may never be dropped under load:
// everything but allowed data-plane requests.
func (e *Event) mustKeep() bool { return e.Outcome != OutcomeAllowed }

// logsAtOnce reports whether Record writes the event's log line itself,
// before the writer stores it (up to a flush interval later): every
// event but an allowed request and a refusal a flood summary may count.
// A change (an account created, a key rotated) is answered before the
// writer stores its event, and a process killed in between leaves its
// log line as the change's only trace. The other two wait for the
// writer, which drops the first when the queue is full and summarises the
// second in a flood.
func (e *Event) logsAtOnce() bool { return e.mustKeep() && !e.isRefusal() }

// Log is the asynchronous, batching audit writer.
type Log struct {
	store storage.Store
	// retention (a time.Duration), refusalsPerMinute and logger are set
	// by New and Reconfigure.
	retention         atomic.Int64
	refusalsPerMinute atomic.Int64
	// summaryRounds counts the times the writer began writing the
	// summaries it had shown as open (see Query).
	summaryRounds atomic.Uint64
	// recording counts the Records under way, which may still queue an
	// event once Close has begun.
	recording atomic.Int64
	logger    atomic.Pointer[zap.Logger]
	events    chan Event
	flushReq  chan chan flushed
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
	dropped   atomic.Uint64
	// onRecord is Options.OnRecord (nil: none).
	onRecord func(Event)
	// late counts the events recorded after Close, for its error line.
	late logthin.Thinner
	// The writer goroutine's own state: storeDownUntil skips store writes
	// for a moment after one failed; backlog holds the events the store
	// refused, oldest first, as they will be written once it answers again
	// (at most backlogLimit bytes of them, then the oldest go and lost
	// counts them); closeBy is when Close stops writing the backlog (zero
	// until Close).
	storeDownUntil time.Time
	// failLine is when the writer last logged that the store refused a
	// batch (zero until the outage's first line), unlogged the failures
	// since, for the next line.
	failLine     time.Time
	unlogged     int
	closeBy      time.Time
	closeTimeout time.Duration
	backlog      []pending
	backlogBytes int
	backlogLimit int
	lost         uint64
	batchSize    int
	// spill keeps the backlog on disk too (nil without Options.SpillFile);
	// notSpilled counts the events of the backlog it could not keep.
	spill      *spill
	notSpilled uint64
	// The audit log's size (trim.go): maxBytes is Settings.MaxBytes; size
	// its bytes as last read and written since (Bytes); trimmed counts the
	// events deleted past maxBytes. sizeReadEvery is how often the writer
	// reads the size (sizeReadInterval); trimToken is the value it holds
	// trimLockKey with, its own for its lifetime. The writer's own: sizeReadBy is
	// when it reads the size next; trimmedTo is how far a pass left no
	// trimmable event; trimFrom how far the pass under way did, in times
	// not yet settled too (zero between passes); trimWidth the span of
	// times a chunk deletes from (trimChunk); trimming says that a pass
	// is under way (atomic: the tests wait for it to end);
	// unrecorded is what was deleted since lastTrimRecord, the time of
	// the last event that recorded deletions; overLimit says that the log
	// was over maxBytes with none left.
	maxBytes       atomic.Int64
	size           atomic.Int64
	trimmed        atomic.Uint64
	sizeReadEvery  time.Duration
	trimToken      []byte
	sizeReadBy     time.Time
	trimmedTo      time.Time
	trimFrom       time.Time
	trimWidth      time.Duration
	trimming       atomic.Bool
	unrecorded     trimRun
	lastTrimRecord time.Time
	overLimit      bool
}

// pending is an event ready for the store: its key and JSON are made once,
// so that a batch retried after an ambiguous failure (applied, but the
// answer lost) overwrites the same records instead of adding copies.
type pending struct {
	key  string
	raw  []byte
	time time.Time
}

// Settings are what a config reload may change in a running writer.
type Settings struct {
	// Retention is how long events are kept (default 30 days).
	Retention time.Duration
	// RefusalsPerMinute is how many refusals a minute are stored as events
	// of their own, at most a tenth of them from one client network; the
	// minute's others are counted in summaries (flood.go). 0 takes
	// DefaultRefusalsPerMinute; a negative value stores every refusal on
	// its own.
	RefusalsPerMinute int
	// MaxBytes bounds the size of the stored events (their keys and
	// JSON): past it, the oldest trimmable events (refusals anyone can
	// cause, their summaries, allowed requests) are deleted before their
	// retention, until the log is under nine tenths of it, and an event
	// records how many (trim.go). 0: no bound.
	MaxBytes int64
}

// Options tunes the writer; zero values take defaults.
type Options struct {
	Settings
	// Buffer is the queue length (default 8192).
	Buffer int
	// FlushInterval bounds how long an event waits before it is written (default 200 ms).
	FlushInterval time.Duration
	// BatchSize is the most events written in one store batch (default 256).
	BatchSize int
	// BacklogBytes bounds the JSON of the events the store refused (while
	// it is down) that are kept in memory and written when it answers
	// again (default 32 MiB, some 100 000 events; with keys and bookkeeping
	// the memory is up to about 1.5 times that); beyond it the oldest are
	// dropped, and only Caddy's log has them.
	BacklogBytes int
	// CloseTimeout bounds how long Close keeps writing that backlog, and
	// the events still queued, to a store that answers but slowly (default
	// 10 s), so that stopping Caddy (the writer outlives config reloads)
	// does not wait on it for minutes; what is left stays in the spill
	// file, if any, for the next start, and what the file could not take
	// is counted in an error line and only Caddy's log has it. Close
	// returns within CloseTimeout plus the time of one store write that
	// ignores its deadline.
	CloseTimeout time.Duration
	// SpillFile, when set, is a local file that keeps the events the store
	// refused as well (appended a batch at a time, one fsync per batch),
	// so that a crash during an outage loses none: New writes the events
	// it holds to the store (under their own keys, so none is stored
	// twice), and the file is emptied once the store holds them all.
	SpillFile string
	// SpillTag, when set, authenticates the spill file's lines: a line
	// whose tag does not verify is not stored (an error line counts them).
	SpillTag SpillTagger
	// SpillBytes bounds the spill file (default 64 MiB); the events
	// beyond it are kept in memory only, and counted in an error line.
	SpillBytes int64
	// SpillKeepFree is the free space the spill file leaves on its file
	// system: a batch that would leave less is not appended (its events
	// are kept in memory only, counted in the same error line), so that
	// the file never takes the room a store on that file system keeps
	// for itself (badger.MinFreeSpace). Zero leaves none.
	SpillKeepFree uint64
	// OnRecord, when set, is told of every event Record is given, before
	// it is queued, summarised or dropped (a metrics counter). It must not
	// block.
	OnRecord func(Event)
	// sizeReadInterval, when set, replaces sizeReadInterval (the tests'
	// 20 ms).
	sizeReadInterval time.Duration
}

// New starts the writer goroutine; Close stops it after writing what is queued.
func New(store storage.Store, logger *zap.Logger, opts Options) *Log {
	if opts.Buffer <= 0 {
		opts.Buffer = 8192
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 200 * time.Millisecond
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 256
	}
	if opts.BacklogBytes <= 0 {
		opts.BacklogBytes = 32 << 20
	}
	if opts.CloseTimeout <= 0 {
		opts.CloseTimeout = 10 * time.Second
	}
	if opts.SpillBytes <= 0 {
		opts.SpillBytes = 64 << 20
	}
	if opts.sizeReadInterval <= 0 {
		opts.sizeReadInterval = sizeReadInterval
	}
	l := &Log{store: store,
		events: make(chan Event, opts.Buffer), flushReq: make(chan chan flushed), done: make(chan struct{}),
		backlogLimit: opts.BacklogBytes, batchSize: opts.BatchSize, closeTimeout: opts.CloseTimeout, onRecord: opts.OnRecord,
		trimWidth: trimStep, sizeReadEvery: opts.sizeReadInterval, trimToken: newTrimToken()}
	l.Reconfigure(logger, opts.Settings)
	if opts.SpillFile != "" {
		l.openSpill(opts.SpillFile, opts.SpillBytes, opts.SpillKeepFree, opts.SpillTag)
	}
	l.wg.Add(1)
	go l.run(opts.FlushInterval)
	return l
}

// openSpill opens the spill file and takes the events a previous writer
// left in it into the backlog, to be written when the store answers.
// Without a usable file the writer keeps its backlog in memory only.
func (l *Log) openSpill(path string, limit int64, keepFree uint64, tag SpillTagger) {
	s, events, cut, forged, err := openSpill(path, limit, keepFree, tag)
	if err != nil {
		l.log().Error("the audit spill file cannot be used: events the store refuses are kept in memory only", zap.Error(err))
		return
	}
	if forged > 0 {
		l.log().Error("audit spill file lines whose tag does not verify are not stored, but set aside: written by something other than Gatehouse "+
			"with this keystore, or by a version before the tags (after an upgrade during a store outage); read them there",
			zap.String("path", path+".rejected"), zap.Int("lines", forged))
	}
	if cut > 0 {
		l.log().Warn("the end of the audit spill file was cut short (a crash while it was written) and is dropped",
			zap.String("path", path), zap.Int64("bytes", cut))
	}
	l.spill = s
	if len(events) > 0 {
		l.log().Info("audit events a previous run could not write to the store are written now",
			zap.String("path", path), zap.Int("events", len(events)))
		l.keep(events, false)
	}
}

// Reconfigure sets the logger that mirrors every event and the settings
// of the events written from now on (zero values take the defaults): a
// writer shared across config reloads follows the latest config.
func (l *Log) Reconfigure(logger *zap.Logger, s Settings) {
	if s.Retention <= 0 {
		s.Retention = 30 * 24 * time.Hour
	}
	if s.RefusalsPerMinute == 0 {
		s.RefusalsPerMinute = DefaultRefusalsPerMinute
	}
	l.retention.Store(int64(s.Retention))
	l.refusalsPerMinute.Store(int64(s.RefusalsPerMinute))
	l.maxBytes.Store(s.MaxBytes)
	l.logger.Store(logger)
}

// log is the current logger (see Reconfigure).
func (l *Log) log() *zap.Logger { return l.logger.Load() }

// Record queues an event. It never blocks for allowed requests (they are
// counted as dropped when the queue is full); every other event waits for
// room, so refusals and changes are never lost.
func (l *Log) Record(e Event) {
	l.recording.Add(1) // before the check of done: Close waits for it (see run's stop)
	defer l.recording.Add(-1)
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	e.Path = HideCredentials(hideParameterValues(e.Path))
	e.Username = HideCredentials(e.Username)
	e.Host = HideCredentials(e.Host)
	e.clipTo(maxField)
	if l.onRecord != nil {
		l.onRecord(e)
	}
	if e.logsAtOnce() {
		l.logEvent(e)
		e.logged = true
	}
	select {
	case <-l.done:
		l.recordLate(e)
		return
	default:
	}
	if e.mustKeep() {
		select {
		case l.events <- e:
		case <-l.done:
			l.recordLate(e)
		}
		return
	}
	select {
	case l.events <- e:
	default:
		l.dropped.Add(1)
	}
}

// recordLate leaves a trace of an event recorded after Close, which the
// store will never have: its log line, and an error line counting them.
func (l *Log) recordLate(e Event) {
	if !e.logged {
		l.logEvent(e)
	}
	if due, n := l.late.Due(time.Now()); due {
		l.log().Error("audit events recorded after the audit writer closed were not written to the store; they are only in this log",
			zap.Int64("events", n))
	}
}

// Dropped is the number of allowed-request events dropped under load.
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// Flush returns once every event queued before the call has been
// offered to the store (past any pause after a failure), and returns how
// many events the store has still not taken (0 normally; the outage
// backlog otherwise). The summaries of the minute still open are not
// written (Query shows them).
func (l *Log) Flush() (pending int) { return l.flush().pending }

// flushed is the writer's answer to a Flush: what the store has not
// taken, copies of the summaries still open, and how many times the
// writer had begun writing summaries (Log.summaryRounds).
type flushed struct {
	pending int
	open    []Event
	round   uint64
}

func (l *Log) flush() flushed {
	ack := make(chan flushed)
	select {
	case l.flushReq <- ack:
		return <-ack
	case <-l.done:
		l.wg.Wait() // Close under way: what it writes, the summaries too, is in the store once the writer ends
		return flushed{pending: len(l.backlog)}
	}
}

// Close writes what is queued and stops the writer; what the store did
// not take stays in the spill file, if any, for the next writer.
func (l *Log) Close() {
	l.closeOnce.Do(func() {
		close(l.done)
		l.wg.Wait()
		if l.spill != nil {
			if err := l.spill.close(); err != nil {
				l.log().Error("closing the audit spill file", zap.Error(err))
			}
		}
	})
}

func (l *Log) run(interval time.Duration) {
	defer l.wg.Done()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	batch := make([]Event, 0, l.batchSize)
	force := false // set while an explicit Flush drains
	flush := func() {
		if len(batch) > 0 || len(l.backlog) > 0 {
			l.write(batch, force)
			batch = batch[:0]
		}
	}
	// Refusals and the successes summarised like them (a credential's
	// holder repeating them) are counted apart, each within the
	// allowance: refusals anyone can send must not crowd the successes
	// into summaries that lose who got a token from where.
	var refusals, successes floodGate
	gates := [...]*floodGate{&refusals, &successes}
	add := func(e Event) {
		batch = append(batch, e)
		if len(batch) >= l.batchSize {
			flush()
		}
	}
	// addTrimRecord adds the event that records the deletions past
	// maxBytes, when one is due, counted like those given to Record.
	addTrimRecord := func(e Event, due bool) {
		if due {
			if l.onRecord != nil {
				l.onRecord(e)
			}
			add(e)
		}
	}
	// summarise adds the summaries of the refusals counted so far (all of
	// them when t is zero; else those of a window that ended before t).
	summarise := func(t time.Time) {
		for _, g := range gates {
			if t.IsZero() || g.due(t) {
				summaries := g.closeWindow(t)
				if len(summaries) > 0 {
					l.summaryRounds.Add(1) // before the store has any of them: see Query
				}
				for _, e := range summaries {
					add(e)
				}
			}
		}
	}
	take := func(e Event) {
		summarise(e.Time)
		g := &refusals
		if e.Outcome == OutcomeSuccess {
			g = &successes
		}
		g.allowance = int(l.refusalsPerMinute.Load())
		if g.admit(&e) {
			add(e)
		}
	}
	drain := func() { // everything queued, to the store
		for {
			select {
			case e := <-l.events:
				take(e)
			default:
				flush()
				return
			}
		}
	}
	stop := func() {
		l.storeDownUntil, l.closeBy = time.Time{}, time.Now().Add(l.closeTimeout) // a last try, bounded
		// A Record that saw done open may still queue its event: wait for
		// those under way (each ends at once now that done is closed).
		for drain(); l.recording.Load() > 0; {
			runtime.Gosched()
		}
		drain() // what those queued before they ended
		summarise(time.Time{})
		addTrimRecord(l.recordTrimmed(time.Now(), l.maxBytes.Load(), true))
		flush()
		// Without a spill file, what the store does not hold is only in
		// the log; with one, only what the file could not take is.
		onlyLogged := uint64(len(l.backlog)) + l.lost
		if l.spill != nil {
			onlyLogged = l.notSpilled
			if l.spill.events > 0 {
				l.log().Warn("audit events the store refused are kept in the spill file; the next start writes them to the store",
					zap.Int("events", l.spill.events), zap.String("path", l.spill.path))
			}
		}
		if onlyLogged > 0 {
			l.log().Error("audit events the store refused were never written to it; they are only in this log",
				zap.Uint64("events", onlyLogged))
		}
	}
	for {
		select { // Close first: a select among ready cases picks at random
		case <-l.done:
			stop()
			return
		default:
		}
		select {
		case e := <-l.events:
			take(e)
		case <-ticker.C:
			summarise(time.Now())
			flush()
			addTrimRecord(l.watchSize(time.Now()))
		case ack := <-l.flushReq:
			force, l.storeDownUntil = true, time.Time{} // someone waits: try the store now
			drain()
			force = false
			ack <- flushed{pending: len(l.backlog), open: append(refusals.open(), successes.open()...), round: l.summaryRounds.Load()}
		case <-l.done:
			stop()
			return
		}
	}
}

// write logs batch and writes it to the store, after the backlog of
// events the store refused before: one batch of it at least, all of it
// when force is set (an explicit Flush), and otherwise as much as it can
// without keeping requests waiting. While closing, nothing is written
// past closeBy. What the store refuses now joins the backlog.
func (l *Log) write(batch []Event, force bool) {
	ready := make([]pending, len(batch))
	for i := range batch {
		if !batch[i].logged {
			l.logEvent(batch[i])
		}
		raw := encode(&batch[i])
		ready[i] = pending{key: eventKey(batch[i].Time, batch[i].trimmable()), raw: raw, time: batch[i].Time}
	}
	if time.Now().Before(l.storeDownUntil) || l.closeOverdue() {
		l.keep(ready, true) // the store failed a moment ago, or Close has waited long enough: keep draining
		return
	}
	// The backlog goes first, a batch at a time, but yields while events
	// queue up: a request that must record a refusal waits for room.
	for i := 0; len(l.backlog) > 0 && (i == 0 || force || len(l.events) <= cap(l.events)/4) && !l.closeOverdue(); i++ {
		n := min(len(l.backlog), l.batchSize)
		if !l.storeEvents(l.backlog[:n]) {
			l.keep(ready, true)
			return
		}
		l.shift(n)
		if len(l.backlog) == 0 {
			l.recovered()
		}
	}
	if len(ready) > 0 && !l.storeEvents(ready) {
		l.keep(ready, true)
	}
}

// recovered notes that the store took the whole backlog: the spill file
// is emptied.
func (l *Log) recovered() {
	l.backlog = nil // let the outage's array go
	l.log().Info("the store accepts audit events again; those it refused are written (those past their retention skipped)",
		zap.Uint64("dropped_from_memory", l.lost))
	l.lost, l.notSpilled = 0, 0
	l.failLine, l.unlogged = time.Time{}, 0 // the next outage's first failure is logged at once
	if l.spill != nil {
		if err := l.spill.clear(); err != nil {
			l.log().Error("emptying the audit spill file: a restart would write its events again (under the same keys)", zap.Error(err))
		}
	}
}

// closeOverdue reports whether Close has waited CloseTimeout for the
// store.
func (l *Log) closeOverdue() bool {
	return !l.closeBy.IsZero() && !time.Now().Before(l.closeBy)
}

// storeEvents writes events to the store in batches of at most
// maxBatchBytes, each kept for the retention from its own time (one
// already past it is not written), and counts their bytes (countBytes).
// It reports whether all were written.
func (l *Log) storeEvents(events []pending) bool {
	now := time.Now()
	retention := time.Duration(l.retention.Load())
	ops := make([]storage.Op, 0, len(events))
	times := make([]time.Time, 0, len(events))
	for _, p := range events {
		if ttl := retention - now.Sub(p.time); ttl > 0 {
			ops = append(ops, storage.Op{Kind: storage.OpPut, Key: p.key, Value: p.raw, TTL: ttl})
			times = append(times, p.time)
		}
	}
	for len(ops) > 0 {
		n, size := 0, 0
		for n < len(ops) && (n == 0 || size+len(ops[n].Value) <= maxBatchBytes) {
			size += len(ops[n].Value)
			n++
		}
		if !l.storeBatch(ops[:n]) {
			return false // the whole of events is kept: rewriting the stored part overwrites it
		}
		l.countBytes(ops[:n], times[:n], retention)
		ops, times = ops[n:], times[n:]
	}
	return true
}

// maxBatchBytes bounds the values of one store batch: Badger refuses a
// transaction beyond a share of its memtable, and events a client shaped
// (escaped characters grow up to sixfold in JSON) must not make a batch
// that can never be written.
const maxBatchBytes = 1 << 20

// storeBatch writes ops in one store batch. A failing store is retried
// for a while, so that refusals are not lost to a blip; but not once it
// has been failing (events are waiting in the backlog), and never while
// events pile up behind this batch: a request that must record a refusal
// waits for room in the queue, and a dead store must cost it a fast 503,
// not a stall. After a failure the store is left alone for storePause.
func (l *Log) storeBatch(ops []storage.Op) bool {
	deadline := time.Now().Add(10 * time.Second)
	if !l.closeBy.IsZero() && l.closeBy.Before(deadline) {
		deadline = l.closeBy
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	attempts := 5
	if len(l.backlog) > 0 {
		attempts = 1
	}
	for attempt := 1; ; attempt++ {
		err := l.store.Batch(ctx, ops)
		if err == nil {
			return true
		}
		if attempt == attempts || ctx.Err() != nil || len(l.events) > cap(l.events)/4 {
			now := time.Now()
			l.storeDownUntil = now.Add(storePause)
			l.unlogged++
			if l.failLine.IsZero() || now.Sub(l.failLine) >= failLineInterval {
				l.log().Error("audit events could not be written to the store; they remain in this log and are kept to be written when it answers",
					zap.Int("events", len(ops)), zap.Int("waiting", len(l.backlog)), zap.Duration("next_attempt_in", storePause),
					zap.Int("failed_attempts_since_last_line", l.unlogged), zap.Error(err))
				l.failLine, l.unlogged = now, 0
			}
			return false
		}
		time.Sleep(time.Duration(100<<(attempt-1)) * time.Millisecond)
	}
}

// keep appends events to the backlog, dropping the oldest beyond its
// byte limit, and to the spill file when toDisk (not for the events read
// from it).
func (l *Log) keep(events []pending, toDisk bool) {
	if toDisk && l.spill != nil && len(events) > 0 {
		notKept, err := l.spill.add(events)
		if notKept > 0 {
			if l.notSpilled == 0 {
				l.log().Error("audit events the store refused could not be kept in the spill file (full or failing); they are kept in memory only",
					zap.String("path", l.spill.path), zap.Int64("limit_bytes", l.spill.limit), zap.Error(err))
			}
			l.notSpilled += uint64(notKept)
		}
	}
	for _, p := range events {
		l.backlog = append(l.backlog, p)
		l.backlogBytes += len(p.raw)
	}
	dropped, over := 0, l.backlogBytes-l.backlogLimit
	for ; over > 0 && dropped < len(l.backlog); dropped++ {
		over -= len(l.backlog[dropped].raw)
	}
	if dropped > 0 {
		if l.lost == 0 {
			l.log().Error("the audit backlog is full: the oldest events the store refused are dropped from memory (they are in this log)",
				zap.Int("limit_bytes", l.backlogLimit))
		}
		l.lost += uint64(dropped)
		l.shift(dropped)
	}
}

// shift removes the n oldest events of the backlog.
func (l *Log) shift(n int) {
	for _, p := range l.backlog[:n] {
		l.backlogBytes -= len(p.raw)
	}
	clear(l.backlog[:n]) // let their JSON go now, not when the array is reallocated
	l.backlog = l.backlog[n:]
}

// storePause is how long the writer stops trying a store that failed a
// batch: the batches of that time are only logged. A variable for tests
// (an outage's retries, without waiting a second for each).
var storePause = time.Second

// failLineInterval is the least time between two lines saying the store
// refused a batch, in one outage: the writer tries it every storePause,
// and a line each time was 3 600 an hour of a full disk, with or without
// traffic. The outage's first line is logged at once, its end too (the
// store accepts audit events again). A variable for tests.
var failLineInterval = time.Minute

func (l *Log) logEvent(e Event) {
	fields := []zap.Field{zap.String("kind", e.Kind), zap.String("outcome", e.Outcome), zap.String("username", e.Username),
		zap.String("credential", e.Credential), zap.String("remote_ip", e.RemoteIP),
		zap.String("method", e.Method), zap.String("path", e.Path), zap.String("host", e.Host), zap.String("reason", e.Reason), zap.String("actor", e.Actor)}
	if e.Count > 0 {
		fields = append(fields, zap.Int("count", e.Count), zap.Time("first", e.First))
	}
	l.log().Info("audit", fields...)
}

// eventKey orders keys newest first: the inverted timestamp, then a random
// suffix so events of the same nanosecond do not collide. The key of an
// event that Options.MaxBytes may delete before its retention (trimmable)
// has trimmableMark between the two: the store's tag covers the key, so a
// store writer cannot make a change's event look like one.
func eventKey(t time.Time, trimmable bool) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], rand.Uint64()) //nolint:gosec // G404: a tie-breaker between keys, not a secret
	mark := ""
	if trimmable {
		mark = trimmableMark
	}
	return keyPrefix + keyTime(t) + mark + hex.EncodeToString(b[:])
}

// keyTime is the part of an event key that orders it: t inverted, in 16
// hex digits, so that newer events come first.
func keyTime(t time.Time) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], math.MaxInt64-uint64(t.UnixNano()))
	return hex.EncodeToString(b[:])
}

// Filter selects events for Query.
type Filter struct {
	// Username keeps only events of that exact username when non-empty.
	Username string
	// Kind keeps only events of that Event.Kind when non-empty.
	Kind string
	// Outcome keeps only events of that Event.Outcome when non-empty.
	Outcome string
	// Since excludes events older than it when non-zero.
	Since time.Time
	// Until keeps only events strictly older than it when non-zero: the
	// next page of a query is the same query until the time of the last
	// event it returned. The store is read from there on, not from the
	// newest event (scanOlder).
	Until time.Time
	// Limit caps the result (default 100, at most 10000).
	Limit int
}

// MaxQueryLimit is the most events one Query returns.
const MaxQueryLimit = 10000

// Query returns matching events, newest first, after writing queued ones;
// the summaries of the minute still open are among them, with their
// counts so far, but not yet in the store. Should the writer begin
// writing those while the store is read (the minute ended), the store
// might hold them as well: the query is made again.
func (l *Log) Query(ctx context.Context, f Filter) ([]Event, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, MaxQueryLimit)
	for {
		flushed := l.flush()
		if n := flushed.pending; n > 0 {
			return nil, fmt.Errorf("%d audit events are not in the store yet (it refused them; they are in Caddy's log): %w",
				n, storage.ErrUnavailable)
		}
		out, err := l.scan(ctx, f)
		if err != nil {
			return out, err
		}
		if len(flushed.open) > 0 && l.summaryRounds.Load() != flushed.round {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			continue // the writer began writing them meanwhile (at most once a minute)
		}
		for i := range flushed.open {
			if ev := &flushed.open[i]; f.matches(ev) {
				out = append(out, *ev)
			}
		}
		slices.SortStableFunc(out, func(a, b Event) int { return b.Time.Compare(a.Time) })
		return out[:min(len(out), f.Limit)], nil
	}
}

// scan returns the stored events that match f, newest first. An event
// whose JSON lacks one of f's needles cannot match and is passed over
// undecoded (decoding was most of a filtered query's time: 7.4 s for a
// user's events among 650 000) — where the store can, on its side
// (storage.ScanContaining: Redis sends only the candidates, 5 s and
// 200 MB for that query before), the scan bounded by f.Since's key;
// else the key's time still ends the scan at f.Since.
func (l *Log) scan(ctx context.Context, f Filter) ([]Event, error) {
	out := []Event{}
	needles := f.needles()
	err := l.scanOlderMatching(ctx, f.Until, f.Since, needles, func(e storage.Entry) error {
		if !containsAll(e.Value, needles) {
			if t, ok := timeOfKey(e.Key); ok && !f.Since.IsZero() && t.Before(f.Since) {
				return storage.ErrStopScan
			}
			return nil
		}
		var ev Event
		if err := decodeEvent(e.Value, &ev); err != nil {
			return nil // a corrupt record is skipped, not fatal to the query
		}
		if !f.Since.IsZero() && ev.Time.Before(f.Since) {
			return storage.ErrStopScan
		}
		if f.matches(&ev) {
			out = append(out, ev)
		}
		if len(out) >= f.Limit {
			return storage.ErrStopScan
		}
		return nil
	})
	return out, err
}

// scanOlder calls fn with the stored events older than until (every
// event when until is zero), newest first, until fn returns
// storage.ErrStopScan. The store scans by prefix only, but event keys
// order events newest first (eventKey: the inverted time in 16 hex
// digits), so the events older than until are exactly the keys whose
// digits exceed until's own at the first digit that differs: for each
// digit of until's, from the last, the prefixes of the digits above it.
// Those prefix scans, at most 15 a digit and each a seek, visit no event
// newer than until, however many there are.
func (l *Log) scanOlder(ctx context.Context, until time.Time, fn func(storage.Entry) error) error {
	return l.scanOlderMatching(ctx, until, time.Time{}, nil, fn)
}

// scanOlderMatching is scanOlder; with needles, it is given only the
// events whose stored JSON holds every one, the others passed over by
// the store where it can (storage.ScanContaining), and none older than
// since (when not zero).
func (l *Log) scanOlderMatching(ctx context.Context, until, since time.Time, needles [][]byte, fn func(storage.Entry) error) error {
	to := "" // the key past the oldest event since may keep
	if !since.IsZero() && !since.Before(earliestKeyTime) && !since.After(latestKeyTime) {
		to = keyPrefix + keyTime(since) + "\xff"
	}
	scan := func(prefix string, fn func(storage.Entry) error) error {
		if len(needles) == 0 {
			return l.store.Scan(ctx, prefix, fn)
		}
		return storage.ScanContaining(ctx, l.store, prefix, prefix, to, needles, fn)
	}
	switch {
	case until.IsZero() || until.After(latestKeyTime):
		return scan(keyPrefix, fn)
	case until.Before(earliestKeyTime):
		return nil // no event key is older
	}
	stopped := false
	visit := func(e storage.Entry) error {
		err := fn(e)
		stopped = errors.Is(err, storage.ErrStopScan)
		return err
	}
	bound := keyTime(until)
	for i := len(bound) - 1; i >= 0; i-- {
		for d := strings.IndexByte(hexDigits, bound[i]) + 1; d < len(hexDigits); d++ {
			prefix := keyPrefix + bound[:i] + hexDigits[d:d+1]
			if to != "" && prefix >= to {
				return nil // every later prefix holds only events older than since
			}
			if err := scan(prefix, visit); err != nil || stopped {
				return err
			}
		}
	}
	return nil
}

const hexDigits = "0123456789abcdef"

// decodeEvent decodes a stored event for scan (a variable: tests count
// the events a query decodes).
var decodeEvent = func(raw []byte, ev *Event) error { return json.Unmarshal(raw, ev) }

// needles are what the stored JSON of every event f matches holds
// (encode writes it compact, fields named as Event's tags): each of its
// username, kind and outcome filters as `"username":"alice"`. A filter
// value that any JSON encoder might write otherwise (escaped: quotes,
// backslashes, <, > and &, control and non-ASCII characters) gives no
// needle, so that no event written by another encoder is passed over.
func (f *Filter) needles() [][]byte {
	var out [][]byte
	for _, field := range [...]struct{ name, value string }{{"username", f.Username}, {"kind", f.Kind}, {"outcome", f.Outcome}} {
		if field.value != "" && plainJSON(field.value) {
			out = append(out, []byte(`"`+field.name+`":"`+field.value+`"`))
		}
	}
	return out
}

// plainJSON reports whether every JSON encoder writes s as it is, between
// quotes: printable ASCII without ", \, <, > and &.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || strings.IndexByte(`"\<>&`, c) >= 0 {
			return false
		}
	}
	return true
}

// containsAll reports whether raw holds every needle.
func containsAll(raw []byte, needles [][]byte) bool {
	for _, n := range needles {
		if !bytes.Contains(raw, n) {
			return false
		}
	}
	return true
}

// timeOfKey is the time an event key orders its event by (keyTime).
func timeOfKey(key string) (time.Time, bool) {
	digits, ok := strings.CutPrefix(key, keyPrefix)
	if !ok || len(digits) < 16 {
		return time.Time{}, false
	}
	v, err := strconv.ParseUint(digits[:16], 16, 64)
	if err != nil || v > math.MaxInt64 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(math.MaxInt64-v)), true
}

// The times an event key can hold (time.UnixNano's range).
var (
	earliestKeyTime = time.Unix(0, math.MinInt64)
	latestKeyTime   = time.Unix(0, math.MaxInt64)
)

// matches reports whether ev has the filter's username, kind and outcome
// and lies within its times.
func (f *Filter) matches(ev *Event) bool {
	return (f.Username == "" || ev.Username == f.Username) && (f.Kind == "" || ev.Kind == f.Kind) &&
		(f.Outcome == "" || ev.Outcome == f.Outcome) && !ev.Time.Before(f.Since) && (f.Until.IsZero() || ev.Time.Before(f.Until))
}
