package integration

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
)

// twoFactorSite has a protected site that accepts sessions (with the
// login portal), the ESA API on its own port and SMS through the file
// sender unless Extra.sms says otherwise.
const twoFactorSite = `{
	admin 127.0.0.1:{{.AdminPort}}
	skip_install_trust
	auto_https disable_redirects
	gatehouse {
		data_dir {{.DataDir}}
		lockout_threshold 5
		{{if .Extra.sms}}{{.Extra.sms}}{{else}}sms file {{.Dir}}/sms.log{{end}}
		{{if .Extra.hotp}}hotp_window {{.Extra.hotp}}{{end}}
	}
}
https://localhost:{{.HTTPSPort}} {
	tls internal
	gatehouse {
		accept basic session
		audience demo
	}
	reverse_proxy 127.0.0.1:{{.UpstreamPort}}
}
https://localhost:{{.ESAPort}} {
	tls internal
	gatehouse_esa {
		portal_url https://localhost:{{.HTTPSPort}}
	}
}
http://:{{.UpstreamPort}} {
	bind 127.0.0.1
	gatehouse_echo
}
`

const tfPassword = "correct horse battery"

// tfInstance is a running two-factor site with API credentials.
type tfInstance struct {
	*harness.Instance
	t                 *testing.T
	both, auth, users apiCredential
}

type apiCredential struct {
	Name, Username, Password string
}

func startTwoFactor(t *testing.T, opts harness.Options) *tfInstance {
	t.Helper()
	return startTwoFactorSite(t, twoFactorSite, opts)
}

// startTwoFactorSite is startTwoFactor with a Caddyfile template of the
// caller's, with the sites of twoFactorSite.
func startTwoFactorSite(t *testing.T, site string, opts harness.Options) *tfInstance {
	t.Helper()
	harness.RequireTool(t, "oathtool")
	inst := harness.Start(t, site, opts)
	ti := &tfInstance{Instance: inst, t: t}
	waitTLS(t, inst.Ports.HTTPSPort)
	waitTLS(t, inst.Ports.ESAPort)
	inst.MustAdmin(t, 200, "PUT", "/gatehouse/roles/staff", `{"rules":[{"methods":["GET"],"paths":["/app/*","/"]}]}`)
	for _, c := range []struct {
		dst        *apiCredential
		name       string
		auth, mgmt bool
	}{{&ti.both, "both", true, true}, {&ti.auth, "auth-only", true, false}, {&ti.users, "users-only", false, true}} {
		if st := inst.AdminJSON(t, "POST", "/gatehouse/api-credentials",
			map[string]any{"name": c.name, "auth_api": c.auth, "user_management_api": c.mgmt}, c.dst); st != 201 {
			t.Fatalf("creating API credential %s: %d", c.name, st)
		}
	}
	return ti
}

func (ti *tfInstance) esaURL() string { return fmt.Sprintf("https://localhost:%d", ti.Ports.ESAPort) }

func (ti *tfInstance) user(name, mobile string) {
	ti.t.Helper()
	body := map[string]any{"username": name, "roles": []string{"staff"}, "password": tfPassword}
	if mobile != "" {
		body["mobile_number"] = mobile
	}
	ti.MustAdmin(ti.t, 201, "POST", "/gatehouse/users", body)
}

// enrolApp gives the user a TOTP secret through the admin API and returns it.
func (ti *tfInstance) enrolApp(name string) string {
	ti.t.Helper()
	var out struct {
		OTPAuthURI string `json:"otpauth_uri"`
	}
	if st := ti.AdminJSON(ti.t, "POST", "/gatehouse/users/"+name+"/otp", `{"type":"APP"}`, &out); st != 201 {
		ti.t.Fatalf("enrolling APP for %s: %d", name, st)
	}
	u, err := url.Parse(out.OTPAuthURI)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Query().Get("secret") == "" {
		ti.t.Fatalf("otpauth_uri %q", out.OTPAuthURI)
	}
	return u.Query().Get("secret")
}

// esa calls the ESA API with the real curl, validates the answer against
// the API's OpenAPI document and decodes it; body "" makes a GET.
func (ti *tfInstance) esa(cred apiCredential, path, body string) map[string]any {
	ti.t.Helper()
	args := []string{"-u", cred.Username + ":" + cred.Password, ti.esaURL() + path}
	if body != "" {
		args = append(args, "-H", "Content-Type: application/json", "-d", body)
	}
	res := harness.Curl(ti.t, args...)
	method := http.MethodGet
	if body != "" {
		method = http.MethodPost
	}
	harness.CheckESAAnswer(ti.t, method, path, res.Status, res.Headers, []byte(res.Body))
	if res.Status != 200 {
		ti.t.Fatalf("ESA %s: HTTP %d %q", path, res.Status, res.Body)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(res.Body), &out); err != nil {
		ti.t.Fatalf("ESA %s: %q is not JSON", path, res.Body)
	}
	return out
}

func oathtool(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(harness.RequireTool(t, "oathtool"), args...).Output()
	if err != nil {
		t.Fatalf("oathtool %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// totpNow is the current TOTP code from oathtool; totpNext the one of the next step.
func totpNow(t *testing.T, secret string) string { return oathtool(t, "--totp", "-b", secret) }
func totpNext(t *testing.T, secret string) string {
	return oathtool(t, "--totp", "-b", "-N", "now + 30 seconds", secret)
}

// lastSMS returns the last JSON line of the file sender.
func lastSMS(t *testing.T, path string) (to, message string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("no SMS file: %v", err)
	}
	defer f.Close()
	var last string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		last = sc.Text()
	}
	var m struct{ To, Message string }
	if err := json.Unmarshal([]byte(last), &m); err != nil {
		t.Fatalf("SMS line %q: %v", last, err)
	}
	return m.To, m.Message
}

var sixDigits = regexp.MustCompile(`\b\d{6}\b`)

func smsCode(t *testing.T, path string) string {
	t.Helper()
	_, msg := lastSMS(t, path)
	c := sixDigits.FindString(msg)
	if c == "" {
		t.Fatalf("no code in SMS %q", msg)
	}
	return c
}

func TestESAHTTPLevelErrors(t *testing.T) {
	parallel(t)
	ti := startTwoFactor(t, harness.Options{})
	ti.user("alice", "")
	body := `{"username":"alice"}`
	for _, c := range []struct {
		name   string
		args   []string
		status int
	}{
		{"no credentials", nil, 401},
		{"bearer instead of basic", []string{"-H", "Authorization: Bearer abc"}, 400},
		{"undecodable basic", []string{"-H", "Authorization: Basic %%%"}, 400},
		{"basic without colon", []string{"-H", "Authorization: Basic YWJj"}, 400},
		{"wrong password", []string{"-u", ti.both.Username + ":nope"}, 403},
		{"unknown API user", []string{"-u", "esa-0000000000000000:" + ti.both.Password}, 403},
		{"users-only on the Auth API", []string{"-u", ti.users.Username + ":" + ti.users.Password}, 403},
	} {
		args := append(append([]string{}, c.args...), "-d", body, ti.esaURL()+"/auth/v1/start2fa")
		res := harness.Curl(t, args...)
		if res.Status != c.status || res.Body != "" {
			t.Errorf("%s: HTTP %d body %q, want %d with an empty body", c.name, res.Status, res.Body, c.status)
		}
		harness.CheckESAAnswer(t, "POST", "/auth/v1/start2fa", res.Status, res.Headers, []byte(res.Body))
	}
	res := harness.Curl(t, "-u", ti.auth.Username+":"+ti.auth.Password, "-d", body, ti.esaURL()+"/manage/users/v1/unlock")
	if res.Status != 403 || res.Body != "" {
		t.Errorf("auth-only on the User Management API: %d %q", res.Status, res.Body)
	}
	harness.CheckESAAnswer(t, "POST", "/manage/users/v1/unlock", res.Status, res.Headers, []byte(res.Body))
	res = harness.Curl(t, ti.esaURL()+"/manage/users/v1/profile/alice")
	if res.Status != 401 || res.Body != "" {
		t.Errorf("profile without credentials: %d %q", res.Status, res.Body)
	}
	harness.CheckESAAnswer(t, "GET", "/manage/users/v1/profile/alice", res.Status, res.Headers, []byte(res.Body))
	// Deleted credentials stop working at once.
	ti.MustAdmin(t, 204, "DELETE", "/gatehouse/api-credentials/auth-only", nil)
	res = harness.Curl(t, "-u", ti.auth.Username+":"+ti.auth.Password, "-d", body, ti.esaURL()+"/auth/v1/start2fa")
	if res.Status != 403 {
		t.Errorf("deleted credential: %d", res.Status)
	}
	var list []map[string]any
	ti.AdminJSON(t, "GET", "/gatehouse/api-credentials", nil, &list)
	if len(list) != 2 || list[0]["password"] != nil || list[0]["password_digest"] != nil {
		t.Errorf("credential list: %v", list)
	}
	// API errors are HTTP 200 with an error code.
	out := ti.esa(ti.both, "/auth/v1/start2fa", `{"username":"nobody"}`)
	if out["error"] != "ERROR_USER_NOT_FOUND" || fmt.Sprint(out["expected_otp"]) != "[]" {
		t.Errorf("unknown user: %v", out)
	}
	out = ti.esa(ti.both, "/auth/v1/authenticate", `{"username":`)
	if out["error"] != "ERROR_FAULT" || out["authenticated"] != false || out["error_message"] == nil {
		t.Errorf("malformed JSON: %v", out)
	}
	// Without the directive there is no ESA API (the protected site answers as usual).
	if res := harness.Curl(t, "-u", ti.both.Username+":"+ti.both.Password, "-d", body, ti.HTTPSURL()+"/auth/v1/start2fa"); res.Status != 401 {
		t.Errorf("ESA path on a site without gatehouse_esa: %d", res.Status)
	}
}

// TestESASlowBodyIsCutOff: through bin/caddy, a request body trickling in
// a byte every two seconds holds an ESA API connection for about
// smallbody.Timeout (10 s), with credentials or without, not for as long
// as the client likes (Caddy sets no body read timeout by default: an
// outside review held 3 000 such connections open): the server answers
// or closes the connection.
func TestESASlowBodyIsCutOff(t *testing.T) {
	// Serial: it asserts how long a trickling body holds the connection (9 s to 40 s).
	ti := startTwoFactor(t, harness.Options{})
	auth := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(ti.both.Username+":"+ti.both.Password)) + "\r\n"
	var wg sync.WaitGroup
	for _, c := range []struct{ name, auth string }{{"without credentials", ""}, {"with credentials", auth}} {
		wg.Go(func() {
			conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ti.Ports.ESAPort),
				&tls.Config{InsecureSkipVerify: true, ServerName: "localhost", NextProtos: []string{"http/1.1"}}) //nolint:gosec // G402: the instance's own internal CA
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			began := time.Now()
			fmt.Fprintf(conn, "POST /auth/v1/start2fa HTTP/1.1\r\nHost: localhost\r\n%sContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{", c.auth)
			stop := harness.Trickle(conn) // the rest of the body, a byte every two seconds
			_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
			_, err = io.Copy(io.Discard, conn) // the answer, until the server closes
			stop()
			took := time.Since(began)
			if err != nil || took > 40*time.Second {
				t.Errorf("%s: the trickling body held the connection %v (%v); want it given up after about 10s", c.name, took.Round(time.Second), err)
			}
			if took < 9*time.Second {
				t.Errorf("%s: the connection ended after %v, before the body's time was up", c.name, took.Round(time.Second))
			}
		})
	}
	wg.Wait()
}

func TestESAAppHardTokenAndSMS(t *testing.T) {
	parallel(t)
	ti := startTwoFactor(t, harness.Options{})
	smsLog := filepath.Join(ti.Ports.Dir, "sms.log")
	ti.user("alice", "")
	ti.user("bob", "")
	ti.user("carol", "+421 900 123 456")

	// APP: oathtool's current code is accepted once.
	secret := ti.enrolApp("alice")
	out := ti.esa(ti.both, "/auth/v1/start2fa", `{"username":"alice"}`)
	if fmt.Sprint(out["expected_otp"]) != "[APP]" || out["error"] != "ERROR_NONE" {
		t.Fatalf("start2fa: %v", out)
	}
	code := totpNow(t, secret)
	authenticate := func(user, otp string) map[string]any {
		return ti.esa(ti.auth, "/auth/v1/authenticate", fmt.Sprintf(`{"username":%q,"otp":%q}`, user, otp))
	}
	if out = authenticate("alice", code); out["authenticated"] != true || out["error"] != "ERROR_NONE" {
		t.Fatalf("TOTP from oathtool: %v", out)
	}
	if out = authenticate("alice", code); out["authenticated"] != false {
		t.Fatalf("replayed TOTP accepted: %v", out)
	}
	// The next step's code (clock skew) is accepted, with spaces too.
	next := totpNext(t, secret)
	if out = authenticate("ALICE", next[:3]+" "+next[3:]); out["authenticated"] != true {
		t.Fatalf("next-step TOTP: %v", out)
	}

	// HARD_TOKEN: imported secret, oathtool HOTP codes, look-ahead window, forward-only counter.
	const tokenSecret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	ti.MustAdmin(t, 201, "POST", "/gatehouse/users/bob/otp", map[string]any{"type": "HARD_TOKEN", "secret": tokenSecret, "counter": 3})
	hotp := func(c int) string { return oathtool(t, "-c", strconv.Itoa(c), "-b", tokenSecret) }
	if out = authenticate("bob", hotp(3)); out["authenticated"] != true {
		t.Fatalf("HOTP counter 3: %v", out)
	}
	if out = authenticate("bob", hotp(3)); out["authenticated"] != false {
		t.Fatalf("replayed HOTP: %v", out)
	}
	if out = authenticate("bob", hotp(2)); out["authenticated"] != false {
		t.Fatalf("HOTP before the counter: %v", out)
	}
	if out = authenticate("bob", hotp(4+10)); out["authenticated"] != true {
		t.Fatalf("HOTP at the edge of the window (10 ahead): %v", out)
	}
	if out = authenticate("bob", hotp(15+11)); out["authenticated"] != false {
		t.Fatalf("HOTP beyond the window: %v", out)
	}
	if out = authenticate("bob", hotp(15)); out["authenticated"] != true {
		t.Fatalf("HOTP right after the window jump: %v", out)
	}
	// A client's trailing newline, a phone's no-break space: white space,
	// ignored as ESA's server ignores it.
	if out = authenticate("bob", hotp(16)+"\r\n"); out["authenticated"] != true {
		t.Fatalf("HOTP with a trailing CR LF: %v", out)
	}
	if c := hotp(17); authenticate("bob", c[:3]+"\u00a0"+c[3:])["authenticated"] != true {
		t.Fatal("HOTP with a no-break space inside refused")
	}
	// The same token imported again with its first counter (a
	// resynchronisation) takes back none of the codes it gave.
	ti.MustAdmin(t, 201, "POST", "/gatehouse/users/bob/otp", map[string]any{"type": "HARD_TOKEN", "secret": tokenSecret, "counter": 3})
	if out = authenticate("bob", hotp(3)); out["authenticated"] != false {
		t.Fatalf("HOTP counter 3, spent, accepted after the token was imported again: %v", out)
	}
	if out = authenticate("bob", hotp(18)); out["authenticated"] != true {
		t.Fatalf("the next HOTP after the import: %v", out)
	}
	// A .NET client's forms (compatibility.md): the path in another case
	// with a trailing slash, the code an int (the next one without a
	// leading zero, which a number cannot carry).
	c := 19
	for hotp(c)[0] == '0' {
		c++
	}
	if out = ti.esa(ti.auth, "/Auth/V1/Authenticate/", `{"UserName":"bob","otp":`+hotp(c)+`}`); out["authenticated"] != true {
		t.Fatalf("HOTP %s as a number, to /Auth/V1/Authenticate/: %v", hotp(c), out)
	}

	// SMS: provisiontextmessage, start2fa sends the code to the file sender.
	if out = ti.esa(ti.users, "/manage/users/v1/provisiontextmessage", `{"username":"carol"}`); out["error"] != "ERROR_NONE" {
		t.Fatalf("provisiontextmessage: %v", out)
	}
	if out = ti.esa(ti.auth, "/auth/v1/start2fa", `{"username":"carol"}`); fmt.Sprint(out["expected_otp"]) != "[SMS]" {
		t.Fatalf("start2fa SMS: %v", out)
	}
	to, msg := lastSMS(t, smsLog)
	first := sixDigits.FindString(msg)
	if to != "+421900123456" || first == "" {
		t.Fatalf("SMS line: %q %q", to, msg)
	}
	ti.esa(ti.auth, "/auth/v1/start2fa", `{"username":"carol"}`) // a new code replaces the old one
	second := smsCode(t, smsLog)
	if first != second {
		if out = authenticate("carol", first); out["authenticated"] != false {
			t.Fatalf("replaced SMS code accepted: %v", out)
		}
	}
	if out = authenticate("carol", second); out["authenticated"] != true {
		t.Fatalf("SMS code: %v", out)
	}
	if out = authenticate("carol", second); out["authenticated"] != false || !strings.Contains(fmt.Sprint(out["error_message"]), "already accepted") {
		t.Fatalf("SMS code used twice: %v", out)
	}
	if ti.LogContains(second) {
		t.Fatal("an SMS code appears in Caddy's log")
	}

	// The profile, as ESA shows it: the code sent again after it was
	// accepted is a failure (last_failure) but not counted toward the
	// lockout (a client retrying).
	out = ti.esa(ti.users, "/manage/users/v1/profile/carol", "")
	if out["username"] != "carol" || out["mobile_number"] != "+421900123456" || out["is_locked"] != false ||
		out["consecutive_failures"] != float64(0) || fmt.Sprint(out["credential_type"]) != "[SMS]" || out["error"] != "ERROR_NONE" {
		t.Fatalf("profile: %v", out)
	}
	date := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$`)
	for _, k := range []string{"last_success", "last_failure"} {
		s, _ := out[k].(string)
		when, err := time.Parse("2006-01-02T15:04:05", s)
		if !date.MatchString(s) || err != nil || time.Since(when) > time.Minute || time.Since(when) < -time.Minute {
			t.Fatalf("profile %s = %v (want a recent UTC time like 2014-01-01T00:00:00)", k, out[k])
		}
	}
	if out = ti.esa(ti.users, "/manage/users/v1/profile/"+url.PathEscape("nobody"), ""); out["error"] != "ERROR_USER_NOT_FOUND" {
		t.Fatalf("profile of an unknown user: %v", out)
	}
	ti.user("dora", "")
	if out = ti.esa(ti.users, "/manage/users/v1/profile/dora", ""); out["last_success"] != nil || out["last_failure"] != nil || out["mobile_number"] != "" {
		t.Fatalf("profile without history: %v", out)
	}
	if out = ti.esa(ti.users, "/manage/users/v1/provisiontextmessage", `{"username":"dora"}`); out["error"] != "ERROR_FAULT" ||
		!strings.Contains(fmt.Sprint(out["error_message"]), "mobile number") {
		t.Fatalf("provisiontextmessage without a mobile number: %v", out)
	}

	// deprovision removes every factor.
	if out = ti.esa(ti.users, "/manage/users/v1/deprovision", `{"username":"bob"}`); out["error"] != "ERROR_NONE" {
		t.Fatalf("deprovision: %v", out)
	}
	if out = ti.esa(ti.auth, "/auth/v1/start2fa", `{"username":"bob"}`); fmt.Sprint(out["expected_otp"]) != "[]" {
		t.Fatalf("after deprovision: %v", out)
	}
}

func TestESAProvisionMobileApp(t *testing.T) {
	parallel(t)
	ti := startTwoFactor(t, harness.Options{})
	smsLog := filepath.Join(ti.Ports.Dir, "sms.log")
	ti.user("erin", "+12025550123")
	out := ti.esa(ti.users, "/manage/users/v1/provisionmobileapp", `{"username":"erin"}`)
	link, _ := out["installation_url"].(string)
	prefix := ti.HTTPSURL() + "/gatehouse/enrol?t="
	if out["error"] != "ERROR_NONE" || !strings.HasPrefix(link, prefix) {
		t.Fatalf("provisionmobileapp: %v", out)
	}
	if to, msg := lastSMS(t, smsLog); to != "+12025550123" || !strings.Contains(msg, link) {
		t.Fatalf("installation SMS: %q %q", to, msg)
	}
	// The link shows a confirmation page, then the QR code and secret once.
	jar := filepath.Join(t.TempDir(), "cookies")
	page := harness.Curl(t, "-c", jar, "-b", jar, link)
	csrf := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(page.Body)
	if page.Status != 200 || csrf == nil || strings.Contains(page.Body, "secret=") {
		t.Fatalf("enrolment page: %d %s", page.Status, page.Body)
	}
	form := "csrf=" + csrf[1] + "&t=" + strings.TrimPrefix(link, prefix)
	shown := harness.Curl(t, "-c", jar, "-b", jar, "-d", form, ti.HTTPSURL()+"/gatehouse/enrol")
	secret := regexp.MustCompile(`id="secret">([A-Z2-7]+)<`).FindStringSubmatch(shown.Body)
	if shown.Status != 200 || secret == nil || !strings.Contains(shown.Body, `src="data:image/png;base64,`) ||
		!strings.Contains(shown.Body, "otpauth://totp/Gatehouse:erin?") {
		t.Fatalf("enrolment shown: %d %s", shown.Status, shown.Body)
	}
	if csp := shown.Headers.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("CSP: %q", csp)
	}
	if again := harness.Curl(t, "-c", jar, "-b", jar, "-d", form, ti.HTTPSURL()+"/gatehouse/enrol"); again.Status != 404 {
		t.Fatalf("link used twice: %d", again.Status)
	}
	out = ti.esa(ti.auth, "/auth/v1/authenticate", `{"username":"erin","otp":"`+totpNow(t, secret[1])+`"}`)
	if out["authenticated"] != true {
		t.Fatalf("code of the enrolled app: %v", out)
	}
}

func TestESAParallelLockout(t *testing.T) {
	parallel(t)
	ti := startTwoFactor(t, harness.Options{})
	ti.user("frank", "")
	secret := ti.enrolApp("frank")
	client := harness.Client(t, nil)
	var wg sync.WaitGroup
	var refused, busy atomic.Int32
	for i := range 40 {
		wg.Go(func() {
			body := fmt.Sprintf(`{"username":"frank","otp":"%06d"}`, (i*7919)%1000000)
			req, _ := http.NewRequest("POST", ti.esaURL()+"/auth/v1/authenticate", strings.NewReader(body))
			req.SetBasicAuth(ti.auth.Username, ti.auth.Password)
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var out map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
				t.Errorf("HTTP %d: %v", resp.StatusCode, err)
				return
			}
			if out["authenticated"] == false {
				refused.Add(1)
			}
			if out["error_message"] == twofactor.ReasonBusy {
				busy.Add(1) // counted past the threshold before the lock was stored: taken back
			}
		})
	}
	wg.Wait()
	if refused.Load() != 40 {
		t.Fatalf("%d of 40 wrong codes refused", refused.Load())
	}
	out := ti.esa(ti.users, "/manage/users/v1/profile/frank", "")
	if out["is_locked"] != true || out["consecutive_failures"] != float64(40-busy.Load()) {
		t.Fatalf("after 40 parallel wrong codes, %d answered busy: %v", busy.Load(), out)
	}
	// A right code for a locked user is refused.
	code := totpNow(t, secret)
	if out = ti.esa(ti.auth, "/auth/v1/authenticate", `{"username":"frank","otp":"`+code+`"}`); out["authenticated"] != false {
		t.Fatalf("locked user with the right code: %v", out)
	}
	if out = ti.esa(ti.users, "/manage/users/v1/unlock", `{"username":"frank"}`); out["error"] != "ERROR_NONE" {
		t.Fatalf("unlock: %v", out)
	}
	if out = ti.esa(ti.users, "/manage/users/v1/profile/frank", ""); out["is_locked"] != false || out["consecutive_failures"] != float64(0) {
		t.Fatalf("after unlock: %v", out)
	}
	if out = ti.esa(ti.auth, "/auth/v1/authenticate", `{"username":"frank","otp":"`+code+`"}`); out["authenticated"] != true {
		t.Fatalf("after unlock: %v", out)
	}
	// The lockout is in the audit log, with the request that locked.
	var events []struct {
		Kind, Username, Outcome, Reason string
		RemoteIP                        string `json:"remote_ip"`
		Method, Path                    string
	}
	ti.AdminJSON(t, "GET", "/gatehouse/audit?username=frank&kind=2fa&limit=100", nil, &events)
	locked := 0
	for _, e := range events {
		if strings.Contains(e.Reason, "locked after 5 consecutive failures") {
			locked++
			if e.RemoteIP != "127.0.0.1" || e.Method != "POST" || e.Path != "/auth/v1/authenticate" {
				t.Fatalf("the lock event names no request: %+v", e)
			}
		}
	}
	if locked != 1 {
		t.Fatalf("want one lock event, got %d in %+v", locked, events)
	}
}

func TestSMSWebhookSender(t *testing.T) {
	parallel(t)
	type request struct {
		Header http.Header
		Body   map[string]string
	}
	var mu sync.Mutex
	var got []request
	var failAll atomic.Bool
	gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]string
		_ = json.Unmarshal(raw, &body) // a bad body is kept empty and fails the checks on it
		mu.Lock()
		got = append(got, request{r.Header.Clone(), body})
		n := len(got)
		mu.Unlock()
		if failAll.Load() || n%3 != 0 { // two failures, then success: retries 2 gets through
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer gateway.Close()
	sms := fmt.Sprintf("sms webhook %s/send {\n\t\t\theader X-Api-Key {env.GATEHOUSE_TEST_SMS_KEY}\n\t\t\ttimeout 2s\n\t\t\tretries 2\n\t\t}", gateway.URL)
	ti := startTwoFactor(t, harness.Options{Extra: map[string]any{"sms": sms}, Env: []string{"GATEHOUSE_TEST_SMS_KEY=k-123"}})
	ti.user("gina", "+447700900123")
	ti.MustAdmin(t, 201, "POST", "/gatehouse/users/gina/otp", `{"type":"SMS"}`)
	out := ti.esa(ti.auth, "/auth/v1/start2fa", `{"username":"gina"}`)
	if out["error"] != "ERROR_NONE" {
		t.Fatalf("start2fa: %v", out)
	}
	mu.Lock()
	n, last := len(got), got[len(got)-1]
	mu.Unlock()
	if n != 3 || last.Header.Get("X-Api-Key") != "k-123" || last.Header.Get("Content-Type") != "application/json" ||
		last.Body["to"] != "+447700900123" {
		t.Fatalf("gateway saw %d calls, last %+v", n, last)
	}
	code := sixDigits.FindString(last.Body["message"])
	if out = ti.esa(ti.auth, "/auth/v1/authenticate", `{"username":"gina","otp":"`+code+`"}`); out["authenticated"] != true {
		t.Fatalf("code from the webhook: %v", out)
	}
	// When the gateway keeps failing, start2fa says so after 1 + 2 attempts.
	failAll.Store(true)
	out = ti.esa(ti.auth, "/auth/v1/start2fa", `{"username":"gina"}`)
	if out["error"] != "ERROR_FAULT" || fmt.Sprint(out["expected_otp"]) != "[SMS]" {
		t.Fatalf("start2fa with a failing gateway: %v", out)
	}
	mu.Lock()
	n = len(got)
	mu.Unlock()
	if n != 6 {
		t.Fatalf("gateway saw %d calls, want 6", n)
	}
	if ti.LogContains(code) || ti.LogContains("valid for 5 minutes") {
		t.Fatal("SMS content in Caddy's log")
	}
}

func TestAdminSecondFactorAPI(t *testing.T) {
	parallel(t)
	ti := startTwoFactor(t, harness.Options{})
	ti.user("hank", "")
	for _, c := range []struct {
		body   string
		status int
	}{
		{`{"type":"EMAIL"}`, 400},
		{`{"type":"HARD_TOKEN"}`, 400},
		{`{"type":"HARD_TOKEN","secret":"GEZDGNBV"}`, 400},
		{`{"type":"HARD_TOKEN","secret":"not base32!!"}`, 400},
		{`{"type":"HARD_TOKEN","secret":"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ","counter":-1}`, 400},
		{`{"type":"APP","counter":3}`, 400},
		{`{"type":"SMS"}`, 400}, // no mobile number
		{`{"type":"SMS","secret":"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"}`, 400},
		{`{"type":"APP","extra":1}`, 400},
	} {
		if st, body := ti.Admin(t, "POST", "/gatehouse/users/hank/otp", c.body); st != c.status {
			t.Errorf("%s: %d %s", c.body, st, body)
		}
	}
	if st, _ := ti.Admin(t, "POST", "/gatehouse/users/nobody/otp", `{"type":"APP"}`); st != 404 {
		t.Errorf("unknown user: %d", st)
	}
	var status map[string]any
	ti.AdminJSON(t, "GET", "/gatehouse/users/hank/otp", nil, &status)
	if fmt.Sprint(status["credential_type"]) != "[]" {
		t.Fatalf("bad input changed something: %v", status)
	}
	// An imported APP secret works with oathtool.
	ti.MustAdmin(t, 201, "POST", "/gatehouse/users/hank/otp", `{"type":"APP","secret":"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"}`)
	out := ti.esa(ti.auth, "/auth/v1/authenticate", `{"username":"hank","otp":"`+totpNow(t, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")+`"}`)
	if out["authenticated"] != true {
		t.Fatalf("imported APP secret: %v", out)
	}
	for range 5 {
		ti.esa(ti.auth, "/auth/v1/authenticate", `{"username":"hank","otp":"000000"}`)
	}
	ti.AdminJSON(t, "GET", "/gatehouse/users/hank/otp", nil, &status)
	if status["is_locked"] != true || status["consecutive_failures"] != float64(5) {
		t.Fatalf("status: %v", status)
	}
	ti.MustAdmin(t, 204, "POST", "/gatehouse/users/hank/unlock", nil)
	ti.MustAdmin(t, 204, "DELETE", "/gatehouse/users/hank/otp/APP", nil)
	ti.MustAdmin(t, 404, "DELETE", "/gatehouse/users/hank/otp/APP", nil)
	ti.AdminJSON(t, "GET", "/gatehouse/users/hank/otp", nil, &status)
	if status["is_locked"] != false || fmt.Sprint(status["credential_type"]) != "[]" {
		t.Fatalf("status: %v", status)
	}
	// Secrets are sealed at rest: the data directory never holds one in clear.
	ti.Stop()
	if leaked := grepDir(t, ti.DataDir(), "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"); leaked != "" {
		t.Fatalf("TOTP secret in clear in %s", leaked)
	}
}

// waitTLS waits until the site on port has its certificate (tls internal
// issues it in the background after start-up).
func waitTLS(t *testing.T, port int) {
	t.Helper()
	addr := fmt.Sprintf("localhost:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}) // readiness probe only
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TLS on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// grepDir returns the first file under dir containing s.
func grepDir(t *testing.T, dir, s string) string {
	t.Helper()
	found := ""
	_ = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error { // unreadable entries are skipped
		if err != nil || info.IsDir() || found != "" {
			return nil
		}
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), s) {
			found = path
		}
		return nil
	})
	return found
}

// TestWideHOTPWindowWarns: a hotp_window above 100 starts, with a warning
// that it makes guessed codes likelier to pass; the default does not warn.
func TestWideHOTPWindowWarns(t *testing.T) {
	parallel(t)
	const warning = "hotp_window accepts each hardware-token code"
	if ti := startTwoFactor(t, harness.Options{}); ti.LogContains(warning) {
		t.Fatal("the default hotp_window warned")
	}
	if ti := startTwoFactor(t, harness.Options{Extra: map[string]any{"hotp": 500}}); !ti.LogContains(warning) {
		t.Fatalf("hotp_window 500 did not warn:\n%s", ti.Log())
	}
}

// TestESADefaultDomainNamesOneAccount: with default_domain, the ESA API
// takes CORP\bob and bob@corp.example.com as bob, so the admin API cannot
// create accounts under those names (they would be accounts of their own
// to the admin API, the portal and HTTP Basic, and bob's to the ESA API:
// the holder of bob's factor would pass the second factor for them). The
// qualified names verify bob's code; another domain's name is its own.
func TestESADefaultDomainNamesOneAccount(t *testing.T) {
	parallel(t)
	site := strings.Replace(twoFactorSite, "lockout_threshold 5", "lockout_threshold 5\n\t\tdefault_domain CORP corp.example.com", 1)
	ti := startTwoFactorSite(t, site, harness.Options{})
	ti.user("bob", "")
	secret := ti.enrolApp("bob")
	for _, name := range []string{`CORP\bob`, "bob@corp.example.com", "BOB@Corp.Example.Com"} {
		ti.MustAdmin(t, 400, "POST", "/gatehouse/users", map[string]any{"username": name, "roles": []string{"staff"}, "password": tfPassword})
		ti.MustAdmin(t, 404, "GET", "/gatehouse/users/"+url.PathEscape(strings.ToLower(name)), nil)
	}
	ti.user("bob@other.example", "")
	ti.enrolApp("bob@other.example")
	out := ti.esa(ti.auth, "/auth/v1/authenticate", fmt.Sprintf(`{"username":%q,"otp":%q}`, `CORP\bob`, totpNow(t, secret)))
	if out["authenticated"] != true {
		t.Fatalf(`CORP\bob with bob's code: %v`, out)
	}
	out = ti.esa(ti.auth, "/auth/v1/authenticate", fmt.Sprintf(`{"username":%q,"otp":%q}`, "bob@other.example", totpNext(t, secret)))
	if out["authenticated"] != false {
		t.Fatalf("bob@other.example with bob's code: %v", out)
	}
}
