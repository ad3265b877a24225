package sms

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/conncount"
)

func TestFileAppendsJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sms.log")
	f := NewFile(path)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := f.Send(context.Background(), Message{To: "+15550001", Message: "code \"1\"\nline"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	if st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", st.Mode().Perm())
	}
	n := 0
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		var m Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil || m.To != "+15550001" || m.Message != "code \"1\"\nline" {
			t.Fatalf("line %q: %+v %v", sc.Text(), m, err)
		}
		n++
	}
	if n != 20 {
		t.Fatalf("%d lines, want 20", n)
	}
	if err := NewFile(filepath.Join(t.TempDir(), "missing", "sms.log")).Send(context.Background(), Message{}); err == nil {
		t.Fatal("writing into a missing directory succeeded")
	}
}

func newWebhook(t *testing.T, opts WebhookOptions) *Webhook {
	t.Helper()
	w, err := NewWebhook(opts)
	if err != nil {
		t.Fatal(err)
	}
	w.backoff = time.Millisecond
	return w
}

func TestWebhookPostsJSONWithHeaders(t *testing.T) {
	var got Message
	var hdr http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr = r.Header.Clone()
		if r.Method != http.MethodPost {
			t.Errorf("method %s", r.Method)
		}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Errorf("body: %v", err)
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	w := newWebhook(t, WebhookOptions{URL: srv.URL + "/send?key=gatewaysecret", Header: http.Header{"X-Api-Key": {"k1"}, "Authorization": {"Bearer t"}}})
	if err := w.Send(context.Background(), Message{To: "+1555", Message: "Your code is 123456"}); err != nil {
		t.Fatal(err)
	}
	if got.To != "+1555" || got.Message != "Your code is 123456" {
		t.Fatalf("posted %+v", got)
	}
	if hdr.Get("X-Api-Key") != "k1" || hdr.Get("Authorization") != "Bearer t" || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", hdr)
	}
}

func TestWebhookRetries(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	if err := newWebhook(t, WebhookOptions{URL: srv.URL, Retries: 2}).Send(context.Background(), Message{}); err != nil {
		t.Fatalf("third attempt should succeed: %v", err)
	}
	if calls.Load() != 3 {
		t.Fatalf("%d calls, want 3", calls.Load())
	}
	calls.Store(0)
	err := newWebhook(t, WebhookOptions{URL: srv.URL, Retries: 1}).Send(context.Background(), Message{Message: "Your code is 654321"})
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("want a 503 error after 2 attempts, got %v", err)
	}
	if strings.Contains(err.Error(), "654321") {
		t.Fatal("error leaks the message")
	}
}

func TestWebhookDoesNotRetryClientErrors(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadRequest)
	}))
	defer srv.Close()
	if err := newWebhook(t, WebhookOptions{URL: srv.URL, Retries: 5}).Send(context.Background(), Message{}); err == nil {
		t.Fatal("400 not reported")
	}
	if calls.Load() != 1 {
		t.Fatalf("%d calls, want 1", calls.Load())
	}
}

func TestWebhookTimeout(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	start := time.Now()
	err := newWebhook(t, WebhookOptions{URL: srv.URL + "/?token=s3cret", Timeout: 100 * time.Millisecond, Retries: 1}).Send(context.Background(), Message{})
	if err == nil || !strings.Contains(err.Error(), "no answer within 100ms") {
		t.Fatalf("want a timeout, got %v", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatal("error leaks the URL's query")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	if calls.Load() != 2 {
		t.Fatalf("%d calls, want 2 (one retry)", calls.Load())
	}
}

func TestWebhookOptionsValidation(t *testing.T) {
	for _, o := range []WebhookOptions{{URL: "ftp://x"}, {URL: "/relative"}, {URL: "http://x", Retries: -1},
		{URL: "http://x", Retries: 11}, {URL: "http://x", Timeout: -1}} {
		if _, err := NewWebhook(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// TestClosedWebhookKeepsNoConnection: after Close (a config reload let go
// of the sender), the connection kept for the next message is closed, and
// one a send in flight used is not kept either; such a send still works.
// Before, each stayed open for the transport's idle timeout, 90 s.
func TestClosedWebhookKeepsNoConnection(t *testing.T) {
	gateway := conncount.Start(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}))
	w := newWebhook(t, WebhookOptions{URL: gateway.URL})
	if err := w.Send(context.Background(), Message{To: "+1555", Message: "1"}); err != nil {
		t.Fatal(err)
	}
	if gateway.Open() != 1 {
		t.Fatalf("%d connections open after a send; want the one kept for the next", gateway.Open())
	}
	w.Close()
	gateway.WaitAllClosed(t, "after Close")
	if err := w.Send(context.Background(), Message{To: "+1555", Message: "2"}); err != nil {
		t.Fatalf("a send after Close: %v", err)
	}
	gateway.WaitAllClosed(t, "after a send that followed Close")
}
