package main

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/gatehouse-auth/gatehouse/internal/redisinfo"
)

// monitored is one line of MONITOR output: who ran the command (a
// client's "host:port", or "lua" for a command a script ran) and the
// command's arguments.
type monitored struct {
	source string
	args   []string
}

// parseMonitorLine reads a MONITOR line, `1733331111.123456 [0
// 127.0.0.1:5555] "GET" "key"`: each argument quoted, with the escapes of
// Redis's sdscatrepr (\\ \" \n \r \t \a \b \xhh).
func parseMonitorLine(line string) (monitored, error) {
	_, rest, ok := strings.Cut(line, " [")
	header, rest, ok2 := strings.Cut(rest, "] ")
	_, source, ok3 := strings.Cut(header, " ")
	if !ok || !ok2 || !ok3 || source == "" {
		return monitored{}, fmt.Errorf("MONITOR: no [db source] in %q", line)
	}
	m := monitored{source: source}
	for rest != "" {
		arg, tail, err := unquoteRepr(rest)
		if err != nil {
			return monitored{}, fmt.Errorf("MONITOR: %v in %q", err, line)
		}
		m.args = append(m.args, arg)
		rest = strings.TrimPrefix(tail, " ")
	}
	if len(m.args) == 0 {
		return monitored{}, fmt.Errorf("MONITOR: no command in %q", line)
	}
	return m, nil
}

// reprEscapes are sdscatrepr's one-letter escapes.
var reprEscapes = map[byte]byte{'\\': '\\', '"': '"', 'n': '\n', 'r': '\r', 't': '\t', 'a': '\a', 'b': '\b'}

// unquoteRepr reads one quoted argument at the start of s and returns it
// and what follows it.
func unquoteRepr(s string) (arg, rest string, err error) {
	if s == "" || s[0] != '"' {
		return "", "", errors.New("argument not quoted")
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return b.String(), s[i+1:], nil
		case c != '\\':
			b.WriteByte(c)
		case i+1 < len(s) && s[i+1] == 'x':
			if i+3 >= len(s) {
				return "", "", errors.New("short \\x escape")
			}
			v, err := strconv.ParseUint(s[i+2:i+4], 16, 8)
			if err != nil {
				return "", "", fmt.Errorf("bad \\x escape %q", s[i:i+4])
			}
			b.WriteByte(byte(v))
			i += 3
		case i+1 < len(s) && reprEscapes[s[i+1]] != 0:
			b.WriteByte(reprEscapes[s[i+1]])
			i++
		default:
			return "", "", errors.New("bad escape")
		}
	}
	return "", "", errors.New("unterminated argument")
}

// roundTrip is what one client sent in one go: a transaction (MULTI, its
// commands, EXEC) or a single command.
type roundTrip struct {
	transaction bool
	commands    [][]string
}

// roundTrips groups the data commands that clients sent, in the order
// MONITOR showed them, into round trips. Commands that scripts ran (the
// script's EVALSHA is the round trip) and control commands are left out.
func roundTrips(lines []monitored) []roundTrip {
	var trips []roundTrip
	open := map[string]*roundTrip{} // per client, the transaction being sent
	for _, m := range lines {
		name := strings.ToLower(m.args[0])
		if m.source == "lua" {
			continue
		}
		if tx := open[m.source]; tx != nil {
			if name == "exec" {
				trips = append(trips, *tx)
				delete(open, m.source)
			} else {
				tx.commands = append(tx.commands, m.args)
			}
			continue
		}
		switch {
		case name == "multi":
			open[m.source] = &roundTrip{transaction: true}
		case redisinfo.IsData(name):
			trips = append(trips, roundTrip{commands: [][]string{m.args}})
		}
	}
	return trips
}

// encode is the round trip as RESP, as a client sends it (MULTI … EXEC
// around a transaction's commands), and the number of replies it gets.
func (t roundTrip) encode() (payload []byte, replies int) {
	commands := t.commands
	if t.transaction {
		commands = append(append([][]string{{"MULTI"}}, commands...), []string{"EXEC"})
	}
	for _, cmd := range commands {
		payload = fmt.Appendf(payload, "*%d\r\n", len(cmd))
		for _, arg := range cmd {
			payload = fmt.Appendf(payload, "$%d\r\n%s\r\n", len(arg), arg)
		}
	}
	return payload, len(commands)
}

// errReply is a RESP error reply.
var errReply = errors.New("redis answered an error")

// skipReply reads one RESP2 reply from r; an error reply is errReply,
// after it was read whole.
func skipReply(r *bufio.Reader) error {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return fmt.Errorf("malformed RESP line %q", line)
	}
	body := string(line[1 : len(line)-2])
	switch line[0] {
	case '+', ':':
		return nil
	case '-':
		return errReply
	case '$', '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return fmt.Errorf("malformed RESP length %q", line)
		}
		if line[0] == '$' {
			if n >= 0 {
				_, err = r.Discard(n + 2)
			}
			return err
		}
		var failed error
		for range n {
			if err := skipReply(r); errors.Is(err, errReply) {
				failed = err
			} else if err != nil {
				return err
			}
		}
		return failed
	}
	return fmt.Errorf("unknown RESP type in %q", line)
}
