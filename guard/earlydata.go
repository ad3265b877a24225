package guard

import (
	"net/http"

	"github.com/gatehouse-auth/gatehouse/identity"
)

// ErrEarlyData refuses a request that came in TLS early data (EarlyData).
var ErrEarlyData = identity.TooEarly("the request came in TLS early data (0-RTT), which can be replayed and whose client address is not yet verified; send it again once the handshake is complete")

// EarlyData reports whether r came in TLS early data: the first flight
// of a resumed TLS 1.3 connection, read before its handshake completed
// (Caddy takes it over HTTP/3 unless the server sets allow_0rtt false).
// Anyone who saw that flight can send it again, as often as they like,
// and its source address is not yet verified, so a spoofed one passes an
// application key's IP allowlist. Gatehouse judges no such request: the
// data plane, its own endpoints (sign-in, token exchange, logout), the
// console and the ESA API answer 425 Too Early, and the client sends the
// request again on the completed handshake (RFC 8470; browsers do so on
// their own). Public paths pass, with Caddy's Early-Data: 1 to the
// upstream.
func EarlyData(r *http.Request) bool { return r.TLS != nil && !r.TLS.HandshakeComplete }
