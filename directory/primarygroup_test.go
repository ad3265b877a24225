package directory

import (
	"encoding/hex"
	"strings"
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

// TestPrimaryGroupsDomain: the primary group is searched in the domain of
// the account's DN, wherever the group lies there (Domain Users in
// CN=Users, outside a group_base_dn of OU=Groups); a DN without DC= parts
// falls back to group_base_dn.
func TestPrimaryGroupsDomain(t *testing.T) {
	for dn, want := range map[string]string{
		"CN=gus,OU=Staff,DC=example,DC=test":          "DC=example,DC=test",
		"cn=gus,ou=Staff,dc=Child,dc=example":         "dc=Child,dc=example",
		`CN=Smith\, John,CN=Users,DC=example,DC=test`: "DC=example,DC=test",
		"CN=gus,O=Example":                            "fallback",
		"not a DN":                                    "fallback",
	} {
		if got := domainOf(dn, "fallback"); !strings.EqualFold(got, want) {
			t.Errorf("domainOf(%q) = %q; want %q", dn, got, want)
		}
	}
}

// TestGroupRoleOutsideGroupBase: a group_role naming a group outside
// group_base_dn, where groups are searched, would never map (the primary
// group's mapping included): refused when the configuration loads.
func TestGroupRoleOutsideGroupBase(t *testing.T) {
	cfg := Config{URLs: []string{"ldaps://dc.example.test"}, BindDN: "CN=svc,DC=example,DC=test", BindPassword: "p",
		BaseDN: "DC=example,DC=test", GroupBaseDN: "OU=Groups,DC=example,DC=test"}
	for _, group := range []string{"CN=Staff,OU=Groups,DC=example,DC=test", "cn=staff,ou=groups,dc=EXAMPLE,dc=test",
		"CN=Deep,OU=Plant,OU=Groups,DC=example,DC=test", "OU=Groups,DC=example,DC=test"} {
		cfg.GroupRoles = []GroupRole{{Group: group, Role: "reader"}}
		if err := cfg.Validate(); err != nil {
			t.Errorf("group_role %q under group_base_dn: %v", group, err)
		}
	}
	for _, group := range []string{"CN=Domain Users,CN=Users,DC=example,DC=test", "CN=Staff,OU=Groups,DC=other,DC=test", "DC=example,DC=test"} {
		cfg.GroupRoles = []GroupRole{{Group: group, Role: "reader"}}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "outside group_base_dn") {
			t.Errorf("group_role %q outside group_base_dn: %v; want refused", group, err)
		}
	}
}
