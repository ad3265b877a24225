package appkey

import (
	"reflect"
	"testing"
	"time"
)

func sampleRecord() record {
	t := stamp(time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC))
	return record{Name: "k", Index: "ab12", Username: "ålice", UserID: "id", SealedKey: []byte{0, 1, 2, 255},
		ExpiresAt: t, IPAllowlist: []string{"10.0.0.0/8", "::1"},
		Metadata:  Metadata{Description: "two\nlines", Project: "p", Tags: []string{"a", "b"}, ClientName: "c", Documentation: "d", HomeURL: "https://x"},
		CreatedAt: t.Add(-time.Hour), LastModifiedAt: t.Add(-time.Minute), PrevIndex: "cd34", PrevValidUntil: t.Add(time.Second),
		Successor: "ef56", GraceUntil: t.Add(2 * time.Second)}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, rec := range []record{sampleRecord(), {}, {Name: "stub", Index: "i", Successor: "s", GraceUntil: stamp(time.Now())}} {
		got, err := decodeRecord(rec.encode())
		if err != nil || !reflect.DeepEqual(got, rec) {
			t.Fatalf("round trip of %+v: %+v, %v", rec, got, err)
		}
	}
	sample := sampleRecord()
	raw := sample.encode()
	for _, bad := range [][]byte{nil, {}, {2}, raw[:len(raw)-1], append(raw[:len(raw):len(raw)], 0), {1, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 1}} {
		if _, err := decodeRecord(bad); err == nil {
			t.Errorf("decodeRecord(%x) accepted a corrupt record", bad)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	sample := sampleRecord()
	f.Add(sample.encode())
	f.Add((&record{}).encode())
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRecord(b)
		if err != nil {
			return
		}
		again, err := decodeRecord(rec.encode())
		if err != nil || !reflect.DeepEqual(again, rec) {
			t.Fatalf("decoded %+v does not survive a round trip: %+v, %v", rec, again, err)
		}
	})
}
