package redisinfo

import (
	"reflect"
	"testing"
)

func TestParseCommandStats(t *testing.T) {
	info := "# Commandstats\r\n" +
		"cmdstat_get:calls=12,usec=34,usec_per_call=2.83,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_exec:calls=6,usec=50,usec_per_call=8.33,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_cluster|slots:calls=3,usec=90,usec_per_call=30.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_ping:calls=40,usec=20,usec_per_call=0.50,rejected_calls=0,failed_calls=0\r\n"
	s, err := ParseCommandStats(info)
	if err != nil {
		t.Fatal(err)
	}
	if want := (CommandStats{"get": 12, "exec": 6, "cluster|slots": 3, "ping": 40}); !reflect.DeepEqual(s, want) {
		t.Fatalf("parsed %v, want %v", s, want)
	}
	if s.Data() != 18 {
		t.Errorf("Data() = %d, want 18 (get and exec; not cluster|slots, not ping)", s.Data())
	}
	later := CommandStats{"get": 20, "exec": 6, "cluster|slots": 3, "ping": 41, "set": 2}
	if d := later.Minus(s); !reflect.DeepEqual(d, CommandStats{"get": 8, "ping": 1, "set": 2}) {
		t.Errorf("minus = %v", d)
	}
	for _, bad := range []string{"cmdstat_get:usec=3\r\n", "cmdstat_get:calls=x,usec=3\r\n", "cmdstat_get\r\n", "cmdstat_get:calls=-1\r\n"} {
		if _, err := ParseCommandStats(bad); err == nil {
			t.Errorf("ParseCommandStats(%q) succeeded", bad)
		}
	}
}

func TestField(t *testing.T) {
	info := "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n"
	if got := Field(info, "connected_slaves"); got != "2" {
		t.Errorf("connected_slaves = %q", got)
	}
	if got := Field(info, "slaves"); got != "" {
		t.Errorf("slaves = %q, want none", got)
	}
}
