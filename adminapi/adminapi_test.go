package adminapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/failure"
)

func TestDecodeJSONErrorsAreClear(t *testing.T) {
	cases := map[string]string{
		``:                                "empty",
		`{"username":`:                    "unexpected end",
		`{"username":1}`:                  `field "username" must be a string`,
		`{"roles":"admin"}`:               `field "roles" must be an array`,
		`{"nope":1}`:                      `unknown field "nope"`,
		`{"username":"a"} {}`:             "more than one JSON value",
		`{"username":"a",}`:               "malformed JSON",
		strings.Repeat(" ", 2<<20) + "{}": "exceeds",
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

func FuzzDecodeJSON(f *testing.F) {
	f.Add(`{"username":"alice","roles":["a"],"password":"correct horse"}`)
	f.Add(`{"roles":null}`)
	f.Add(`[1,2]`)
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/gatehouse/users", strings.NewReader(body))
		r.Body = limitBody(r)
		var in account.NewUser
		if err := DecodeJSON(r, &in); err != nil && failure.Status(err) != 400 {
			t.Fatalf("bad body gave status %d: %v", failure.Status(err), err)
		}
	})
}

func limitBody(r *http.Request) io.ReadCloser {
	return http.MaxBytesReader(httptest.NewRecorder(), r.Body, MaxBodyBytes)
}
