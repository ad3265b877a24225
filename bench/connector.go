package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/plugin/connector"
)

// issuanceConns and issuanceDuration shape the token-issuance measurement
// that the connector_token row prints while it is set up.
const (
	issuanceConns    = 32
	issuanceDuration = 5 * time.Second
)

// connectorKind is the connector_token row: a bearer token bound to the
// connector's client certificate, on a site verifying client certificates
// against the connector CA — compared with plain_tls, Caddy's own
// client_auth in front of the same upstream. Its setup also measures
// token issuance.
var connectorKind = connectorRowKind("connector_token", "")

// connectorForwardUserKind is connector_token_forward_user: the same
// credential (a connector of its own) on a route with "forward user".
var connectorForwardUserKind = connectorRowKind("connector_token_forward_user", "user")

// connectorRowKind is a connector row named name, its route forwarding
// the identity headers forward names ("": all). The full row measures
// token issuance and, in scale mode, draws among e.scale tokens.
func connectorRowKind(name, forward string) kind {
	if forward != "" {
		forward = "\n\t\tforward " + forward
	}
	return kind{
		name:     name,
		baseline: "plain_tls",
		site: `
https://localhost:{{.` + name + `}} {
	bind 127.0.0.1
	tls internal {
		client_auth {
			mode require_and_verify
			trust_pool gatehouse_connectors
		}
	}
	gatehouse {
		accept connector` + forward + `
	}
	reverse_proxy 127.0.0.1:{{.upstream}}
}
`,
		setup: func(e *env) (row, error) {
			full := forward == ""
			if err := seedBenchUser(e); err != nil {
				return row{}, err
			}
			raw, err := e.mustCall(201, "POST", "/gatehouse/connectors", map[string]string{"name": name, "username": "bench"})
			if err != nil {
				return row{}, err
			}
			var c struct {
				Cert string `json:"certificate_pem"`
				Key  string `json:"private_key_pem"`
			}
			if err := json.Unmarshal(raw, &c); err != nil {
				return row{}, err
			}
			cert, err := tls.X509KeyPair([]byte(c.Cert), []byte(c.Key))
			if err != nil {
				return row{}, err
			}
			tokenURL := fmt.Sprintf("https://localhost:%d/gatehouse/v1/token", e.ports[name])
			issue := target{cert: &cert, next: func(int) *http.Request {
				req, _ := http.NewRequest("POST", tokenURL, strings.NewReader("grant_type=certificate"))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				return req
			}}
			if full {
				s := run(issue, issuanceConns, issuanceDuration, nil)
				log.Printf("connector_token: token issuance %.0f tokens/s (durable; %d connections, p50 %.2f ms, p99 %.2f ms, errors %d)",
					s.rps, issuanceConns, s.p50ms, s.p99ms, s.errors)
			}
			// After the issuance: a connector holds connector.MaxLivePairs, the
			// oldest revoked beyond.
			access, err := fetchToken(issue)
			if err != nil {
				return row{}, err
			}
			if full && e.scale > 0 {
				return scaleTokenRow(e, &cert)
			}
			return row{name: name, baseline: "plain_tls",
				target: e.get("https://localhost:%d/", name, http.Header{"Authorization": {"Bearer " + access}}, &cert)}, nil
		},
	}
}

// scaleTokenRow is the connector_token row of scale mode: e.scale live
// token pairs of the bench connector (whose certificate is cert), written
// offline between two runs of Caddy, and a random one in each request, so
// that most token lookups miss the cache. The restart also makes
// env.startup the start-up time at full size.
func scaleTokenRow(e *env, cert *tls.Certificate) (row, error) {
	var tokens packed
	err := e.restartCaddy(func() (err error) {
		t0 := time.Now()
		if tokens, err = seedTokensOffline(e, e.scale); err != nil {
			return err
		}
		what := fmt.Sprintf("%d live connector token pairs", tokens.len())
		e.seeded = append(e.seeded, what)
		log.Printf("seeded %s in %s (Caddy stopped meanwhile)", what, time.Since(t0).Round(time.Millisecond))
		return nil
	})
	if err != nil {
		return row{}, err
	}
	return row{name: "connector_token", baseline: "plain_tls",
		target: e.drawn("https://localhost:%d/", "connector_token", "Authorization", tokens, cert)}, nil
}

// seedTokensOffline writes n token pairs of the bench connector, as long
// as the default token lifetime, into the stopped main Caddy's Badger
// directory, and returns the Authorization headers of their access tokens.
func seedTokensOffline(e *env, n int) (packed, error) {
	st, _, err := openSeedStore(filepath.Join(e.dir, "data"))
	if err != nil {
		return packed{}, err
	}
	defer st.Close()
	tokens, err := connector.SeedTokens(context.Background(), st, "bench", n, engine.Config{}.WithDefaults().TokenLifetime)
	if err != nil {
		return packed{}, err
	}
	for i, t := range tokens {
		tokens[i] = "Bearer " + t // made now, not in the timed loop
	}
	return pack(tokens)
}

// fetchToken makes one certificate-grant token request.
func fetchToken(issue target) (string, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{*issue.cert}}}} // Caddy's internal test CA
	resp, err := client.Do(issue.next(0))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error_description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.AccessToken == "" {
		return "", fmt.Errorf("token endpoint: %s %s %v", resp.Status, out.Error, err)
	}
	return out.AccessToken, nil
}
