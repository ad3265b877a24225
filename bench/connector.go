package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"strings"
	"time"
)

func init() { kinds = append(kinds, connectorKind) }

// issuanceConns and issuanceDuration shape the token-issuance measurement
// that the connector_token row prints while it is set up.
const (
	issuanceConns    = 32
	issuanceDuration = 5 * time.Second
)

// connectorKind is the connector_token row: a bearer token bound to the
// connector's client certificate, on a site verifying client certificates
// against the connector CA — compared with plain_tls, Caddy's own
// client_auth in front of the same upstream.
var connectorKind = kind{
	name:     "connector_token",
	baseline: "plain_tls",
	site: `
https://localhost:{{.connector_token}} {
	bind 127.0.0.1
	tls internal {
		client_auth {
			mode require_and_verify
			trust_pool gatehouse_connectors
		}
	}
	gatehouse {
		accept connector
	}
	reverse_proxy 127.0.0.1:{{.upstream}}
}
`,
	setup: func(e *env) (row, error) {
		if err := seedBenchUser(e); err != nil {
			return row{}, err
		}
		raw, err := e.mustCall(201, "POST", "/gatehouse/connectors", map[string]string{"name": "bench", "username": "bench"})
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
		tokenURL := fmt.Sprintf("https://localhost:%d/gatehouse/v1/token", e.ports["connector_token"])
		issue := target{cert: &cert, next: func(int) *http.Request {
			req, _ := http.NewRequest("POST", tokenURL, strings.NewReader("grant_type=certificate"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return req
		}}
		access, err := fetchToken(issue)
		if err != nil {
			return row{}, err
		}
		s := run(issue, issuanceConns, issuanceDuration, nil)
		log.Printf("connector_token: token issuance %.0f tokens/s (durable; %d connections, p50 %.2f ms, p99 %.2f ms, errors %d)",
			s.rps, issuanceConns, s.p50ms, s.p99ms, s.errors)
		return row{name: "connector_token", baseline: "plain_tls",
			target: e.get("https://localhost:%d/", "connector_token", http.Header{"Authorization": {"Bearer " + access}}, &cert)}, nil
	},
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
