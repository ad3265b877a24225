package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
)

// Shape of the ESA authenticate measurement printed while the session row
// is set up.
const (
	authenticateConns    = 32
	authenticateDuration = 5 * time.Second
)

// sessionKind is the session row: the cookie of a 2FA login session, made
// by signing in through the login portal over HTTP (password, then a TOTP
// code), as a browser does. Its setup also measures the ESA API's
// authenticate endpoint.
var sessionKind = kind{
	name:     "session",
	baseline: "plain",
	fullSet:  true,
	site: `
http://:{{.session}} {
	bind 127.0.0.1
	gatehouse {
		accept session
	}
	reverse_proxy 127.0.0.1:{{.upstream}}
}
http://:{{.esa}} {
	bind 127.0.0.1
	gatehouse_esa
}
`,
	prepare: func(e *env) error {
		e.ports["esa"] = freePort()
		return nil
	},
	setup: func(e *env) (row, error) {
		r, err := sessionRow("session", e)
		if err != nil {
			return row{}, err
		}
		if err := measureAuthenticate(e); err != nil {
			log.Printf("session: ESA authenticate not measured: %v", err)
		}
		return r, nil
	},
}

// sessionRow signs the bench user in once per run (portalLogin) and
// returns the row name, sending the session cookie to the port of the
// same name.
func sessionRow(name string, e *env) (row, error) {
	if e.sessionCookie == "" {
		if err := seedBenchUser(e); err != nil {
			return row{}, err
		}
		cookie, err := portalLogin(e, name)
		if err != nil {
			return row{}, fmt.Errorf("signing in through the portal: %v", err)
		}
		e.sessionCookie = cookie
	}
	return row{name: name, baseline: "plain",
		target: e.get("http://127.0.0.1:%d/", name, http.Header{"Cookie": {e.sessionCookie}}, nil)}, nil
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// portalLogin enrols the bench user's authenticator app and signs in
// through /gatehouse/login on the session route of the port named port;
// it returns the Cookie header of the session.
func portalLogin(e *env, port string) (string, error) {
	raw, err := e.mustCall(201, "POST", "/gatehouse/users/bench/otp", map[string]string{"type": "APP"})
	if err != nil {
		return "", err
	}
	var enrolled struct {
		URI string `json:"otpauth_uri"`
	}
	if err := json.Unmarshal(raw, &enrolled); err != nil {
		return "", err
	}
	u, err := url.Parse(enrolled.URI)
	if err != nil {
		return "", err
	}
	secret := u.Query().Get("secret")
	login := fmt.Sprintf("http://127.0.0.1:%d/gatehouse/login", e.ports[port])
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// The cookies are Secure; over this loopback http site they are
	// carried by hand, as a jar would over https.
	cookies := map[string]string{}
	step := func(method string, form url.Values) (*http.Response, string, error) {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, login, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		for name, value := range cookies {
			req.AddCookie(&http.Cookie{Name: name, Value: value})
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		page, _ := io.ReadAll(resp.Body)
		for _, c := range resp.Cookies() {
			cookies[c.Name] = c.Value
		}
		return resp, string(page), nil
	}
	csrf := func(page string) string {
		if m := csrfRE.FindStringSubmatch(page); m != nil {
			return m[1]
		}
		return ""
	}
	_, page, err := step("GET", nil)
	if err != nil {
		return "", err
	}
	_, page, err = step("POST", url.Values{"csrf": {csrf(page)}, "step": {"password"}, "username": {"bench"}, "password": {"correct horse battery"}})
	if err != nil {
		return "", err
	}
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		return "", err
	}
	resp, _, err := step("POST", url.Values{"csrf": {csrf(page)}, "step": {"code"}, "code": {code}})
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusSeeOther || cookies["__Host-gatehouse_session"] == "" {
		return "", fmt.Errorf("no session after the code step: %s", resp.Status)
	}
	return "__Host-gatehouse_session=" + cookies["__Host-gatehouse_session"], nil
}

// measureAuthenticate drives POST /auth/v1/authenticate with a valid,
// never-used HOTP code in every request (one hardware-token user per
// connection, counters moving forward) and prints the verifications per
// second that answered authenticated:true. Every one is a full check: API
// credential, user, factor, a durable compare-and-swap of the counter.
func measureAuthenticate(e *env) error {
	cred, err := e.mustCall(201, "POST", "/gatehouse/api-credentials", map[string]any{"name": "bench", "auth_api": true})
	if err != nil {
		return err
	}
	var api struct{ Username, Password string }
	if err := json.Unmarshal(cred, &api); err != nil {
		return err
	}
	const secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	for w := range authenticateConns {
		name := fmt.Sprintf("otp-%d", w)
		if _, err := e.mustCall(201, "POST", "/gatehouse/users", map[string]any{"username": name, "roles": []string{"bench"}}); err != nil {
			return err
		}
		if _, err := e.mustCall(201, "POST", "/gatehouse/users/"+name+"/otp", map[string]any{"type": "HARD_TOKEN", "secret": secret}); err != nil {
			return err
		}
	}
	endpoint := fmt.Sprintf("http://127.0.0.1:%d/auth/v1/authenticate", e.ports["esa"])
	var mu sync.Mutex
	var latencies []time.Duration
	refused := 0
	deadline := time.Now().Add(authenticateDuration)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range authenticateConns {
		wg.Go(func() {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}}
			defer client.CloseIdleConnections()
			var lat []time.Duration
			bad := 0
			for counter := uint64(0); time.Now().Before(deadline); counter++ {
				code, _ := hotp.GenerateCode(secret, counter)
				body, _ := json.Marshal(map[string]string{"username": fmt.Sprintf("otp-%d", w), "otp": code})
				req, _ := http.NewRequest("POST", endpoint, bytes.NewReader(body))
				req.SetBasicAuth(api.Username, api.Password)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					bad++
					continue
				}
				var out struct{ Authenticated bool }
				err = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if err != nil || !out.Authenticated {
					bad++
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			latencies = append(latencies, lat...)
			refused += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(latencies) == 0 {
		return fmt.Errorf("no code was accepted (%d refused)", refused)
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	log.Printf("session: ESA authenticate %.0f verifications/s (accepted HOTP codes; %d connections, %s, p50 %.2f ms, p99 %.2f ms, refused or failed %d)",
		float64(len(latencies))/elapsed.Seconds(), authenticateConns, authenticateDuration,
		ms(latencies[len(latencies)/2]), ms(latencies[len(latencies)*99/100]), refused)
	return nil
}
