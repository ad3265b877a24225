package caddymodule

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/spf13/cobra"

	"github.com/gatehouse-auth/gatehouse/adminapi"
)

// fakeAdmin is an admin endpoint answering every call with answer, with
// Gatehouse's AnswerHeader; it counts the calls but HEADs.
func fakeAdmin(t *testing.T, answer http.HandlerFunc) (*adminClient, *bytes.Buffer, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(AnswerHeader, "1")
		if r.Method == http.MethodHead {
			return
		}
		calls.Add(1)
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	out := &bytes.Buffer{}
	return &adminClient{address: strings.TrimPrefix(srv.URL, "http://"), out: out}, out, &calls
}

// TestCallFailsOnAnAnswerCutShort: an answer that ends before its length
// (the connection lost, Caddy stopped mid-answer) or is over the bound is
// an error, with nothing printed; it was printed in part with exit status
// 0, and a script saving a listing took the part for the whole.
func TestCallFailsOnAnAnswerCutShort(t *testing.T) {
	for name, answer := range map[string]http.HandlerFunc{
		"cut short": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "1000")
			_, _ = w.Write([]byte(`[{"username":"al`))
		},
		"over the bound": func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write(bytes.Repeat([]byte(" "), maxAnswerBytes+1))
		},
	} {
		t.Run(name, func(t *testing.T) {
			a, out, _ := fakeAdmin(t, answer)
			if err := a.call(http.MethodGet, "/gatehouse/users", nil); err == nil {
				t.Error("no error")
			}
			if out.Len() > 0 {
				t.Errorf("printed %d bytes of a failed answer", out.Len())
			}
		})
	}
}

// TestStdinIsBounded: a secret's first line and the api command's body
// from stdin are refused past what the admin API takes in a request, not
// read without bound (a password from a stream without a newline) nor
// sent cut short (a body over the old 64 MiB bound lost its tail).
func TestStdinIsBounded(t *testing.T) {
	long := strings.Repeat(" ", adminapi.MaxBodyBytes)
	c := &cobra.Command{}
	c.SetIn(strings.NewReader("x" + long))
	if _, err := readSecret(c, "password", true); err == nil || !strings.Contains(err.Error(), "not a password") {
		t.Errorf("an overlong first line: %v", err)
	}
	c.SetIn(strings.NewReader("secret\n" + long))
	if got, err := readSecret(c, "password", true); err != nil || got != "secret" {
		t.Errorf("a first line before much more: %q, %v", got, err)
	}

	a, _, calls := fakeAdmin(t, func(http.ResponseWriter, *http.Request) {})
	api := apiCommand(a)
	api.SetArgs([]string{"POST", "/gatehouse/users", "-"})
	api.SetIn(strings.NewReader("{}" + long))
	api.SetOut(&bytes.Buffer{})
	api.SetErr(&bytes.Buffer{})
	if err := api.Execute(); err == nil || !strings.Contains(err.Error(), "more than the admin API takes") {
		t.Errorf("api - with an overlong body: %v", err)
	}
	if calls.Load() != 0 {
		t.Error("the overlong body was sent")
	}
}

// TestAPIBodyMustBeJSON: the api command's body, given or on stdin, is
// checked before any call and refused in words that say so (it was
// "json: error calling MarshalJSON for type json.RawMessage").
func TestAPIBodyMustBeJSON(t *testing.T) {
	a, _, calls := fakeAdmin(t, func(http.ResponseWriter, *http.Request) {})
	for _, args := range [][]string{{"POST", "/gatehouse/users", "not json"}, {"POST", "/gatehouse/users", "-"}} {
		api := apiCommand(a)
		api.SetArgs(args)
		api.SetIn(strings.NewReader(""))
		api.SetOut(&bytes.Buffer{})
		api.SetErr(&bytes.Buffer{})
		if err := api.Execute(); err == nil || !strings.Contains(err.Error(), "not one JSON value") {
			t.Errorf("api %q: %v", args, err)
		}
	}
	if calls.Load() != 0 {
		t.Error("a body that is not JSON was sent")
	}
}

// TestErrorAnswerOfAnotherServerIsNotGatehouses: an error answer at a
// wrong --address (another web server's 404 page) fails as a wrong
// address, never as "HTTP 404", which a script deprovisioning users reads
// as "already deleted"; only a body-carrying call was checked first.
func TestErrorAnswerOfAnotherServerIsNotGatehouses(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	a := &adminClient{address: strings.TrimPrefix(srv.URL, "http://"), out: &bytes.Buffer{}}
	err := a.call(http.MethodDelete, "/gatehouse/users/alice", nil)
	if err == nil || strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "is --address the admin endpoint") {
		t.Errorf("a 404 of another server: %v", err)
	}
}
