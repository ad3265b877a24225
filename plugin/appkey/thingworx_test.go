package appkey

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestThingWorxAliases: a ThingWorx client's body (seed 004) works
// unchanged: user, whitelist as a comma-separated string, clientName,
// expirationDate without a zone (UTC) and a home mashup given as a name.
func TestThingWorxAliases(t *testing.T) {
	f := newFixture(t)
	c := f.create(`{"name":"tw","user":"alice","whitelist":"10.0.0.1, 192.168.0.0/24","clientName":"Kepware",
		"expirationDate":"2099-01-02T03:04:05","homeMashup":"PlantOverview"}`)
	want := time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC)
	if c.Username != "alice" || strings.Join(c.IPAllowlist, " ") != "10.0.0.1 192.168.0.0/24" || c.ClientName != "Kepware" ||
		!c.ExpiresAt.Equal(want) || c.HomeURL != "PlantOverview" {
		t.Fatalf("created %+v", c)
	}
	if c := f.create(`{"name":"tw2","username":"alice","ip_allowlist":"10.0.0.2","expirationDate":"2099-01-02T03:04:05+02:00"}`); strings.Join(c.IPAllowlist, " ") != "10.0.0.2" ||
		!c.ExpiresAt.Equal(want.Add(-2*time.Hour)) {
		t.Fatalf("ip_allowlist as a string, a zoned expirationDate: %+v", c)
	}
	var v View
	if code := f.call("PATCH", "/gatehouse/appkeys/tw", `{"expirationDate":"2099-05-06 07:08:09","whitelist":"","clientName":"KEPServerEX"}`, &v); code != 200 ||
		!v.ExpiresAt.Equal(time.Date(2099, 5, 6, 7, 8, 9, 0, time.UTC)) || len(v.IPAllowlist) != 0 || v.ClientName != "KEPServerEX" {
		t.Fatalf("patch with aliases: %d %+v", code, v)
	}
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/gatehouse/appkeys", `{"name":"x","username":"alice","user":"alice"}`},
		{"POST", "/gatehouse/appkeys", `{"name":"x","user":"alice","client_name":"a","clientName":"b"}`},
		{"POST", "/gatehouse/appkeys", `{"name":"x","user":"alice","expirationDate":"tomorrow"}`},
		{"POST", "/gatehouse/appkeys", `{"name":"x","user":"alice","expirationDate":4102444800000}`},
		{"POST", "/gatehouse/appkeys", `{"name":"x","user":"alice","homeMashup":"a b"}`},
		{"POST", "/gatehouse/appkeys", `{"name":"x","user":"alice","whitelist":"10.0.0.1,nonsense"}`},
		{"POST", "/gatehouse/appkeys", `{"name":"x","user":"alice","home_url":"javascript:alert(1)"}`},
		{"PATCH", "/gatehouse/appkeys/tw", `{"user":"bob"}`},
		{"PATCH", "/gatehouse/appkeys/tw", `{"expires_at":"2099-01-01T00:00:00Z","expirationDate":"2099-01-01T00:00:00"}`},
	} {
		var out map[string]any
		if code := f.call(tc.method, tc.path, tc.body, &out); code != 400 || out["error"] == "" {
			t.Errorf("%s %s %s: %d %v, want 400", tc.method, tc.path, tc.body, code, out)
		}
	}
	f.call("GET", "/gatehouse/appkeys/tw", "", &v)
	if v.ClientName != "KEPServerEX" {
		t.Fatalf("a refused PATCH changed the key: %+v", v)
	}
}

// FuzzThingWorxFields: the alias parsers never panic; an allowlist
// string's entries are trimmed, non-empty and hold no comma; a DATETIME
// without a zone is read as UTC.
func FuzzThingWorxFields(f *testing.F) {
	for _, s := range []string{"10.0.0.1, ::1/128,,", " ", "2030-01-31 12:00:00.5", "2030-01-31T12:00:00-05:00", "2030-01-31T12:00:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		quoted, _ := json.Marshal(s)
		var a Allowlist
		if err := json.Unmarshal(quoted, &a); err != nil {
			t.Fatalf("allowlist string %q refused: %v", s, err)
		}
		for _, e := range a {
			if e == "" || e != strings.TrimSpace(e) || strings.Contains(e, ",") {
				t.Fatalf("allowlist entry %q from %q", e, s)
			}
		}
		var d DateTime
		if json.Unmarshal(quoted, &d) != nil {
			return
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil && time.Time(d).Location() != time.UTC {
			t.Fatalf("zone-less %q read in %v", s, time.Time(d).Location())
		}
	})
}
