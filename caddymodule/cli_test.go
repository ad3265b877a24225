package caddymodule

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

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
