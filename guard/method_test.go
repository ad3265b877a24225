package guard

import (
	"net/http"
	"testing"
)

// TestMethodOfAWebSocketConnect: a WebSocket opened with an extended
// CONNECT (HTTP/2's :protocol header as Go's server keeps it, HTTP/3's
// as quic-go's puts it in Proto) is judged as the GET Caddy sends
// upstream, also through a method override's own method; a plain CONNECT,
// another :protocol, or an HTTP/1.1 CONNECT naming websocket stays CONNECT.
func TestMethodOfAWebSocketConnect(t *testing.T) {
	req := func(method, proto string, major int, hdr http.Header) *http.Request {
		if hdr == nil {
			hdr = http.Header{}
		}
		r, _ := http.NewRequest(method, "https://example.com/ws?_method=GET", nil)
		r.Proto, r.ProtoMajor, r.Header = proto, major, hdr
		return r
	}
	for _, c := range []struct {
		name string
		r    *http.Request
		want string
	}{
		{"HTTP/3 websocket", req("CONNECT", "websocket", 3, nil), "GET"},
		{"HTTP/2 websocket", req("CONNECT", "HTTP/2.0", 2, http.Header{":protocol": {"websocket"}}), "GET"},
		{"HTTP/1.1 GET upgrade", req("GET", "HTTP/1.1", 1, http.Header{"Upgrade": {"websocket"}}), "GET"},
		{"HTTP/3 webtransport", req("CONNECT", "webtransport", 3, nil), "CONNECT"},
		{"HTTP/3 plain CONNECT", req("CONNECT", "HTTP/3.0", 3, nil), "CONNECT"},
		{"HTTP/2 plain CONNECT", req("CONNECT", "HTTP/2.0", 2, nil), "CONNECT"},
		{"HTTP/1.1 CONNECT", req("CONNECT", "websocket", 1, http.Header{":protocol": {"websocket"}}), "CONNECT"},
		{"HTTP/3 POST", req("POST", "websocket", 3, nil), "POST"},
	} {
		if got := Method(c.r); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
		// A _method=GET in the query is the request's own method when it
		// is judged as GET: no other method to allow.
		var asked []string
		_ = Overrides(c.r, false, func(m string) error { asked = append(asked, m); return nil })
		if want := c.want != "GET"; (len(asked) == 1) != want {
			t.Errorf("%s: override methods checked: %v", c.name, asked)
		}
	}
}
