// Package redisinfo reads what a Redis server says of itself in INFO
// answers: a field's value, and the calls per command of INFO
// commandstats, split into data commands and control commands. The Redis
// store reads its server's settings with it; the benchmark and the tests
// use it to show which server of a Redis Cluster does Gatehouse's work.
package redisinfo

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Field is the value of field in the text of an INFO answer ("field:value"
// lines), or "" when it has none.
func Field(info, field string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// CommandStats are the calls per command of a Redis server's INFO
// commandstats ("get", "cluster|slots"), counting the commands that
// transactions and scripts ran as well as the ones clients sent.
type CommandStats map[string]int64

// ParseCommandStats reads the "cmdstat_<name>:calls=N,usec=…" lines of an
// INFO commandstats answer.
func ParseCommandStats(info string) (CommandStats, error) {
	stats := CommandStats{}
	for line := range strings.Lines(info) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_")
		if !ok {
			continue
		}
		name, fields, ok := strings.Cut(rest, ":")
		calls, found := strings.CutPrefix(fields, "calls=")
		if !ok || !found {
			return nil, fmt.Errorf("INFO commandstats: malformed line %q", line)
		}
		calls, _, _ = strings.Cut(calls, ",")
		n, err := strconv.ParseInt(calls, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("INFO commandstats: malformed calls in %q", line)
		}
		stats[name] = n
	}
	return stats, nil
}

// controlCommands name what clients send to manage their connection or
// learn the cluster's layout, not to read or write data (with all their
// subcommands: "cluster" stands for "cluster|slots" too).
var controlCommands = []string{"ping", "echo", "info", "hello", "auth", "select", "monitor", "readonly", "subscribe",
	"unsubscribe", "cluster", "config", "client", "command"}

// IsData reports whether the command (as commandstats names it, "get" or
// "cluster|slots", in lower case) reads or writes data or publishes a
// message, rather than being a control command.
func IsData(name string) bool {
	base, _, _ := strings.Cut(name, "|")
	return !slices.Contains(controlCommands, base)
}

// Data is the number of calls of data commands.
func (s CommandStats) Data() int64 {
	var n int64
	for name, calls := range s {
		if IsData(name) {
			n += calls
		}
	}
	return n
}

// Minus is s less an earlier reading of the same server.
func (s CommandStats) Minus(before CommandStats) CommandStats {
	d := CommandStats{}
	for name, calls := range s {
		if n := calls - before[name]; n != 0 {
			d[name] = n
		}
	}
	return d
}
