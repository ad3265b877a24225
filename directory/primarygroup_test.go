package directory

import (
	"encoding/hex"
	"testing"
)

// TestPrimaryGroupSID: the primary group's SID is the account's with its
// last sub-authority (the account's RID) replaced, little-endian, by the
// primaryGroupID; anything that is not a SID is none.
func TestPrimaryGroupSID(t *testing.T) {
	// S-1-5-21-1004336348-1177238915-682003330-1105
	account, _ := hex.DecodeString("010500000000000515000000dcf4dc3b833d2b46828ba62851040000")
	// S-1-5-21-1004336348-1177238915-682003330-513 (Domain Users)
	want, _ := hex.DecodeString("010500000000000515000000dcf4dc3b833d2b46828ba62801020000")
	if got, ok := primaryGroupSID(account, "513"); !ok || got != string(want) {
		t.Fatalf("primary group 513 of %x: %x, %v; want %x", account, got, ok, want)
	}
	if got := binaryFilterValue(string(want[:4])); got != `\01\05\00\00` {
		t.Errorf("binaryFilterValue: %s", got)
	}
	for _, c := range []struct {
		sid []byte
		rid string
	}{
		{account, ""}, {account, "-1"}, {account, "4294967296"}, {account, "5x"},
		{nil, "513"}, {account[:27], "513"}, {append(append([]byte(nil), account...), 0), "513"},
		{append([]byte{2}, account[1:]...), "513"}, {[]byte{1, 0, 0, 0, 0, 0, 0, 5}, "513"},
	} {
		if got, ok := primaryGroupSID(c.sid, c.rid); ok {
			t.Errorf("primaryGroupSID(%x, %q) = %x; want none", c.sid, c.rid, got)
		}
	}
}
