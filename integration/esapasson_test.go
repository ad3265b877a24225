package integration

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// esaAroundSite serves the ESA API wrapped in intercept, whose error
// pages come from the recording upstream ({{.Extra.recorder}}); its other
// paths go on to that upstream with no gatehouse handler (an operator's
// choice: that route is not Gatehouse's).
const esaAroundSite = `{
	admin 127.0.0.1:{{.AdminPort}}
	skip_install_trust
	auto_https disable_redirects
	gatehouse {
		data_dir {{.DataDir}}
	}
}
https://localhost:{{.ESAPort}} {
	tls internal
	route {
		intercept {
			@err status 4xx 5xx
			handle_response @err {
				reverse_proxy 127.0.0.1:{{.Extra.recorder}}
			}
		}
		gatehouse_esa
		reverse_proxy 127.0.0.1:{{.Extra.recorder}}
	}
}
`

// recorded is what the recording upstream saw of one request: its
// headers, and its trailers once the body was read.
type recorded struct {
	path             string
	header, trailers http.Header
	body             string
}

// TestESASiteHandsOnNoIdentityTrailersNorCredentials: through bin/caddy,
// a request gatehouse_esa passes on loses the identity headers the client
// sent, in any spelling, and the identity fields of its trailers
// (HTTP/1.1, where a declared trailer brings undeclared ones with it, and
// HTTP/2), as the gatehouse handler's requests do, its other headers
// going on; and an
// ESA call it answered, which intercept sends on to an error page, goes
// without the API credential and its body (an OTP).
func TestESASiteHandsOnNoIdentityTrailersNorCredentials(t *testing.T) {
	parallel(t)
	seen := make(chan recorded, 8)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen <- recorded{path: r.URL.Path, header: r.Header.Clone(), trailers: r.Trailer.Clone(), body: string(body)}
		w.WriteHeader(http.StatusOK)
	}))
	defer up.Close()
	_, port, _ := net.SplitHostPort(up.Listener.Addr().String())
	inst := harness.Start(t, esaAroundSite, harness.Options{Extra: map[string]any{"recorder": port}})
	waitTLS(t, inst.Ports.ESAPort)
	base := fmt.Sprintf("https://localhost:%d", inst.Ports.ESAPort)

	// HTTP/1.1, written by hand: one declared trailer, the others not.
	conn, err := tls.Dial("tcp", fmt.Sprintf("localhost:%d", inst.Ports.ESAPort), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}) // test CA
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /app/h1 HTTP/1.1\r\nHost: localhost:%d\r\nTransfer-Encoding: chunked\r\nTrailer: X-Gatehouse-User, X-Checksum\r\nConnection: close\r\n\r\n"+
		"5\r\nhello\r\n0\r\nX-Gatehouse-User: mallory\r\nx_gatehouse_roles: admins\r\nX-Gatehouse-Auth: basic\r\nX-Checksum: abc\r\n\r\n", inst.Ports.ESAPort)
	if res, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || res.StatusCode != 200 {
		t.Fatalf("HTTP/1.1 pass-on: %v %v", res, err)
	}
	conn.Close()
	// HTTP/2, by Go's client, which declares its trailers.
	body, pw := io.Pipe()
	go func() { _, _ = pw.Write([]byte("hello")); pw.Close() }()
	req, _ := http.NewRequest("POST", base+"/app/h2", body)
	req.Trailer = http.Header{"X-Gatehouse-User": {"mallory"}, "X-Gatehouse-Roles": {"admins"}, "X-Checksum": {"abc"}}
	req.Header = http.Header{"X-Gatehouse-User": {"mallory"}, "x-gatehouse-roles": {"admins"}, "X-Gatehouse-Assertion": {"forged"}, "X-Other": {"kept"}}
	res, err := harness.Client(t, nil).Do(req)
	if err != nil || res.StatusCode != 200 || res.ProtoMajor != 2 {
		t.Fatalf("HTTP/2 pass-on: %v %v", res, err)
	}
	res.Body.Close()
	for range 2 {
		got := <-seen
		for name := range got.header {
			if strings.HasPrefix(strings.ToLower(strings.ReplaceAll(name, "_", "-")), "x-gatehouse-") {
				t.Errorf("%s: the upstream got header %s", got.path, name)
			}
		}
		if len(got.trailers) != 1 || got.trailers.Get("X-Checksum") != "abc" || got.body != "hello" {
			t.Errorf("%s: trailers %v, body %q; want X-Checksum alone after hello", got.path, got.trailers, got.body)
		}
		if got.path == "/app/h2" && got.header.Get("X-Other") != "kept" {
			t.Errorf("%s: X-Other %q, want kept", got.path, got.header.Get("X-Other"))
		}
	}

	// An ESA call refused (403: the credential is not enabled for the
	// User Management API) goes to the error page without its credential
	// or body.
	var cred struct{ Username, Password string }
	inst.AdminJSON(t, "POST", "/gatehouse/api-credentials", map[string]any{"name": "authonly", "auth_api": true, "user_management_api": false}, &cred)
	req, _ = http.NewRequest("POST", base+"/manage/users/v1/unlock", strings.NewReader(`{"username":"alice","otp":"123456"}`))
	req.SetBasicAuth(cred.Username, cred.Password)
	req.Header.Set("X-Gatehouse-User", "mallory")
	if res, err = harness.Client(t, nil).Do(req); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	select {
	case got := <-seen:
		if got.header.Get("Authorization") != "" || got.body != "" || got.header.Get("X-Gatehouse-User") != "" {
			t.Errorf("the error page got Authorization %q, X-Gatehouse-User %q, body %q; want none",
				got.header.Get("Authorization"), got.header.Get("X-Gatehouse-User"), got.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the error page was not asked (answer %d)", res.StatusCode)
	}
}
