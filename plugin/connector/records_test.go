package connector

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/reccodec"
)

func sampleTokenRecord() tokenRecord {
	t := reccodec.Stamp(time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC))
	return tokenRecord{Kind: kindUsed, ID: "0123456789abcdef01234567", Connector: "ünit-1", Username: "alice", UserID: "id",
		X5tS256: "thumb", IssuedAt: t, ExpiresAt: t.Add(10 * time.Hour), AccessDigest: "acc", Successor: "succ", TokenEpoch: 300}
}

func TestTokenRecordCodec(t *testing.T) {
	for _, rec := range []tokenRecord{sampleTokenRecord(), {}} {
		got, err := decodeTokenRecord(rec.encode())
		if err != nil || !reflect.DeepEqual(*got, rec) {
			t.Fatalf("round trip of %+v: %+v, %v", rec, got, err)
		}
	}
	// A record an earlier version wrote as JSON still decodes, to the same fields.
	legacy := sampleTokenRecord()
	legacy.IssuedAt = legacy.IssuedAt.Add(789 * time.Nanosecond) // JSON kept nanoseconds
	raw, _ := json.Marshal(&legacy)
	if got, err := decodeTokenRecord(raw); err != nil || !reflect.DeepEqual(*got, legacy) {
		t.Fatalf("legacy JSON record: %+v, %v", got, err)
	}
	// A version 1 record (before TokenEpoch) decodes with epoch 0.
	v1 := sampleTokenRecord()
	v1.TokenEpoch = 0
	if got, err := decodeTokenRecord(reccodec.Encode(tokenCodecVersionV1, v1.fieldsV1)); err != nil || !reflect.DeepEqual(*got, v1) {
		t.Fatalf("version 1 record: %+v, %v", got, err)
	}
	sample := sampleTokenRecord()
	enc := sample.encode()
	for _, bad := range [][]byte{nil, {}, {9}, enc[:len(enc)-1], append(enc[:len(enc):len(enc)], 0), []byte(`{"kind":`)} {
		if _, err := decodeTokenRecord(bad); err == nil {
			t.Errorf("decodeTokenRecord(%q) accepted a corrupt record", bad)
		}
	}
}

func FuzzDecodeTokenRecord(f *testing.F) {
	sample := sampleTokenRecord()
	f.Add(sample.encode())
	raw, _ := json.Marshal(&sample)
	f.Add(raw)
	f.Add([]byte{tokenCodecVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(reccodec.Encode(tokenCodecVersionV1, sample.fieldsV1))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeTokenRecord(b)
		if err != nil {
			return
		}
		if b[0] == '{' {
			return // JSON keeps what the binary form rounds (nanoseconds, non-UTC zones)
		}
		again, err := decodeTokenRecord(rec.encode())
		if err != nil || !reflect.DeepEqual(*again, *rec) {
			t.Fatalf("decoded %+v does not survive a round trip: %+v, %v", rec, again, err)
		}
	})
}
