package guard

import "net/http"

// Method is the method Gatehouse judges r by, for the role rules, a
// method override's own method and the assertion's htm: r.Method, except
// for a WebSocket opened with an extended CONNECT (RFC 8441 over HTTP/2,
// RFC 9220 over HTTP/3, which every Caddy HTTP/3 server takes), which is
// GET. Caddy's reverse proxy sends such a request upstream as the GET
// with Upgrade: websocket that an HTTP/1.1 client sends, so a WebSocket
// is then one method whatever protocol the client chose: before, a role
// allowing GET let it in over HTTP/1.1 and refused it over HTTP/3, and
// its assertion named CONNECT for an upstream that got a GET. The test
// is Caddy's own (reverseproxy's ServeHTTP): other :protocol values
// (WebTransport, CONNECT-UDP) stay CONNECT, as Caddy passes them on.
func Method(r *http.Request) string {
	if r.Method == http.MethodConnect && ((r.ProtoMajor == 3 && r.Proto == "websocket") ||
		(r.ProtoMajor == 2 && r.Header.Get(":protocol") == "websocket")) {
		return http.MethodGet
	}
	return r.Method
}
