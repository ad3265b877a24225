package reccodec

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

// sample is a record with one field of each kind.
type sample struct {
	Name  string
	Blob  []byte
	When  time.Time
	Tags  []string
	Empty string
	Never time.Time
}

func (s *sample) fields(f Fields) {
	f.String(&s.Name)
	f.ByteString(&s.Blob)
	f.Time(&s.When)
	f.List(&s.Tags)
	f.String(&s.Empty)
	f.Time(&s.Never)
}

const version = 7

func decode(b []byte) (sample, error) {
	var s sample
	err := Decode(b, version, s.fields)
	return s, err
}

func TestRoundTrip(t *testing.T) {
	in := sample{Name: "ålice", Blob: []byte{0, 1, 255}, When: Stamp(time.Date(2031, 1, 2, 3, 4, 5, 678901234, time.FixedZone("x", 3600))),
		Tags: []string{"a", "", "ü"}}
	raw := Encode(version, in.fields)
	out, err := decode(raw)
	if err != nil || !reflect.DeepEqual(out, in) {
		t.Fatalf("round trip: %+v, %v; want %+v", out, err, in)
	}
	if out.When.Location() != time.UTC || out.When.Nanosecond()%1000 != 0 {
		t.Errorf("decoded time %v: want UTC, to the microsecond", out.When)
	}
	// The decoded strings are the decoder's: changing the input later
	// changes nothing.
	clear(raw)
	if out.Name != "ålice" || out.Tags[2] != "ü" || !bytes.Equal(out.Blob, []byte{0, 1, 255}) {
		t.Fatalf("decoded fields changed with the input: %+v", out)
	}
}

func TestCorruptRecords(t *testing.T) {
	in := sample{Name: "n", Tags: []string{"t"}}
	raw := Encode(version, in.fields)
	for name, bad := range map[string][]byte{
		"empty":           nil,
		"other version":   append([]byte{version + 1}, raw[1:]...),
		"truncated":       raw[:len(raw)-1],
		"trailing byte":   append(append([]byte(nil), raw...), 0),
		"length past end": {version, 50, 'x'},
		"varint overflow": {version, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"list past end":   {version, 0, 0, 0, 200},
		"unfinished time": {version, 0, 0, 0x80},
	} {
		if got, err := decode(bad); err != ErrCorrupt {
			t.Errorf("%s: Decode = %+v, %v; want ErrCorrupt", name, got, err)
		}
	}
}

func TestDetach(t *testing.T) {
	rec := sample{Name: "name", Tags: []string{"tag"}}
	out, err := decode(Encode(version, rec.fields))
	if err != nil {
		t.Fatal(err)
	}
	a, b, empty := out.Name, out.Tags[0], ""
	Detach(&a, &empty, &b)
	if a != "name" || b != "tag" || empty != "" {
		t.Fatalf("Detach changed the values: %q %q %q", a, b, empty)
	}
	if n := testing.AllocsPerRun(10, func() { x, y := out.Name, out.Tags[0]; Detach(&x, &y) }); n != 1 {
		t.Fatalf("Detach of two strings allocated %v times; want 1", n)
	}
}

func FuzzDecode(f *testing.F) {
	in := sample{Name: "n", Blob: []byte{1}, When: Stamp(time.Unix(1e9, 0)), Tags: []string{"a", "b"}}
	f.Add(Encode(version, in.fields))
	f.Add([]byte{version})
	f.Add([]byte{version, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decode(b)
		if err != nil {
			return
		}
		if again := Encode(version, s.fields); !bytes.Equal(again, b) {
			// Accepted input must be canonical up to varint padding: the
			// re-encoding must at least decode to the same record.
			s2, err := decode(again)
			if err != nil || !reflect.DeepEqual(s2, s) {
				t.Fatalf("decoded %+v does not survive a round trip: %+v, %v", s, s2, err)
			}
		}
	})
}
