package adminapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/failure"
)

func TestDecodeJSONErrorsAreClear(t *testing.T) {
	cases := map[string]string{
		``:                                      "empty",
		`{"username":`:                          "unexpected end",
		`{"username":1}`:                        `field "username" must be a string`,
		`{"roles":"admin"}`:                     `field "roles" must be an array`,
		`{"nope":1}`:                            `unknown field "nope"`,
		`{"username":"bob","USERNAME":"carol"}`: `unknown field "USERNAME"; field names are case-sensitive: "username"`,
		`{"Username":"carol"}`:                  `unknown field "Username"`,
		`{"roles":["admin"],"roles":[]}`:        `field "roles" appears more than once`,
		`{"username":"bob","username":"bob"}`:   `field "username" appears more than once`,
		`{"username":"a"} {}`:                   "more than one JSON value",
		`{"username":"a",}`:                     "malformed JSON",
		strings.Repeat(" ", 2<<20) + "{}":       "exceeds",
	}
	for body, want := range cases {
		r := httptest.NewRequest("POST", "/gatehouse/users", strings.NewReader(body))
		r.Body = limitBody(r)
		var in account.NewUser
		err := DecodeJSON(r, &in)
		if err == nil || failure.Status(err) != 400 || !strings.Contains(err.Error(), want) {
			t.Errorf("body %.30q: error %v (status %d), want 400 containing %q", body, err, failure.Status(err), want)
		}
	}
}

// TestDecodeJSONNamesFieldsAsSent: a wrong type is named by the member
// the client sent, not by the Go types behind it (an embedded struct, as
// the application keys' metadata is); a body of the wrong kind says so.
func TestDecodeJSONNamesFieldsAsSent(t *testing.T) {
	type metadata struct {
		Tags []string `json:"tags"`
	}
	type request struct {
		Name string `json:"name"`
		metadata
		Rules []account.Rule `json:"rules"`
		Limit int            `json:"limit"`
	}
	for body, want := range map[string]string{
		`{"tags":"x"}`:                  `field "tags" must be an array, not JSON string`,
		`{"limit":"x"}`:                 `field "limit" must be a whole number, not JSON string`,
		`{"rules":[{"methods":"GET"}]}`: `field "rules.methods" must be an array, not JSON string`,
		`[1]`:                           `the request body must be an object, not JSON array`,
		`"x"`:                           `the request body must be an object, not JSON string`,
	} {
		r := httptest.NewRequest("POST", "/gatehouse/appkeys", strings.NewReader(body))
		var in request
		err := DecodeJSON(r, &in)
		if failure.Status(err) != 400 || err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("body %s: error %v, want 400 containing %q", body, err, want)
		}
	}
}

// TestDecodeJSONNested: member names are checked at every nesting level.
func TestDecodeJSONNested(t *testing.T) {
	for body, want := range map[string]string{
		`{"name":"r","rules":[{"methods":["GET"],"methods":[],"paths":["/*"]}]}`: `field "rules[0].methods" appears more than once`,
		`{"name":"r","rules":[{"paths":["/*"]},{"Methods":["GET"]}]}`:            `unknown field "rules[1].Methods"; field names are case-sensitive: "methods"`,
		`{"name":"r","rules":[{"paths":["/*"],"extra":{"a":1,"a":2}}]}`:          `unknown field "rules[0].extra"`,
	} {
		r := httptest.NewRequest("PUT", "/gatehouse/roles/r", strings.NewReader(body))
		var role account.Role
		err := DecodeJSON(r, &role)
		if failure.Status(err) != 400 || !strings.Contains(err.Error(), want) {
			t.Errorf("body %s: error %v, want 400 containing %q", body, err, want)
		}
	}
	r := httptest.NewRequest("PUT", "/gatehouse/roles/r", strings.NewReader(`{"name":"r","rules":[{"methods":["GET"],"paths":["/*"]}],"admin":true}`))
	var role account.Role
	if err := DecodeJSON(r, &role); err != nil || !role.Admin || role.Rules[0].Methods[0] != "GET" {
		t.Fatalf("exact body: %+v, %v", role, err)
	}
}

func FuzzDecodeJSON(f *testing.F) {
	f.Add(`{"username":"alice","roles":["a"],"password":"correct horse"}`)
	f.Add(`{"roles":null}`)
	f.Add(`[1,2]`)
	f.Add(`{"username":"bob","roles":["a","b"]}`)
	f.Add(` {"mobile_number":"+1 202 555 0100"}`)
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/gatehouse/users", strings.NewReader(body))
		r.Body = limitBody(r)
		var in account.NewUser
		err := DecodeJSON(r, &in)
		if err != nil && failure.Status(err) != 400 {
			t.Fatalf("bad body gave status %d: %v", failure.Status(err), err)
		}
		// The same object with one of its members put in front once more,
		// or put in front with its name in upper case, is always refused.
		var members map[string]json.RawMessage
		if err != nil || json.Unmarshal([]byte(body), &members) != nil {
			return
		}
		rest := strings.TrimLeft(body, " \t\r\n")[1:]
		for name, value := range members {
			keys := []string{name}
			if upper := strings.ToUpper(name); upper != name {
				keys = append(keys, upper)
			}
			for _, key := range keys {
				quoted, _ := json.Marshal(key)
				altered := "{" + string(quoted) + ":" + string(value) + "," + rest
				var again account.NewUser
				r := httptest.NewRequest("POST", "/gatehouse/users", strings.NewReader(altered))
				if err := DecodeJSON(r, &again); failure.Status(err) != 400 {
					t.Fatalf("%s accepted (%v): %q doubled or miscased", altered, err, key)
				}
			}
			break
		}
	})
}

func limitBody(r *http.Request) io.ReadCloser {
	return http.MaxBytesReader(httptest.NewRecorder(), r.Body, MaxBodyBytes)
}

// FuzzCheckQuery: whatever the query, checkQuery either refuses it with a
// 400 or every parameter in it is one the endpoint takes, given once, so
// that the handler reads exactly what was sent.
func FuzzCheckQuery(f *testing.F) {
	for _, seed := range []string{"", "username=alice", "user=alice", "username=a&username=b", "username=", "limit=1;x",
		"kind=%zz", "username=%C3%A5lice&kind=admin", "&&", "=x", "username"} {
		f.Add(seed)
	}
	allowed := []string{"username", "kind"}
	f.Fuzz(func(t *testing.T, raw string) {
		err := checkQuery(raw, allowed)
		if err != nil {
			if failure.Status(err) != 400 || failure.Message(err) == "" {
				t.Fatalf("%q refused with %d %q; want a 400 saying why", raw, failure.Status(err), failure.Message(err))
			}
			return
		}
		query, perr := url.ParseQuery(raw)
		if perr != nil {
			t.Fatalf("%q passed, though it does not parse: %v", raw, perr)
		}
		for name, values := range query {
			if !slices.Contains(allowed, name) || len(values) != 1 {
				t.Fatalf("%q passed with %s=%q", raw, name, values)
			}
		}
	})
}
