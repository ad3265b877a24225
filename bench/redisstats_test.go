package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

func TestParseMonitorLine(t *testing.T) {
	for _, c := range []struct {
		line   string
		source string
		args   []string
	}{
		{`1796402956.600406 [0 127.0.0.1:59808] "GET" "a b"`, "127.0.0.1:59808", []string{"GET", "a b"}},
		{`1796402956.648852 [0 lua] "SET" "k" "x\"y\\n\x01z"`, "lua", []string{"SET", "k", "x\"y\\n\x01z"}},
		{`1796402956.685537 [0 127.0.0.1:59826] "set" "bin" "\xff\x00q\r\n\t\a\b"`, "127.0.0.1:59826", []string{"set", "bin", "\xff\x00q\r\n\t\a\b"}},
		{`1796402956.685537 [0 unix:/tmp/r.sock] "PING"`, "unix:/tmp/r.sock", []string{"PING"}},
		{`1796402956.685537 [0 127.0.0.1:1] "EXEC" ""`, "127.0.0.1:1", []string{"EXEC", ""}},
	} {
		m, err := parseMonitorLine(c.line)
		if err != nil || m.source != c.source || !reflect.DeepEqual(m.args, c.args) {
			t.Errorf("parseMonitorLine(%s) = %q %q, %v; want %q %q", c.line, m.source, m.args, err, c.source, c.args)
		}
	}
	for _, bad := range []string{"", "OK", `1.0 [0 127.0.0.1:1]`, `1.0 [0 127.0.0.1:1] GET`, `1.0 [0 127.0.0.1:1] "GET`,
		`1.0 [0 127.0.0.1:1] "\q"`, `1.0 [0 127.0.0.1:1] "\x4"`, `1.0 [0 127.0.0.1:1] "\xzz"`, `1.0 [0] "GET"`} {
		if m, err := parseMonitorLine(bad); err == nil {
			t.Errorf("parseMonitorLine(%q) = %q, no error", bad, m.args)
		}
	}
}

// repr quotes s as Redis's sdscatrepr does in MONITOR output.
func repr(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\a':
			b.WriteString(`\a`)
		case '\b':
			b.WriteString(`\b`)
		default:
			if c < 0x20 || c >= 0x7f {
				fmt.Fprintf(&b, `\x%02x`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// FuzzParseMonitorLine: any arguments, quoted as Redis quotes them, read
// back unchanged; and no line makes the parser panic.
func FuzzParseMonitorLine(f *testing.F) {
	f.Add("GET", "{gatehouse}:user/alice", "")
	f.Add("SET", "k", "x\"y\\n\x01z\xff")
	f.Add("PUBLISH", "{gatehouse}:invalidate", "0123456789abcdef:session/x")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		args := []string{a, b, c}
		line := "1796402956.600406 [0 127.0.0.1:59808] " + repr(a) + " " + repr(b) + " " + repr(c)
		m, err := parseMonitorLine(line)
		if err != nil || m.source != "127.0.0.1:59808" || !reflect.DeepEqual(m.args, args) {
			t.Fatalf("%s read as %q %q, %v", line, m.source, m.args, err)
		}
		_, _ = parseMonitorLine(a + b + c)
	})
}

func TestRoundTrips(t *testing.T) {
	lines := []monitored{
		{"c1", []string{"MULTI"}},
		{"c2", []string{"CLUSTER", "SLOTS"}},
		{"c1", []string{"GET", "k"}},
		{"c2", []string{"EVALSHA", "abc", "1", "k"}},
		{"lua", []string{"SET", "k", "v"}},
		{"c1", []string{"PTTL", "k"}},
		{"c3", []string{"PING"}},
		{"c1", []string{"EXEC"}},
		{"c3", []string{"ZRANGEBYLEX", "i", "-", "+"}},
	}
	want := []roundTrip{
		{commands: [][]string{{"EVALSHA", "abc", "1", "k"}}},
		{transaction: true, commands: [][]string{{"GET", "k"}, {"PTTL", "k"}}},
		{commands: [][]string{{"ZRANGEBYLEX", "i", "-", "+"}}},
	}
	if got := roundTrips(lines); !reflect.DeepEqual(got, want) {
		t.Errorf("roundTrips = %+v, want %+v", got, want)
	}
}

func TestSkipReply(t *testing.T) {
	replies := "+OK\r\n:42\r\n$-1\r\n$5\r\nhe\r\nl\r\n*3\r\n$1\r\nx\r\n*-1\r\n*2\r\n:1\r\n+QUEUED\r\n-ERR wrong\r\n*2\r\n-ERR inner\r\n:1\r\n+after\r\n"
	r := bufio.NewReader(strings.NewReader(replies))
	for i, want := range []error{nil, nil, nil, nil, nil, errReply, errReply, nil} {
		if err := skipReply(r); err != want {
			t.Fatalf("reply %d: %v, want %v", i, err, want)
		}
	}
	if _, err := r.ReadByte(); err == nil {
		t.Error("input left over")
	}
	for _, bad := range []string{"", "+OK", "?x\r\n", "$x\r\n", "$-2\r\n", "*1\r\n", "$5\r\nab\r\n"} {
		if err := skipReply(bufio.NewReader(strings.NewReader(bad))); err == nil || err == errReply {
			t.Errorf("skipReply(%q) = %v, want a read error", bad, err)
		}
	}
}

// TestMonitorAndReplayOnRedis: what a client sends to a real
// redis-server (a transaction, a script, a single command, binary
// arguments) comes out of startMonitor and roundTrips as sent, and the
// round trips encode to RESP that the server runs again.
func TestMonitorAndReplayOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer client.Close()
	ctx := context.Background()
	mon, err := startMonitor(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	value := "v\"\\\n\x00\xff"
	if _, err := client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.Set(ctx, "{gatehouse}:k", value, 0)
		p.Incr(ctx, "{gatehouse}:n")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := client.Eval(ctx, "return redis.call('GET', KEYS[1])", []string{"{gatehouse}:k"}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.Get(ctx, "{gatehouse}:k").Err(); err != nil {
		t.Fatal(err)
	}
	lines, err := mon.stop()
	if err != nil {
		t.Fatal(err)
	}
	trips := roundTrips(lines)
	if len(trips) < 3 {
		t.Fatalf("round trips %+v from %+v", trips, lines)
	}
	want := []roundTrip{
		{transaction: true, commands: [][]string{{"set", "{gatehouse}:k", value}, {"incr", "{gatehouse}:n"}}},
		{commands: [][]string{{"eval", "return redis.call('GET', KEYS[1])", "1", "{gatehouse}:k"}}},
		{commands: [][]string{{"get", "{gatehouse}:k"}}},
	}
	if !reflect.DeepEqual(trips[:3], want) {
		t.Fatalf("round trips %+v, want %+v", trips[:3], want)
	}

	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	for _, trip := range want {
		payload, replies := trip.encode()
		if _, err := conn.Write(payload); err != nil {
			t.Fatal(err)
		}
		for range replies {
			if err := skipReply(r); err != nil {
				t.Fatalf("replaying %q: %v", trip.commands, err)
			}
		}
	}
	if n, err := client.Get(ctx, "{gatehouse}:n").Int(); err != nil || n != 2 {
		t.Errorf("counter after the replayed transaction: %d, %v; want 2", n, err)
	}
	if v, err := client.Get(ctx, "{gatehouse}:k").Result(); err != nil || v != value {
		t.Errorf("value after the replay: %q, %v", v, err)
	}
	// An error reply is errReply, and the connection stays usable.
	payload, _ := roundTrip{commands: [][]string{{"INCR", "{gatehouse}:k"}}}.encode()
	if _, err := conn.Write(payload); err != nil {
		t.Fatal(err)
	}
	if err := skipReply(r); err != errReply {
		t.Errorf("INCR of a non-number: %v, want errReply", err)
	}
}
