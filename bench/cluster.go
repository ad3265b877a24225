package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/gatehouse-auth/gatehouse/internal/redisinfo"
	"github.com/gatehouse-auth/gatehouse/internal/testport"
)

// The Redis Cluster measurement (bench -redis-cluster, `make bench-redis`):
// Gatehouse keeps every key of a cluster in one hash slot, so one primary
// serves it all. This mode shows what that costs and how far it goes, on
// a real three-primary cluster (made by redis-cli --cluster create) with
// bin/caddy in front:
//
//   - the Redis commands and round trips of each kind of request, cache-hot
//     and cache-miss, on each primary (INFO commandstats; MONITOR on the
//     slot's primary for the round trips and the keys written);
//   - the keys written in a minute of steady traffic (app-key usage,
//     session activity; refusals write audit events);
//   - the ceiling of the slot: its primary driven to saturation by many
//     clients replaying the cache-miss round trips Gatehouse sent, next to
//     what one Gatehouse instance asks of it with the cache off and on.

// clusterOptions are the flags of the cluster measurement.
type clusterOptions struct {
	caddyBin string
	// conns are the load generator's connections to Caddy in the
	// throughput runs, workers the replaying clients of the ceiling run.
	conns, workers int
	// count is how long each kind is driven to count its commands, run
	// how long each throughput run lasts, steady the minute of steady
	// traffic (0: skipped).
	count, run, steady time.Duration
	out                string
}

// clusterMasters is the number of primaries of the measured cluster.
const clusterMasters = 3

// gatehouseSlotKey is a key in the hash slot of Gatehouse's cluster
// prefix, {gatehouse}: (storage/redis.DefaultClusterPrefix).
const gatehouseSlotKey = "{gatehouse}:"

// clusterBench is the running cluster and the Caddy in front of it.
type clusterBench struct {
	*env
	opts clusterOptions
	// ports are the primaries' client ports, clients their clients;
	// primary indexes the master of Gatehouse's slot.
	ports   []int
	clients []*goredis.Client
	primary int
	url     string
	// rows are the measured kinds; mixed sends every allowed kind, each
	// connection one kind.
	rows  []row
	mixed target
}

// ClusterReport is bench/out/redis-cluster.json.
type ClusterReport struct {
	// Machine describes where it ran: CPUs, load average at the start.
	Machine string `json:"machine"`
	// Primaries are the masters' addresses; SlotPrimary the one serving
	// Gatehouse's slot.
	Primaries   []string `json:"primaries"`
	SlotPrimary string   `json:"slot_primary"`
	// Kinds are the per-request figures of each kind, cache-hot and
	// cache-miss.
	Kinds []KindFigures `json:"kinds"`
	// DataCommandShare is each primary's share of all data commands the
	// counted requests caused (the slot's primary: 1).
	DataCommandShare []float64 `json:"data_command_share"`
	// KeysPerPrimary are the keys each primary holds at the end.
	KeysPerPrimary []int64 `json:"keys_per_primary"`
	// PublishesReceived are the PUBLISH messages each primary received
	// over the cluster bus (invalidations, broadcast to every node).
	PublishesReceived []int64 `json:"publishes_received"`
	// Steady is the minute of steady traffic; nil when skipped.
	Steady *SteadyFigures `json:"steady,omitempty"`
	// Hot and Miss are one Gatehouse instance at full load on the mixed
	// kinds with its cache (default size) and without (cache_size 1).
	Hot  LoadFigures `json:"hot"`
	Miss LoadFigures `json:"miss"`
	// Ceiling is the slot's primary saturated by replayed cache-miss
	// round trips.
	Ceiling CeilingFigures `json:"ceiling"`
}

// KindFigures are one kind's Redis cost per request.
type KindFigures struct {
	// Kind is the row (basic, app_key, session, connector_token,
	// basic_refused) and Cache "hot" or "miss".
	Kind  string `json:"kind"`
	Cache string `json:"cache"`
	// Requests were counted; Status200 of them answered 200.
	Requests  int `json:"requests"`
	Status200 int `json:"status_200"`
	// DataCommands are the data commands per request on each primary,
	// counting those transactions and scripts ran.
	DataCommands []float64 `json:"data_commands"`
	// RoundTrips, Transactions and Scripts are the primary's round trips
	// per request, and of them MULTI/EXEC transactions and scripts.
	RoundTrips   float64 `json:"round_trips"`
	Transactions float64 `json:"transactions"`
	Scripts      float64 `json:"scripts"`
	// KeysWritten per request (each write publishes its key once).
	KeysWritten float64 `json:"keys_written"`
	// Commands are the primary's calls per request by command.
	Commands map[string]float64 `json:"commands"`
}

// SteadyFigures are a stretch of steady, paced traffic on every allowed
// kind with the default cache.
type SteadyFigures struct {
	// Seconds the traffic lasted, Requests it sent.
	Seconds  float64 `json:"seconds"`
	Requests int     `json:"requests"`
	// Credentials are the credentials in use (one of each allowed kind),
	// RoundTrips the slot's primary's round trips meanwhile.
	Credentials int `json:"credentials"`
	RoundTrips  int `json:"round_trips"`
	// Written counts the keys written by key family (the first path
	// segment: "session", "appkeyused", …), DataCommands the primary's
	// data commands meanwhile.
	Written      map[string]int `json:"written"`
	DataCommands int64          `json:"data_commands"`
}

// LoadFigures are one Gatehouse instance at full load.
type LoadFigures struct {
	// RPS are the requests per second answered 200.
	RPS float64 `json:"rps"`
	// PrimaryCommandsPerSec are the data commands per second the slot's
	// primary ran, PrimaryCPU the share of one core it used.
	PrimaryCommandsPerSec float64 `json:"primary_commands_per_sec"`
	PrimaryCPU            float64 `json:"primary_cpu"`
	// HitRatio is the share of Gatehouse's state lookups its cache
	// answered.
	HitRatio float64 `json:"hit_ratio"`
}

// CeilingFigures are the slot's primary saturated by replayed round
// trips.
type CeilingFigures struct {
	// Workers are the replaying clients, each on a connection of its own.
	Workers int `json:"workers"`
	// RoundTripsPerRequest is the mixed cache-miss request's, and
	// RoundTripsPerSec how many the primary answered per second.
	RoundTripsPerRequest float64 `json:"round_trips_per_request"`
	RoundTripsPerSec     float64 `json:"round_trips_per_sec"`
	// DataCommandsPerSec are the data commands per second the primary
	// ran, those of the transactions and scripts included.
	DataCommandsPerSec float64 `json:"data_commands_per_sec"`
	// RequestsPerSec is RoundTripsPerSec over RoundTripsPerRequest: the
	// cache-miss requests per second the slot served.
	RequestsPerSec float64 `json:"requests_per_sec"`
	// PrimaryCPU is the share of one core the primary used.
	PrimaryCPU float64 `json:"primary_cpu"`
	// CPUPerRequestUs is the primary's CPU time per replayed request;
	// PerCoreRequestsPerSec is what a whole core would serve at that cost.
	CPUPerRequestUs       float64 `json:"cpu_per_request_us"`
	PerCoreRequestsPerSec float64 `json:"per_core_requests_per_sec"`
	// Failures are the round trips answered with an error.
	Failures int64 `json:"failures"`
}

// runClusterBench is the cluster measurement, start to report.
func runClusterBench(o clusterOptions) error {
	dir, err := os.MkdirTemp("", "gatehouse-bench-cluster-")
	if err != nil {
		return err
	}
	c := &clusterBench{env: &env{caddyBin: o.caddyBin, dir: dir, ports: map[string]int{}, targets: map[string]target{}}, opts: o}
	defer func() {
		for _, cl := range c.clients {
			cl.Close()
		}
		c.stop()
	}()
	rep := ClusterReport{Machine: machine()}
	if err := c.startCluster(); err != nil {
		return err
	}
	for i, p := range c.ports {
		rep.Primaries = append(rep.Primaries, loopback(p))
		if i == c.primary {
			rep.SlotPrimary = rep.Primaries[i]
		}
	}
	log.Printf("cluster: %d primaries %s; Gatehouse's slot is on %s", clusterMasters, strings.Join(rep.Primaries, " "), rep.SlotPrimary)
	if err := c.startGatehouse(""); err != nil {
		return err
	}
	if err := c.setupRows(); err != nil {
		return err
	}
	for _, r := range c.rows { // warm the cache and connections
		run(r.target, 2, time.Second, nil)
	}
	hot, _, _, err := c.countKinds("hot")
	if err != nil {
		return err
	}
	if o.steady > 0 {
		if rep.Steady, err = c.measureSteady(); err != nil {
			return err
		}
	}
	if rep.Hot, err = c.measureLoad("hot"); err != nil {
		return err
	}
	if err := c.startGatehouse("1"); err != nil { // a cache of one record: every lookup reads Redis
		return err
	}
	miss, trips, tripsPerRequest, err := c.countKinds("miss")
	if err != nil {
		return err
	}
	if rep.Miss, err = c.measureLoad("miss"); err != nil {
		return err
	}
	rep.Kinds = append(hot, miss...)
	if rep.Ceiling, err = c.measureCeiling(trips, tripsPerRequest); err != nil {
		return err
	}
	if rep.DataCommandShare, rep.KeysPerPrimary, rep.PublishesReceived, err = c.spread(rep.Kinds); err != nil {
		return err
	}
	printClusterReport(rep)
	raw, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(o.out, append(raw, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Println("wrote", o.out)
	return nil
}

// machine describes this machine: its CPUs and how busy it was.
func machine() string {
	model := "unknown CPU"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(raw)) {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimLeft(v, " \t:"))
				break
			}
		}
	}
	load := "?"
	if raw, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(raw))[:3], " ")
	}
	return fmt.Sprintf("%d × %s, load average %s at the start (%s)", runtime.NumCPU(), model, load, redisVersion())
}

// redisVersion is redis-server's version line, shortened.
func redisVersion() string {
	out, _ := exec.Command("redis-server", "--version").Output()
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return "Redis " + v
		}
	}
	return "Redis ?"
}

// startCluster runs clusterMasters redis-servers in cluster mode, each on
// a port whose cluster bus port (10000 above) is free, joins them with
// redis-cli --cluster create and waits until every node reports the
// cluster healthy and knows where every slot is.
func (c *clusterBench) startCluster() error {
	var addrs []string
	for i := range clusterMasters {
		name := fmt.Sprintf("node%d", i)
		port := freePort()
		for tries := 1; !testport.Reserve(port + 10000); tries++ {
			if tries == 100 {
				return errors.New("no free port with a free cluster bus port 10000 above it")
			}
			port = freePort()
		}
		c.ports = append(c.ports, port)
		c.env.ports[name] = port
		if err := startRedisServer(c.env, name, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000"); err != nil {
			return err
		}
		c.clients = append(c.clients, nodeClient(loopback(port)))
		addrs = append(addrs, loopback(port))
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	out, err := exec.Command("redis-cli", append(args, "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	ctx := context.Background()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ok := true
		for _, cl := range c.clients {
			info, err := cl.ClusterInfo(ctx).Result()
			slots, err2 := cl.ClusterSlots(ctx).Result() //nolint:staticcheck // SA1019: still answered by Redis 7+, and tells slot ownership directly
			ok = ok && err == nil && err2 == nil && strings.Contains(info, "cluster_state:ok") && len(slots) == clusterMasters
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the cluster was not healthy within 60 s")
		}
	}
	c.url = "redis://" + addrs[0] + "/0?cluster=true"
	for _, a := range addrs[1:] {
		c.url += "&addr=" + a
	}
	// Only the slot's master answers a command on a key of it; the others
	// redirect (MOVED).
	c.primary = -1
	for i, cl := range c.clients {
		if cl.Exists(ctx, gatehouseSlotKey).Err() == nil {
			c.primary = i
		}
	}
	if c.primary < 0 {
		return errors.New("no primary answers for Gatehouse's slot")
	}
	return nil
}

// primaryAddr is the address of the slot's primary.
func (c *clusterBench) primaryAddr() string { return loopback(c.ports[c.primary]) }

// clusterKinds are the kinds measured on the cluster, with their sites.
var clusterKinds = []kind{basicKind, appKeyKind, sessionKind, connectorKind}

// startGatehouse (re)starts the Caddy under test on the cluster, with the
// gatehouse cache_size cacheSize ("": the default); a restart keeps the
// data_dir (keystore, connector CA) and so every credential.
func (c *clusterBench) startGatehouse(cacheSize string) error {
	if c.caddyProc != nil {
		c.caddyProc.stop()
	} else {
		for _, name := range []string{"admin", "upstream", "auth_endpoint"} {
			c.env.ports[name] = freePort()
		}
		for _, k := range clusterKinds {
			c.env.ports[k.name] = freePort()
			if k.prepare != nil {
				if err := k.prepare(c.env); err != nil {
					return err
				}
			}
		}
	}
	c.cacheSize = cacheSize
	snippets := []string{backendSites}
	for _, k := range clusterKinds {
		snippets = append(snippets, k.site)
	}
	config, err := c.caddyfile(c.env.ports["admin"], filepath.Join(c.dir, "data"), "\t\tstorage "+c.url+"\n", snippets)
	if err != nil {
		return err
	}
	c.caddyProc, err = c.startCaddy(c.dir, c.env.ports["admin"], config, nil)
	return err
}

// setupRows seeds the bench user, its app key, a login session and a
// connector token through the admin API, and makes the rows: each kind,
// and basic_refused (a wrong password of another user, which Gatehouse
// refuses and audits).
func (c *clusterBench) setupRows() error {
	basic, err := basicSetup("basic")(c.env)
	if err != nil {
		return err
	}
	appKey, err := setupAppKeys("app_key")(c.env)
	if err != nil {
		return err
	}
	session, err := sessionRow("session", c.env)
	if err != nil {
		return err
	}
	connector, err := connectorKind.setup(c.env)
	if err != nil {
		return err
	}
	// The refusals are for a user of their own: a password flood
	// against the bench user would lock it out of the other rows.
	if _, err := c.mustCall(http.StatusCreated, "POST", "/gatehouse/users",
		map[string]any{"username": "flooded", "roles": []string{"bench"}, "password": benchPassword}); err != nil {
		return err
	}
	refused := row{name: "basic_refused", target: c.get("http://127.0.0.1:%d/", "basic",
		http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("flooded:wrong"))}}, nil)}
	c.rows = []row{basic, appKey, session, connector, refused}
	allowed := []target{basic.target, appKey.target, session.target, connector.target}
	c.mixed = target{cert: connector.target.cert, next: func(w int) *http.Request { return allowed[w%len(allowed)].next(w) }}
	for _, r := range c.rows {
		want := http.StatusOK
		if r.name == "basic_refused" {
			want = http.StatusUnauthorized
		}
		if got := statusOf(r.target); got != want {
			return fmt.Errorf("%s: HTTP %d, want %d", r.name, got, want)
		}
	}
	return nil
}

// statusOf sends one request of t and returns the answer's status (0
// when it failed).
func statusOf(t target) int {
	resp, err := newClient(t).Do(t.next(0))
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// countKinds drives each row for the count duration with 4 connections
// and returns its per-request figures (cache is "hot" or "miss"), the
// round trips the allowed kinds sent, in equal numbers of requests of
// each kind, and the round trips of such a mixed request.
func (c *clusterBench) countKinds(cache string) (_ []KindFigures, _ []roundTrip, tripsPerRequest float64, err error) {
	var figures []KindFigures
	perKind := map[string][]roundTrip{}
	var allowed []KindFigures
	for _, r := range c.rows {
		c.settle() // what the last row or the setup left to write (audit events) is not this row's
		before, err := c.commandStats()
		if err != nil {
			return nil, nil, 0, err
		}
		mon, err := startMonitor(c.primaryAddr())
		if err != nil {
			return nil, nil, 0, err
		}
		s := run(r.target, 4, c.opts.count, nil)
		c.settle()
		lines, err := mon.stop()
		if err != nil {
			return nil, nil, 0, err
		}
		after, err := c.commandStats()
		if err != nil {
			return nil, nil, 0, err
		}
		f := kindFigures(r.name, cache, s, before, after, lines, c.primary)
		log.Printf("%-15s cache-%-4s %6d requests: %5.2f data commands, %5.2f round trips, %5.3f keys written per request on the slot's primary; other primaries %v",
			f.Kind, f.Cache, f.Requests, f.DataCommands[c.primary], f.RoundTrips, f.KeysWritten, others(f.DataCommands, c.primary))
		figures = append(figures, f)
		if r.name != "basic_refused" {
			perKind[r.name] = roundTrips(lines)
			allowed = append(allowed, f)
		}
	}
	// As many requests of each kind: the fewest any kind made.
	fewest := slices.MinFunc(allowed, func(a, b KindFigures) int { return a.Requests - b.Requests }).Requests
	var trips []roundTrip
	for _, f := range allowed {
		n := min(len(perKind[f.Kind]), int(float64(fewest)*f.RoundTrips+0.5))
		trips = append(trips, perKind[f.Kind][:n]...)
		tripsPerRequest += f.RoundTrips / float64(len(allowed))
	}
	return figures, trips, tripsPerRequest, nil
}

// others are the figures of every primary but the slot's.
func others(v []float64, primary int) []float64 {
	return slices.Delete(slices.Clone(v), primary, primary+1)
}

// kindFigures computes one kind's per-request figures from the
// commandstats of every primary before and after, and the MONITOR lines
// of the slot's primary.
func kindFigures(name, cache string, s stats, before, after []redisinfo.CommandStats, lines []monitored, primary int) KindFigures {
	n := float64(s.ok + s.errors)
	f := KindFigures{Kind: name, Cache: cache, Requests: s.ok + s.errors, Status200: s.ok, Commands: map[string]float64{}}
	if n == 0 {
		return f
	}
	for i := range after {
		f.DataCommands = append(f.DataCommands, float64(after[i].Minus(before[i]).Data())/n)
	}
	for cmd, calls := range after[primary].Minus(before[primary]) {
		if redisinfo.IsData(cmd) {
			f.Commands[cmd] = float64(calls) / n
		}
	}
	trips := roundTrips(lines)
	f.RoundTrips = float64(len(trips)) / n
	for _, t := range trips {
		switch {
		case t.transaction:
			f.Transactions++
		case strings.HasPrefix(strings.ToLower(t.commands[0][0]), "eval"):
			f.Scripts++
		}
	}
	f.Transactions /= n
	f.Scripts /= n
	f.KeysWritten = float64(len(writtenKeys(lines))) / n
	return f
}

// writtenKeys are the keys (without the prefix) whose invalidations the
// lines show published: one per key written.
func writtenKeys(lines []monitored) []string {
	var keys []string
	for _, m := range lines {
		if strings.EqualFold(m.args[0], "publish") && len(m.args) == 3 {
			if _, key, ok := strings.Cut(m.args[2], ":"); ok { // "<instance id>:<key>"
				keys = append(keys, key)
			}
		}
	}
	return keys
}

// settle waits until the slot's primary has run no data command for half
// a second (at most 10 s): the audit writer writes refusals after the
// requests.
func (c *clusterBench) settle() {
	last := int64(-1)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		stats, err := c.commandStats()
		if err != nil {
			return
		}
		if n := stats[c.primary].Data(); n != last {
			last = n
			continue
		}
		return
	}
}

// commandStats reads INFO commandstats of every primary.
func (c *clusterBench) commandStats() ([]redisinfo.CommandStats, error) {
	var all []redisinfo.CommandStats
	for i, cl := range c.clients {
		info, err := cl.Info(context.Background(), "commandstats").Result()
		if err != nil {
			return nil, fmt.Errorf("INFO commandstats of primary %d: %v", i, err)
		}
		s, err := redisinfo.ParseCommandStats(info)
		if err != nil {
			return nil, err
		}
		all = append(all, s)
	}
	return all, nil
}

// primaryCPU is the CPU time (user and system) the slot's primary has
// used so far (0 when it cannot be read).
func (c *clusterBench) primaryCPU() time.Duration {
	info, err := c.clients[c.primary].Info(context.Background(), "cpu").Result()
	if err != nil {
		return 0
	}
	var total float64
	for _, field := range []string{"used_cpu_user", "used_cpu_sys"} {
		v, _ := strconv.ParseFloat(redisinfo.Field(info, field), 64)
		total += v
	}
	return time.Duration(total * float64(time.Second))
}

// measureSteady sends paced traffic on every allowed kind (4 connections,
// each pausing 20 ms between requests) for the steady duration, with the
// default cache, and counts the keys written by family.
func (c *clusterBench) measureSteady() (*SteadyFigures, error) {
	before, err := c.commandStats()
	if err != nil {
		return nil, err
	}
	mon, err := startMonitor(c.primaryAddr())
	if err != nil {
		return nil, err
	}
	paced := target{cert: c.mixed.cert, next: func(w int) *http.Request { time.Sleep(20 * time.Millisecond); return c.mixed.next(w) }}
	log.Printf("steady traffic for %s …", c.opts.steady)
	s := run(paced, 4, c.opts.steady, nil)
	c.settle()
	lines, err := mon.stop()
	if err != nil {
		return nil, err
	}
	after, err := c.commandStats()
	if err != nil {
		return nil, err
	}
	f := &SteadyFigures{Seconds: c.opts.steady.Seconds(), Requests: s.ok + s.errors, Written: map[string]int{},
		Credentials: len(c.rows) - 1, RoundTrips: len(roundTrips(lines)), DataCommands: after[c.primary].Minus(before[c.primary]).Data()}
	for _, k := range writtenKeys(lines) {
		family, _, _ := strings.Cut(k, "/")
		f.Written[family]++
	}
	log.Printf("steady: %d requests (%d not 200), %d round trips and %d data commands on the slot's primary, keys written by family %v",
		f.Requests, s.errors, f.RoundTrips, f.DataCommands, f.Written)
	return f, nil
}

// measureLoad drives every allowed kind at full load (the conns
// connections split among them) for the run duration and reads what the
// slot's primary did meanwhile, and Gatehouse's cache hit ratio.
func (c *clusterBench) measureLoad(cache string) (LoadFigures, error) {
	before, err := c.commandStats()
	if err != nil {
		return LoadFigures{}, err
	}
	hits, misses := cacheCounters(c)
	t0 := time.Now()
	s := run(c.mixed, c.opts.conns, c.opts.run, func() counters { return counters{serverCPU: c.primaryCPU()} })
	elapsed := time.Since(t0).Seconds()
	after, err := c.commandStats()
	if err != nil {
		return LoadFigures{}, err
	}
	hits2, misses2 := cacheCounters(c)
	f := LoadFigures{RPS: s.rps, PrimaryCommandsPerSec: float64(after[c.primary].Minus(before[c.primary]).Data()) / elapsed,
		PrimaryCPU: s.cpuUs * s.rps / 1e6}
	if lookups := hits2 - hits + misses2 - misses; lookups > 0 {
		f.HitRatio = (hits2 - hits) / lookups
	}
	log.Printf("Gatehouse cache-%s at full load: %.0f requests/s (%d not 200), slot's primary %.0f data commands/s at %.0f%% of a core, cache hit ratio %.4f",
		cache, f.RPS, s.errors, f.PrimaryCommandsPerSec, 100*f.PrimaryCPU, f.HitRatio)
	return f, nil
}

// measureCeiling has many clients replay the cache-miss round trips
// against the slot's primary for the run duration, each on a connection
// of its own from its own place in the list, as fast as the primary
// answers; tripsPerRequest are the round trips of one mixed cache-miss
// request. The clients send pre-encoded RESP and skip the replies
// unparsed, so that the load generator, which shares the machine, takes
// as little of it as it can.
func (c *clusterBench) measureCeiling(trips []roundTrip, tripsPerRequest float64) (CeilingFigures, error) {
	if len(trips) == 0 {
		return CeilingFigures{}, errors.New("no cache-miss round trips to replay")
	}
	f := CeilingFigures{Workers: c.opts.workers, RoundTripsPerRequest: tripsPerRequest}
	payloads := make([][]byte, len(trips))
	replies := make([]int, len(trips))
	for i, t := range trips {
		payloads[i], replies[i] = t.encode()
	}
	conns := make([]net.Conn, c.opts.workers)
	for w := range conns {
		conn, err := net.DialTimeout("tcp", c.primaryAddr(), 5*time.Second)
		if err != nil {
			return f, err
		}
		defer conn.Close()
		conns[w] = conn
	}
	var done, failed atomic.Int64
	var broken atomic.Value
	before, err := c.commandStats()
	if err != nil {
		return f, err
	}
	cpu0 := c.primaryCPU()
	t0 := time.Now()
	deadline := t0.Add(c.opts.run)
	var wg sync.WaitGroup
	for w, conn := range conns {
		wg.Go(func() {
			r := bufio.NewReader(conn)
			for i := w * len(trips) / len(conns); time.Now().Before(deadline); i++ {
				t := i % len(trips)
				if _, err := conn.Write(payloads[t]); err != nil {
					broken.Store(err)
					return
				}
				var err error
				for range replies[t] {
					if e := skipReply(r); e != nil && err == nil {
						err = e
					}
				}
				switch {
				case errors.Is(err, errReply):
					failed.Add(1)
				case err != nil:
					broken.Store(err)
					return
				default:
					done.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	cpu := c.primaryCPU() - cpu0
	if err, _ := broken.Load().(error); err != nil {
		return f, fmt.Errorf("replaying against the slot's primary: %v", err)
	}
	after, err := c.commandStats()
	if err != nil {
		return f, err
	}
	f.DataCommandsPerSec = float64(after[c.primary].Minus(before[c.primary]).Data()) / elapsed.Seconds()
	f.RoundTripsPerSec = float64(done.Load()) / elapsed.Seconds()
	f.Failures = failed.Load()
	f.PrimaryCPU = cpu.Seconds() / elapsed.Seconds()
	if tripsPerRequest > 0 {
		f.RequestsPerSec = f.RoundTripsPerSec / tripsPerRequest
	}
	if f.RequestsPerSec > 0 {
		f.CPUPerRequestUs = float64(cpu.Microseconds()) / (f.RequestsPerSec * elapsed.Seconds())
		f.PerCoreRequestsPerSec = 1e6 / f.CPUPerRequestUs
	}
	log.Printf("ceiling: %d clients replaying cache-miss round trips: %.0f round trips/s = %.0f requests/s (%.2f round trips each), slot's primary at %.0f%% of a core, %.1f µs of its CPU per request, failures %d",
		f.Workers, f.RoundTripsPerSec, f.RequestsPerSec, tripsPerRequest, 100*f.PrimaryCPU, f.CPUPerRequestUs, f.Failures)
	return f, nil
}

// spread is how the counted requests' data commands split among the
// primaries (weighted by each row's requests), the keys each primary
// holds, and the PUBLISH messages each received over the cluster bus.
func (c *clusterBench) spread(kinds []KindFigures) (share []float64, keys, publishes []int64, err error) {
	share = make([]float64, len(c.clients))
	total := 0.0
	for _, k := range kinds {
		for i, v := range k.DataCommands {
			share[i] += v * float64(k.Requests)
			total += v * float64(k.Requests)
		}
	}
	for i := range share {
		share[i] /= max(total, 1)
	}
	ctx := context.Background()
	for _, cl := range c.clients {
		n, err := cl.DBSize(ctx).Result()
		if err != nil {
			return nil, nil, nil, err
		}
		info, err := cl.ClusterInfo(ctx).Result()
		if err != nil {
			return nil, nil, nil, err
		}
		received, _ := strconv.ParseInt(redisinfo.Field(info, "cluster_stats_messages_publish_received"), 10, 64)
		keys, publishes = append(keys, n), append(publishes, received)
	}
	return share, keys, publishes, nil
}

// monitor records what a Redis server runs (MONITOR), on a connection of
// its own, until stop.
type monitor struct {
	addr string
	conn net.Conn
	// lines are filled by the reader until done is closed; ended is set
	// when it stopped at stop's marker.
	lines []string
	ended bool
	done  chan struct{}
}

// monitorEnd is the argument of the ECHO command that marks the end of
// what a monitor records.
const monitorEnd = "gatehouse-bench-monitor-end"

// startMonitor starts MONITOR on the redis-server at addr (host:port).
func startMonitor(addr string) (*monitor, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(conn, 1<<20)
	if _, err = conn.Write([]byte("MONITOR\r\n")); err == nil {
		var ok string
		if ok, err = r.ReadString('\n'); err == nil && ok != "+OK\r\n" {
			err = fmt.Errorf("MONITOR answered %q", ok)
		}
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	m := &monitor{addr: addr, conn: conn, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(strings.TrimPrefix(line, "+"), "\r\n")
			if strings.HasSuffix(line, `"`+monitorEnd+`"`) {
				m.ended = true
				return
			}
			m.lines = append(m.lines, line)
		}
	}()
	return m, nil
}

// stop ends the monitor once it has seen everything the server ran
// before (it sends a marker and waits up to 10 s for it) and returns what
// it saw, parsed.
func (m *monitor) stop() ([]monitored, error) {
	defer func() { m.conn.Close(); <-m.done }()
	marker := nodeClient(m.addr)
	err := marker.Echo(context.Background(), monitorEnd).Err()
	marker.Close()
	if err != nil {
		return nil, err
	}
	select {
	case <-m.done:
		if !m.ended {
			return nil, errors.New("MONITOR connection lost")
		}
	case <-time.After(10 * time.Second):
		return nil, errors.New("MONITOR did not show the end marker within 10 s")
	}
	parsed := make([]monitored, 0, len(m.lines))
	for _, line := range m.lines {
		p, err := parseMonitorLine(line)
		if err != nil {
			return nil, err
		}
		parsed = append(parsed, p)
	}
	return parsed, nil
}

// printClusterReport prints the figures as tables and the summary the
// operators' guide quotes.
func printClusterReport(r ClusterReport) {
	fmt.Printf("\nGatehouse on a Redis Cluster of %d primaries, every key in one slot — %s\n", len(r.Primaries), r.Machine)
	fmt.Printf("primaries %s; Gatehouse's slot on %s\n\n", strings.Join(r.Primaries, " "), r.SlotPrimary)
	fmt.Printf("%-16s %-5s %8s %14s %14s %11s %6s %7s %12s\n", "kind", "cache", "requests", "cmds/request", "other prim.", "round trips", "MULTI", "scripts", "keys written")
	fmt.Println(strings.Repeat("-", 102))
	primary := slices.Index(r.Primaries, r.SlotPrimary)
	for _, k := range r.Kinds {
		if len(k.DataCommands) == 0 {
			continue
		}
		rest := others(k.DataCommands, primary)
		fmt.Printf("%-16s %-5s %8d %14.2f %6.2f / %5.2f %11.2f %6.2f %7.3f %12.3f\n", k.Kind, k.Cache, k.Requests, k.DataCommands[primary],
			rest[0], rest[1], k.RoundTrips, k.Transactions, k.Scripts, k.KeysWritten)
	}
	fmt.Println("cmds/request: data commands the slot's primary ran per request, those of transactions and scripts included;")
	fmt.Println("other prim.: the same on the two other primaries; round trips, MULTI (transactions) and scripts: per request.")
	percent := make([]string, len(r.DataCommandShare))
	for i, v := range r.DataCommandShare {
		percent[i] = fmt.Sprintf("%.1f%%", 100*v)
	}
	fmt.Printf("\ndata commands by primary: %s; keys by primary: %v; PUBLISH messages received over the cluster bus: %v\n",
		strings.Join(percent, " / "), r.KeysPerPrimary, r.PublishesReceived)
	if s := r.Steady; s != nil {
		fmt.Printf("steady traffic, %.0f s, default cache, %d credentials in use: %d requests, %d round trips (%d data commands) on the slot's primary, keys written %v\n",
			s.Seconds, s.Credentials, s.Requests, s.RoundTrips, s.DataCommands, s.Written)
	}
	for _, l := range []struct {
		name string
		f    LoadFigures
	}{{"with its cache", r.Hot}, {"cache_size 1 (every lookup reads Redis)", r.Miss}} {
		fmt.Printf("one Gatehouse instance at full load, %s: %.0f requests/s, slot's primary %.0f data commands/s at %.0f%% of a core, cache hit ratio %.4f\n",
			l.name, l.f.RPS, l.f.PrimaryCommandsPerSec, 100*l.f.PrimaryCPU, l.f.HitRatio)
	}
	c := r.Ceiling
	fmt.Printf("ceiling: %d clients replaying the cache-miss round trips: %.0f requests/s (%.0f round trips/s, %.2f per request), slot's primary at %.0f%% of a core, %.1f µs of its CPU per request (%.0f requests/s per core), failures %d\n",
		c.Workers, c.RequestsPerSec, c.RoundTripsPerSec, c.RoundTripsPerRequest, 100*c.PrimaryCPU, c.CPUPerRequestUs, c.PerCoreRequestsPerSec, c.Failures)
	if r.Miss.RPS > 0 {
		fmt.Printf("\nOne slot served %.0f cache-miss requests/s, %.1f× the %.0f/s one Gatehouse instance asked of it with its cache off, on this machine.\n",
			c.RequestsPerSec, c.RequestsPerSec/r.Miss.RPS, r.Miss.RPS)
	}
	if s := r.Steady; s != nil && s.RoundTrips > 0 {
		// With the cache, a credential in use costs its round trips once
		// per cache lifetime (and its per-minute writes), whatever its
		// request rate.
		perCredential := float64(s.RoundTrips) / float64(s.Credentials) / s.Seconds
		fmt.Printf("With its cache, the slot's load follows the credentials in use, not the requests: %.3f round trips/s per credential in the steady run; at the ceiling's %.0f round trips/s, ≈ %.0f credentials in use, counted once for each instance that serves them.\n",
			perCredential, c.RoundTripsPerSec, c.RoundTripsPerSec/perCredential)
	}
}
