package caddymodule

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/session"
)

// BenchmarkHandlerHot is one cache-hot request through the gatehouse
// handler as Caddy calls it: ServeHTTP on a request prepared as Caddy's
// server prepares it (caddyhttp.PrepareRequest: replacer, vars, original
// request), with the headers Go's HTTP client sends beside the
// credential, for each kind as make bench's rows use it, forwarding every
// identity header ("all") and only the user ("user"). "plain" is the
// request's preparation and the next handler alone, what every row pays
// without Gatehouse. The connector's request carries its client
// certificate in its TLS state, as on the connector rows. cpu-ns/op is
// the process's CPU time per request (getrusage), steadier than ns/op on
// a shared machine; compare rows with -cpu 1.
func BenchmarkHandlerHot(b *testing.B) { benchmarkHandlerHot(b, benchHandler) }

// BenchmarkHandlerHotParallel is BenchmarkHandlerHot from GOMAXPROCS
// goroutines at once (b.RunParallel), each with a request of its own: what
// the requests of a server's cores share (locks, counters) shows in its
// cpu-ns/op against BenchmarkHandlerHot's.
func BenchmarkHandlerHotParallel(b *testing.B) { benchmarkHandlerHot(b, benchHandlerParallel) }

func benchmarkHandlerHot(b *testing.B, bench func(*testing.B, *Handler, *http.Request)) {
	a := startedApp(b)
	admin, err := a.AdminHandler(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	call := func(method, path, body string) []byte {
		w := httptest.NewRecorder()
		admin.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
		if w.Code/100 != 2 {
			b.Fatalf("%s %s: %d %s", method, path, w.Code, w.Body)
		}
		return w.Body.Bytes()
	}
	call("PUT", "/gatehouse/roles/bench", `{"rules":[{"methods":["GET"],"paths":["/*"]}]}`)
	call("POST", "/gatehouse/users", `{"username":"bench","roles":["bench"],"password":"correct horse battery"}`)
	var key struct{ Key string }
	if err := json.Unmarshal(call("POST", "/gatehouse/appkeys", `{"name":"bench","username":"bench"}`), &key); err != nil {
		b.Fatal(err)
	}
	var conn struct {
		Cert string `json:"certificate_pem"`
	}
	if err := json.Unmarshal(call("POST", "/gatehouse/connectors", `{"name":"bench","username":"bench"}`), &conn); err != nil {
		b.Fatal(err)
	}
	block, _ := pem.Decode([]byte(conn.Cert))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		b.Fatal(err)
	}
	e, err := a.Engine(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	u, err := e.Accounts.User(context.Background(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	token, err := e.Sessions.Create(context.Background(), session.Session{Username: u.Username, UserID: u.ID, Origin: session.OriginLogin, SecondFactor: true})
	if err != nil {
		b.Fatal(err)
	}
	handler := func(accept string, forward ...string) *Handler {
		h := &Handler{Accept: []string{accept}, Forward: forward}
		opts, err := h.routeOptions()
		if err != nil {
			b.Fatal(err)
		}
		h.options, h.app = opts, a
		a.audiences.Add(opts.Audience)
		return h
	}
	tlsState := &tls.ConnectionState{HandshakeComplete: true, Version: tls.VersionTLS13, PeerCertificates: []*x509.Certificate{cert}}
	// The connector's access token, from its token endpoint.
	tr := httptest.NewRequest("POST", "https://localhost/gatehouse/v1/token", strings.NewReader("grant_type=certificate"))
	tr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	tr.RemoteAddr, tr.TLS = "127.0.0.1:40000", tlsState
	tw := httptest.NewRecorder()
	if err := handler("connector").ServeHTTP(tw, caddyhttp.PrepareRequest(tr, caddy.NewReplacer(), tw, nil), nopHandler); err != nil || tw.Code != 200 {
		b.Fatalf("token: %d %s %v", tw.Code, tw.Body, err)
	}
	var access struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(tw.Body.Bytes(), &access); err != nil {
		b.Fatal(err)
	}

	kinds := []struct {
		name, accept, header, value string
		tls                         bool
	}{
		{"basic", "basic", "Authorization", "Basic " + "YmVuY2g6Y29ycmVjdCBob3JzZSBiYXR0ZXJ5", false}, // bench:correct horse battery
		{"app_key", "app_key", "Appkey", key.Key, false},
		{"session", "session", "Cookie", session.CookieName + "=" + token, false},
		{"connector_token", "connector", "Authorization", "Bearer " + access.AccessToken, true},
	}
	b.Run("plain", func(b *testing.B) {
		bench(b, nil, request("", "", false, nil))
	})
	for _, k := range kinds {
		for _, fw := range []string{"all", "user"} {
			var forward []string
			if fw == "user" {
				forward = []string{"user"}
			}
			h := handler(k.accept, forward...)
			b.Run(k.name+"/"+fw, func(b *testing.B) {
				st := (*tls.ConnectionState)(nil)
				if k.tls {
					st = tlsState
				}
				bench(b, h, request(k.header, k.value, k.tls, st))
			})
		}
	}
}

var nopHandler = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

// request is the request of a bench row: the header Go's HTTP client
// sends (bin/bench turns compression off, so no Accept-Encoding) and the
// credential header, over TLS with state when overTLS is set.
func request(header, value string, overTLS bool, state *tls.ConnectionState) *http.Request {
	target := "http://127.0.0.1:35000/"
	if overTLS {
		target = "https://localhost:35001/"
	}
	r := httptest.NewRequest("GET", target, nil)
	r.RemoteAddr = "127.0.0.1:40000"
	r.Header.Set("User-Agent", "Go-http-client/1.1")
	if header != "" {
		r.Header.Set(header, value)
	}
	r.TLS = state
	return r
}

// benchHandler runs h (nil: none, only the next handler) on r as Caddy's
// server would for each request: a fresh replacer and context
// (caddyhttp.PrepareRequest), the headers the client sent.
func benchHandler(b *testing.B, h *Handler, r *http.Request) {
	sent := r.Header.Clone()
	var w enginetest.DiscardWriter
	seen := ""
	next := caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error {
		seen = r.Header.Get("X-Gatehouse-User")
		return nil
	})
	serve := func() {
		if err := replay(r, sent, h, &w, next); err != nil {
			b.Fatal(err)
		}
	}
	serve()
	if h != nil && (w.Status != 0 || seen != "bench") {
		b.Fatalf("refused: %d, X-Gatehouse-User %q", w.Status, seen)
	}
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		serve()
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	if w.Status != 0 {
		b.Fatalf("a request was refused: %d", w.Status)
	}
}

// benchHandlerParallel is benchHandler from GOMAXPROCS goroutines, each
// with a copy of r.
func benchHandlerParallel(b *testing.B, h *Handler, r *http.Request) {
	sent := r.Header.Clone()
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	b.ReportAllocs()
	start := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		r := r.Clone(context.Background())
		var w enginetest.DiscardWriter
		for pb.Next() {
			if err := replay(r, sent, h, &w, next); err != nil || w.Status != 0 {
				b.Errorf("refused: %d %v", w.Status, err)
				return
			}
		}
	})
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// replay sends r again with the headers sent, as Caddy's server would a
// new request (a fresh replacer and context, caddyhttp.PrepareRequest),
// through h, or straight to next when h is nil.
func replay(r *http.Request, sent http.Header, h *Handler, w http.ResponseWriter, next caddyhttp.Handler) error {
	clear(r.Header)
	for k, v := range sent {
		r.Header[k] = v
	}
	pr := caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, nil)
	if h == nil {
		return next.ServeHTTP(w, pr)
	}
	return h.ServeHTTP(w, pr, next)
}

// cpuTime is the process's CPU time (user and system) in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
