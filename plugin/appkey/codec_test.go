package appkey

import (
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/reccodec"
)

func sampleRecord() record {
	t := reccodec.Stamp(time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC))
	return record{Name: "k", Index: "ab12", Username: "ålice", UserID: "id", SealedKey: []byte{0, 1, 2, 255},
		ExpiresAt: t, IPAllowlist: []string{"10.0.0.0/8", "::1"},
		Metadata:  Metadata{Description: "two\nlines", Project: "p", Tags: []string{"a", "b"}, ClientName: "c", Documentation: "d", HomeURL: "https://x"},
		CreatedAt: t.Add(-time.Hour), LastModifiedAt: t.Add(-time.Minute), PrevIndex: "cd34", PrevValidUntil: t.Add(time.Second),
		Successor: "ef56", GraceUntil: t.Add(2 * time.Second)}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, rec := range []record{sampleRecord(), {}, {Name: "stub", Index: "i", Successor: "s", GraceUntil: reccodec.Stamp(time.Now())}} {
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

// TestCachedEntryKeepsNotTheMetadata: a cached entry holds only what a
// request needs, in bytes of its own (no pointer for the collector to
// follow), not the record it was decoded from: entries of keys with 2 KB
// of documentation each take well under 1 KB each.
func TestCachedEntryKeepsNotTheMetadata(t *testing.T) {
	rec := sampleRecord()
	rec.Documentation = strings.Repeat("d", 2<<10)
	raw := rec.encode()
	entries := make([][]byte, 20_000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range entries {
		b, err := compactEntry(indexPrefix+rec.Index, raw)
		if err != nil {
			t.Fatal(err)
		}
		entries[i] = b
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perEntry := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / int64(len(entries))
	if perEntry > 1<<10 {
		t.Fatalf("a cached entry keeps %d bytes alive; want under 1 KB (it must not keep the 2 KB record)", perEntry)
	}
	e := entry{entries[0]}
	if e.name() != rec.Name || e.username() != rec.Username || e.userID() != rec.UserID ||
		e.prevIndex() != rec.PrevIndex || e.successor() != rec.Successor || !e.isStub() ||
		!e.expires().Equal(rec.ExpiresAt) || !e.graceEnds().Equal(rec.GraceUntil) || e.allowLen() != 2 {
		t.Fatalf("entry %+v does not match the record", e)
	}
	runtime.KeepAlive(entries)
	// The index is not kept: it is checked once, against the key the
	// record was read under.
	if _, err := compactEntry(indexPrefix+rec.Index[1:]+"0", raw); !errors.Is(err, errMisfiled) {
		t.Errorf("a record read under another index decoded: %v", err)
	}
	if _, err := compactEntry(indexPrefix, raw); !errors.Is(err, errMisfiled) {
		t.Errorf("a record read under an empty index decoded: %v", err)
	}
}
