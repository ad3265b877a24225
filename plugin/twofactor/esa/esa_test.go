package esa

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor/sms/smstest"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/counters"
)

type env struct {
	t          *testing.T
	e          *engine.Engine
	h          *Handler
	flaky      *enginetest.FlakyStore // reads by Get and GetEntry fail while down
	sent       *smstest.Recorder
	both, auth *NewCredentialView
}

func newEnv(t *testing.T) *env {
	v := &env{t: t, sent: &smstest.Recorder{}}
	v.e = enginetest.New(t, engine.Config{}, func(s storage.Store) storage.Store {
		v.flaky = &enginetest.FlakyStore{Store: s, Fails: enginetest.CallGet | enginetest.CallGetEntry}
		return v.flaky
	})
	svc := twofactor.New(v.e, twofactor.Options{Sender: v.sent})
	var err error
	if v.h, err = New(svc, Options{PortalURL: "https://login.example.com:8443/"}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if v.both, err = v.h.creds.Create(ctx, CreateRequest{Name: "both", AuthAPI: true, UserManagementAPI: true}); err != nil {
		t.Fatal(err)
	}
	if v.auth, err = v.h.creds.Create(ctx, CreateRequest{Name: "authonly", AuthAPI: true}); err != nil {
		t.Fatal(err)
	}
	return v
}

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func (v *env) do(method, path, body string, auth ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	for _, a := range auth {
		r.Header.Add("Authorization", a)
	}
	w := httptest.NewRecorder()
	v.h.ServeHTTP(w, r)
	return w
}

// call makes an authorised call and decodes the JSON answer.
func (v *env) call(method, path, body string) map[string]any {
	v.t.Helper()
	w := v.do(method, path, body, basicAuth(v.both.Username, v.both.Password))
	if w.Code != 200 {
		v.t.Fatalf("%s %s: HTTP %d %q", method, path, w.Code, w.Body.String())
	}
	var out map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		v.t.Fatalf("%s %s: %v in %q", method, path, err, w.Body.String())
	}
	return out
}

func (v *env) user(name, mobile string) *account.User {
	u, err := v.e.Accounts.CreateUser(context.Background(), account.NewUser{Username: name, MobileNumber: mobile})
	if err != nil {
		v.t.Fatal(err)
	}
	return u
}

func TestHTTPLevelErrorsHaveEmptyBodies(t *testing.T) {
	v := newEnv(t)
	body := `{"username":"x"}`
	for _, c := range []struct {
		name   string
		path   string
		auth   []string
		status int
	}{
		{"no credentials", "/auth/v1/start2fa", nil, 401},
		{"not basic", "/auth/v1/start2fa", []string{"Bearer abc"}, 400},
		{"bad base64", "/auth/v1/start2fa", []string{"Basic !!!"}, 400},
		{"no colon", "/auth/v1/start2fa", []string{"Basic " + base64.StdEncoding.EncodeToString([]byte("abc"))}, 400},
		{"two headers", "/auth/v1/start2fa", []string{basicAuth(v.both.Username, v.both.Password), basicAuth("a", "b")}, 400},
		{"unknown user", "/auth/v1/start2fa", []string{basicAuth("esa-nobody", v.both.Password)}, 403},
		{"wrong password", "/auth/v1/start2fa", []string{basicAuth(v.both.Username, v.both.Password+"x")}, 403},
		{"swapped password", "/auth/v1/start2fa", []string{basicAuth(v.both.Username, v.auth.Password)}, 403},
		{"not enabled", "/manage/users/v1/unlock", []string{basicAuth(v.auth.Username, v.auth.Password)}, 403},
		{"unknown path", "/auth/v1/nothing", []string{basicAuth(v.both.Username, v.both.Password)}, 404},
	} {
		w := v.do("POST", c.path, body, c.auth...)
		if w.Code != c.status || w.Body.Len() != 0 {
			t.Errorf("%s: HTTP %d body %q, want %d and an empty body", c.name, w.Code, w.Body.String(), c.status)
		}
		if c.status == 401 && w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate", c.name)
		}
	}
	if w := v.do("GET", "/auth/v1/start2fa", "", basicAuth(v.both.Username, v.both.Password)); w.Code != 405 || w.Body.Len() != 0 {
		t.Errorf("GET start2fa: %d %q", w.Code, w.Body.String())
	}
	// The auth-only credential works on the Auth API.
	if w := v.do("POST", "/auth/v1/start2fa", body, basicAuth(v.auth.Username, v.auth.Password)); w.Code != 200 {
		t.Errorf("auth-only credential on the Auth API: %d", w.Code)
	}
	// A fatal store error is a 500 with an empty body.
	v.user("cold", "")
	v.flaky.Down.Store(true)
	w := v.do("GET", "/manage/users/v1/profile/cold", "", basicAuth(v.both.Username, v.both.Password))
	v.flaky.Down.Store(false)
	if w.Code != 500 || w.Body.Len() != 0 {
		t.Errorf("store down: HTTP %d %q", w.Code, w.Body.String())
	}
}

func TestAPIErrors(t *testing.T) {
	v := newEnv(t)
	for _, body := range []string{"", "not json", "[1]", `{"username":true}`, `{"username":5.5}`, `{"username":-5}`, `{"username":"a"} {}`, `{"username":""}`,
		`{"username":"a","username":"b"}`, `{"username":null}`, `{"username":"a"`} {
		out := v.call("POST", "/auth/v1/start2fa", body)
		if msg, _ := out["error_message"].(string); out["error"] != ErrorFault || msg == "" {
			t.Errorf("body %q: %v", body, out)
		}
	}
	out := v.call("POST", "/auth/v1/authenticate", `{"username":"ghost","otp":`)
	if out["error"] != ErrorFault || out["authenticated"] != false {
		t.Errorf("malformed authenticate keeps its shape: %v", out)
	}
	out = v.call("POST", "/auth/v1/authenticate", `{"username":"ghost","otp":"123456"}`)
	if out["error"] != ErrorUserNotFound || out["authenticated"] != false {
		t.Errorf("unknown user: %v", out)
	}
	out = v.call("GET", "/manage/users/v1/profile/ghost", "")
	if out["error"] != ErrorUserNotFound {
		t.Errorf("unknown user profile: %v", out)
	}
	v.user("nophone", "")
	out = v.call("POST", "/manage/users/v1/provisiontextmessage", `{"username":"nophone"}`)
	if out["error"] != ErrorFault || !strings.Contains(out["error_message"].(string), "mobile number") {
		t.Errorf("provisiontextmessage without a number: %v", out)
	}
}

func TestAppFlow(t *testing.T) {
	v := newEnv(t)
	v.user("alice", "+421900111222")
	out := v.call("POST", "/auth/v1/start2fa", `{"username":"alice","extra":true}`)
	if fmt.Sprint(out["expected_otp"]) != "[]" || out["error"] != ErrorNone || out["error_message"] != "" {
		t.Fatalf("start2fa without 2FA: %v", out)
	}
	out = v.call("POST", "/manage/users/v1/provisionmobileapp", `{"username":"Alice"}`)
	link, _ := out["installation_url"].(string)
	if out["error"] != ErrorNone || !regexp.MustCompile(`^https://login\.example\.com:8443/gatehouse/enrol\?t=[A-Za-z0-9_-]{43}$`).MatchString(link) {
		t.Fatalf("provisionmobileapp: %v", out)
	}
	if m := v.sent.Last(); m.To != "+421900111222" || !strings.Contains(m.Message, link) {
		t.Fatalf("installation URL SMS: %+v", m)
	}
	en, err := v.h.svc.RedeemEnrolmentLink(context.Background(), link[strings.Index(link, "t=")+2:])
	if err != nil {
		t.Fatal(err)
	}
	out = v.call("POST", "/auth/v1/start2fa", `{"username":"alice"}`)
	if fmt.Sprint(out["expected_otp"]) != "[APP]" {
		t.Fatalf("start2fa: %v", out)
	}
	c, _ := totp.GenerateCode(en.Secret, time.Now())
	out = v.call("POST", "/auth/v1/authenticate", `{"username":"alice","otp":"`+c+`"}`)
	if out["authenticated"] != true || out["error"] != ErrorNone {
		t.Fatalf("authenticate: %v", out)
	}
	out = v.call("POST", "/auth/v1/authenticate", `{"username":"alice","otp":"`+c+`"}`)
	if out["authenticated"] != false || out["error"] != ErrorNone || out["error_message"] != twofactor.ReasonRepeated {
		t.Fatalf("replayed: %v", out)
	}
	// The replay is a failure, but no guess: not counted toward the
	// lockout (a client retrying a request that timed out).
	out = v.call("GET", "/manage/users/v1/profile/al%69ce", "")
	want := map[string]any{"username": "alice", "mobile_number": "+421900111222", "is_locked": false,
		"consecutive_failures": float64(0), "error": ErrorNone, "error_message": ""}
	for k, w := range want {
		if out[k] != w {
			t.Errorf("profile %s = %v, want %v", k, out[k], w)
		}
	}
	date := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$`)
	for _, k := range []string{"last_success", "last_failure"} {
		if s, _ := out[k].(string); !date.MatchString(s) {
			t.Errorf("profile %s = %v", k, out[k])
		}
	}
	if fmt.Sprint(out["credential_type"]) != "[APP]" {
		t.Errorf("credential_type %v", out["credential_type"])
	}
}

func TestSMSLockUnlockDeprovision(t *testing.T) {
	v := newEnv(t)
	v.user("bob", "+12025550100")
	if out := v.call("POST", "/manage/users/v1/provisiontextmessage", `{"username":"bob"}`); out["error"] != ErrorNone {
		t.Fatal(out)
	}
	out := v.call("POST", "/auth/v1/start2fa", `{"username":"bob"}`)
	if fmt.Sprint(out["expected_otp"]) != "[SMS]" {
		t.Fatalf("start2fa: %v", out)
	}
	code := v.sent.LastCode(t)
	for range 5 {
		v.call("POST", "/auth/v1/authenticate", `{"username":"bob","otp":"000000"}`)
	}
	out = v.call("POST", "/auth/v1/authenticate", `{"username":"bob","otp":"`+code+`"}`)
	if out["authenticated"] != false || out["error_message"] != twofactor.ReasonLocked {
		t.Fatalf("locked user with the right code: %v", out)
	}
	if out = v.call("GET", "/manage/users/v1/profile/bob", ""); out["is_locked"] != true || out["consecutive_failures"] != float64(6) {
		t.Fatalf("profile: %v", out)
	}
	// bob's Basic passwords are throttled too; ESA's unlock lifts the
	// second-factor lockout only: a third party's credential must not
	// lift the bounds on password guessing (an administrator's unlock
	// does).
	ctx := context.Background()
	throttle := counters.BasicFailures("bob")
	if _, err := v.e.Store.Incr(ctx, throttle, 11, time.Minute); err != nil {
		t.Fatal(err)
	}
	if out = v.call("POST", "/manage/users/v1/unlock", `{"username":"bob"}`); out["error"] != ErrorNone {
		t.Fatal(out)
	}
	out = v.call("POST", "/auth/v1/authenticate", `{"username":"bob","otp":"`+code+`"}`)
	if out["authenticated"] != true {
		t.Fatalf("after unlock: %v", out)
	}
	if n, err := v.e.Store.Incr(ctx, throttle, 0, time.Minute); err != nil || n != 11 {
		t.Fatalf("bob's Basic throttle after an ESA unlock: %d, %v; want 11, kept", n, err)
	}
	if out = v.call("POST", "/manage/users/v1/deprovision", `{"username":"bob"}`); out["error"] != ErrorNone {
		t.Fatal(out)
	}
	if out = v.call("POST", "/auth/v1/start2fa", `{"username":"bob"}`); fmt.Sprint(out["expected_otp"]) != "[]" {
		t.Fatalf("after deprovision: %v", out)
	}
	if out = v.call("GET", "/manage/users/v1/profile/bob", ""); out["mobile_number"] != "+12025550100" || out["is_locked"] != false {
		t.Fatalf("profile: %v", out)
	}
}

func TestProvisionMobileAppNeedsPortal(t *testing.T) {
	v := newEnv(t)
	v.h.portalURL = ""
	v.user("carol", "")
	out := v.call("POST", "/manage/users/v1/provisionmobileapp", `{"username":"carol"}`)
	if out["error"] != ErrorFault || out["installation_url"] != "" {
		t.Fatalf("%v", out)
	}
	for _, bad := range []string{"ftp://x", "https://x/path", "https://x?q", "login.example.com"} {
		if _, err := New(v.h.svc, Options{PortalURL: bad}); err == nil {
			t.Errorf("portal URL %q accepted", bad)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{`{"username":"a","otp":"123456"}`, `{}`, `[]`, `{"username":1}`, `{"username":"a","otp":123456}`, `{"otp":1.5e3}`, "", `{"username":"\u0000"}`, `{"a":{"b":[1,2,{}]}}`, `{"USERNAME":"x"}`, `{"username":"a","Username":"b"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := ParseRequest(body)
		if err != nil {
			return
		}
		var obj map[string]any
		if json.Unmarshal(body, &obj) != nil {
			t.Fatalf("accepted %q, which is not one JSON object", body)
		}
		// Member names match in any case; a name twice (in any case) is refused.
		// A whole number is its digits.
		member := func(name string) string {
			for k, v := range obj {
				if !strings.EqualFold(k, name) {
					continue
				}
				if n, isNumber := v.(float64); isNumber {
					digits := req.Username
					if name == "otp" {
						digits = req.OTP
					}
					if f, err := strconv.ParseFloat(digits, 64); err != nil || f != n || strings.Trim(digits, "0123456789") != "" {
						t.Fatalf("%s %v decoded as %q", name, n, digits)
					}
					return digits
				}
				s, _ := v.(string)
				return s
			}
			return ""
		}
		if u := member("username"); u != req.Username {
			t.Fatalf("username %q decoded as %q", u, req.Username)
		}
		if o := member("otp"); o != req.OTP {
			t.Fatalf("otp %q decoded as %q", o, req.OTP)
		}
	})
}

// TestParseRequestStrictKeys: a body another JSON parser could read as a
// different request is refused; members this API does not read are not.
func TestParseRequestStrictKeys(t *testing.T) {
	for body, want := range map[string]string{
		`{"username":"bob","USERNAME":"carol"}`:     `field "USERNAME" appears more than once`,
		`{"username":"bob","username":"carol"}`:     `field "username" appears more than once`,
		`{"username":"bob","client":{"v":1,"v":2}}`: `field "client.v" appears more than once`,
		`{"username":true}`:                         `field "username" must be a string`,
		`{"otp":1e6}`:                               `field "otp" must be a string`,
		`null`:                                      "must be a JSON object",
		`{"username":"bob"} {}`:                     "more than one JSON value",
		`{"username":"bob"`:                         "not valid JSON",
	} {
		if _, err := ParseRequest([]byte(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error containing %q", body, err, want)
		}
	}
	req, err := ParseRequest([]byte(` {"username":"bob","otp":"123456","client":{"version":[1,2]}}`))
	if err != nil || req.Username != "bob" || req.OTP != "123456" {
		t.Fatalf("exact body: %+v, %v", req, err)
	}
}

// TestWireFidelity: as the ESA API v1 answers, strings are never null
// (error_message, mobile_number, installation_url are ""), an unknown
// user's profile echoes the name asked for, request member names match in
// any case, and a name qualified with the configured default domain
// (DOMAIN\\user, user@domain) is that domain's account, reported without
// escaping.
func TestWireFidelity(t *testing.T) {
	v := newEnv(t)
	v.e.Config.DefaultDomain = []string{"CORP", "corp.example.com"}
	v.user("bob", "")
	raw := v.do("GET", "/manage/users/v1/profile/bob", "", basicAuth(v.both.Username, v.both.Password)).Body.String()
	if !strings.Contains(raw, `"mobile_number":""`) || !strings.Contains(raw, `"error_message":""`) || strings.Contains(raw, `"username":null`) {
		t.Errorf("profile of a user without a number: %s", raw)
	}
	raw = v.do("GET", "/manage/users/v1/profile/ghost", "", basicAuth(v.both.Username, v.both.Password)).Body.String()
	if !strings.Contains(raw, `"username":"ghost"`) || !strings.Contains(raw, `"mobile_number":""`) || strings.Contains(raw, `"username":null`) {
		t.Errorf("profile of an unknown user: %s", raw)
	}
	out := v.call("POST", "/manage/users/v1/provisionmobileapp", `{"username":"ghost"}`)
	if out["error"] != ErrorUserNotFound || out["installation_url"] != "" {
		t.Errorf("provisionmobileapp for an unknown user: %v", out)
	}
	for _, body := range []string{`{"USERNAME":"bob"}`, `{"UserName":"CORP\\bob"}`, `{"username":"bob@Corp.Example.com"}`, `{"username":"corp\\Bob"}`} {
		if out := v.call("POST", "/auth/v1/start2fa", body); out["error"] != ErrorNone {
			t.Errorf("%s: %v", body, out)
		}
	}
	raw = v.do("GET", "/manage/users/v1/profile/CORP%5Cbob", "", basicAuth(v.both.Username, v.both.Password)).Body.String()
	if !strings.Contains(raw, `"username":"bob"`) || !strings.Contains(raw, `"error":"ERROR_NONE"`) {
		t.Errorf("profile of CORP\\bob: %s", raw)
	}
	out = v.call("POST", "/auth/v1/start2fa", `{"username":"OTHER\\bob"}`)
	if out["error"] != ErrorUserNotFound || out["error_message"] != `user OTHER\bob not found` {
		t.Errorf("a foreign domain's user: %v", out)
	}
	// A body after a UTF-8 byte order mark (.NET's StreamWriter with
	// Encoding.UTF8 writes one), and the profile POSTed as JSON, as ESET
	// documents every call: served like the others (an outside review
	// found the first refused, the second 404).
	if out := v.call("POST", "/auth/v1/start2fa", "\xef\xbb\xbf"+`{"username":"bob"}`); out["error"] != ErrorNone {
		t.Errorf("a body after a byte order mark: %v", out)
	}
	if out := v.call("POST", "/manage/users/v1/profile", `{"username":"CORP\\bob"}`); out["error"] != ErrorNone || out["username"] != "bob" || out["is_locked"] != false {
		t.Errorf("the profile POSTed: %v", out)
	}
	if out := v.call("POST", "/manage/users/v1/profile", `{"username":"ghost"}`); out["error"] != ErrorUserNotFound || out["username"] != "ghost" {
		t.Errorf("the profile of an unknown user POSTed: %v", out)
	}
	// A name that names the domain twice is no account (the portal and
	// Basic refuse it too).
	for _, body := range []string{`{"username":"CORP\\CORP\\bob"}`, `{"username":"CORP\\bob@corp.example.com"}`} {
		if out := v.call("POST", "/auth/v1/start2fa", body); out["error"] != ErrorUserNotFound {
			t.Errorf("%s: %v; want ERROR_USER_NOT_FOUND", body, out)
		}
	}
}

// TestDotNetClientForms: requests the .NET ESA service answers, as its
// routing and JSON binding read them, are answered alike: a path in
// another case or with a trailing slash (an outside client's
// "/AUTH/v1/Start2FA/" went to the next handler, an empty 200 where
// nothing followed), and a code or a name sent as a whole number (an int
// code, 123456, was refused with ERROR_FAULT).
func TestDotNetClientForms(t *testing.T) {
	v := newEnv(t)
	v.user("alice", "+421900111222")
	v.user("1234", "")
	for _, path := range []string{"/AUTH/v1/Start2FA", "/auth/V1/start2fa/", "/Auth/v1/START2FA/"} {
		if !Handles(path) {
			t.Errorf("%s is not the ESA API's", path)
		}
		if out := v.call("POST", path, `{"username":"alice"}`); out["error"] != ErrorNone || fmt.Sprint(out["expected_otp"]) != "[]" {
			t.Errorf("%s: %v", path, out)
		}
	}
	if out := v.call("POST", "/auth/v1/start2fa", `{"username":1234}`); out["error"] != ErrorNone {
		t.Errorf("a name sent as a number: %v", out)
	}
	for _, path := range []string{"/Manage/Users/V1/Profile/alice", "/manage/users/v1/PROFILE/al%69ce/"} {
		if out := v.call("GET", path, ""); out["error"] != ErrorNone || out["username"] != "alice" {
			t.Errorf("%s: %v", path, out)
		}
	}
	if out := v.call("GET", "/manage/users/v1/profile/Alice", ""); out["username"] != "alice" {
		t.Errorf("the username keeps its case to the look-up: %v", out)
	}
	if out := v.call("POST", "/manage/users/v1/Profile/", `{"username":"alice"}`); out["error"] != ErrorNone || out["username"] != "alice" {
		t.Errorf("the profile POSTed with a trailing slash: %v", out)
	}
	for _, path := range []string{"/auth/v1/start2fa//", "/manage/u\u017fers/v1/unlock", "/manage/users/v1/unloc\u212a", "/auth/v2/start2fa"} {
		if Handles(path) && v.do("POST", path, `{"username":"alice"}`, basicAuth(v.both.Username, v.both.Password)).Code != http.StatusNotFound {
			t.Errorf("%s is answered", path)
		}
	}

	out := v.call("POST", "/manage/users/v1/provisionmobileapp", `{"username":"alice"}`)
	link, _ := out["installation_url"].(string)
	en, err := v.h.svc.RedeemEnrolmentLink(context.Background(), link[strings.Index(link, "t=")+2:])
	if err != nil {
		t.Fatal(err)
	}
	// A code without a leading zero, which a number cannot carry (one of
	// three steps the check accepts).
	var code string
	for _, at := range []time.Duration{0, -30 * time.Second, 30 * time.Second} {
		if c, _ := totp.GenerateCode(en.Secret, time.Now().Add(at)); c[0] != '0' {
			code = c
			break
		}
	}
	out = v.call("POST", "/auth/v1/AUTHENTICATE/", `{"username":"alice","otp":`+code+`}`)
	if out["authenticated"] != true || out["error"] != ErrorNone {
		t.Fatalf("a code sent as a number (%s): %v", code, out)
	}
}

// TestRefusedAPICredentialsAreRequestRefusals: the ESA API's refusal of
// unknown, missing or malformed API credentials, which anyone can cause,
// is audited as a refused request (kind "request"), so that a flood of
// them is summarised past audit_refusals_per_minute like the data plane's;
// and a look-up of a user that does not exist is audited too, or an API
// client could look for names without a trace.
func TestRefusedAPICredentialsAreRequestRefusals(t *testing.T) {
	v := newEnv(t)
	for auth, status := range map[string]int{basicAuth("esa-nobody", "guess"): 403, "": 401, "Basic !!!": 400} {
		var w *httptest.ResponseRecorder
		if auth == "" {
			w = v.do("POST", "/auth/v1/start2fa", `{"username":"x"}`)
		} else {
			w = v.do("POST", "/auth/v1/start2fa", `{"username":"x"}`, auth)
		}
		if w.Code != status {
			t.Fatalf("API credentials %q: %d; want %d", auth, w.Code, status)
		}
	}
	events, err := v.e.Audit.Query(context.Background(), audit.Filter{Kind: "request"})
	if err != nil || len(events) != 3 {
		t.Fatalf("request events %+v, %v; want the 3 refusals of the API credentials", events, err)
	}
	for _, ev := range events {
		if ev.Credential != "esa_api" || ev.Outcome != audit.OutcomeDenied {
			t.Errorf("refusal %+v", ev)
		}
	}
	if out := v.call("GET", "/manage/users/v1/profile/ghost", ""); out["error"] != ErrorUserNotFound {
		t.Fatalf("unknown user profile: %v", out)
	}
	events, err = v.e.Audit.Query(context.Background(), audit.Filter{Kind: "2fa"})
	if err != nil || len(events) != 1 || events[0].Reason != "no such user: ghost" || events[0].Credential != "esa_api:both" {
		t.Fatalf("2fa events %+v, %v; want the look-up of ghost", events, err)
	}
}

// TestUncheckedCodesAreSummarisedPastTheAllowance: codes of a user whose
// codes are not checked (here: no second factor enrolled), which no
// lockout counts, are summarised past audit_refusals_per_minute; a
// checked wrong code stays an event of its own.
func TestUncheckedCodesAreSummarisedPastTheAllowance(t *testing.T) {
	v := newEnv(t)
	v.e.Audit.Reconfigure(zap.NewNop(), audit.Settings{RefusalsPerMinute: 1})
	v.user("dave", "")
	for range 10 {
		v.call("POST", "/auth/v1/authenticate", `{"username":"dave","otp":"123456"}`)
	}
	events, err := v.e.Audit.Query(context.Background(), audit.Filter{Username: "dave"})
	if err != nil {
		t.Fatal(err)
	}
	own, summarised := 0, 0
	for _, ev := range events {
		if ev.Count == 0 {
			own++
		}
		summarised += ev.Count
	}
	if own != 1 || summarised != 9 {
		t.Fatalf("events %+v; want the first on its own and 9 in a summary", events)
	}
}

// TestEarlyDataIsTooEarly: a call read from TLS early data (0-RTT) can be
// replayed by anyone who saw it, each start2fa another SMS sent; it is
// answered 425 with an empty body before anything is done, and the same
// call on the completed handshake goes through.
func TestEarlyDataIsTooEarly(t *testing.T) {
	v := newEnv(t)
	v.user("bob", "+12025550100")
	v.call("POST", "/manage/users/v1/provisiontextmessage", `{"username":"bob"}`)
	start := func(handshakeDone bool) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/auth/v1/start2fa", strings.NewReader(`{"username":"bob"}`))
		r.Header.Set("Authorization", basicAuth(v.both.Username, v.both.Password))
		r.TLS = &tls.ConnectionState{HandshakeComplete: handshakeDone, DidResume: true}
		w := httptest.NewRecorder()
		v.h.ServeHTTP(w, r)
		return w
	}
	if w := start(false); w.Code != http.StatusTooEarly || w.Body.Len() != 0 || v.sent.Len() != 0 {
		t.Fatalf("start2fa in early data: HTTP %d %q, %d SMS sent", w.Code, w.Body.String(), v.sent.Len())
	}
	if w := start(true); w.Code != 200 || v.sent.Len() != 1 {
		t.Fatalf("start2fa after the handshake: HTTP %d %q, %d SMS sent", w.Code, w.Body.String(), v.sent.Len())
	}
}

// TestBlockedAccountIsNeverWithoutSecondFactor: start2fa for an account
// that may not sign in (blocked, or a directory record its entry no
// longer names) is a fault, never "no second factor" ([]), which an ESA
// client takes for "let in on the password alone"; and no SMS is sent.
func TestBlockedAccountIsNeverWithoutSecondFactor(t *testing.T) {
	v := newEnv(t)
	v.user("carol", "+12025550101")
	v.user("dave", "")
	v.call("POST", "/manage/users/v1/provisiontextmessage", `{"username":"carol"}`)
	blocked := account.StatusBlocked
	for _, name := range []string{"carol", "dave"} {
		if _, err := v.e.Accounts.UpdateUser(context.Background(), name, account.UserPatch{Status: &blocked}); err != nil {
			t.Fatal(err)
		}
		out := v.call("POST", "/auth/v1/start2fa", `{"username":"`+name+`"}`)
		if out["error"] != ErrorFault || out["error_message"] != twofactor.ReasonBlocked || fmt.Sprint(out["expected_otp"]) != "[]" {
			t.Fatalf("start2fa of blocked %s: %v; want ERROR_FAULT", name, out)
		}
		// Nor does its profile say "no second factor", nor may a factor be
		// enrolled.
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/manage/users/v1/profile/" + name, ""},
			{"POST", "/manage/users/v1/provisionmobileapp", `{"username":"` + name + `"}`},
			{"POST", "/manage/users/v1/provisiontextmessage", `{"username":"` + name + `"}`},
		} {
			if out := v.call(c.method, c.path, c.body); out["error"] != ErrorFault || out["error_message"] != twofactor.ReasonBlocked {
				t.Fatalf("%s %s of blocked %s: %v; want ERROR_FAULT", c.method, c.path, name, out)
			}
		}
	}
	if types, err := v.h.svc.Types(context.Background(), mustUser(t, v, "carol")); err != nil || fmt.Sprint(types) != "[SMS]" {
		t.Fatalf("carol's factors after the refused calls: %v %v; want SMS kept", types, err)
	}
	// Unlocking and removing factors stay open: block, then deprovision.
	if out := v.call("POST", "/manage/users/v1/deprovision", `{"username":"carol"}`); out["error"] != ErrorNone {
		t.Fatalf("deprovision of blocked carol: %v", out)
	}
	if n := v.sent.Len(); n != 0 {
		t.Fatalf("%d SMS sent to a blocked account", n)
	}
}

// mustUser is the account name of v's engine.
func mustUser(t *testing.T, v *env, name string) *account.User {
	t.Helper()
	u, err := v.e.Accounts.User(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestStart2FAWhenNoSMSCanBeSent: a user with another factor beside SMS
// gets ERROR_NONE when the SMS code cannot be sent (the gateway failed,
// or the hourly bound is spent), with why in error_message: an ESA client
// that asks for a code only on ERROR_NONE would refuse the app's code (an
// outside review found ERROR_FAULT); a user with SMS alone still gets
// ERROR_FAULT.
func TestStart2FAWhenNoSMSCanBeSent(t *testing.T) {
	v := newEnv(t)
	ctx := context.Background()
	both, only := v.user("carol", "+12025550101"), v.user("dave", "+12025550102")
	for _, u := range []*account.User{both, only} {
		if err := v.h.svc.EnrolSMS(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.h.svc.EnrolApp(ctx, both, nil); err != nil {
		t.Fatal(err)
	}
	v.sent.Fail(errors.New("gateway down"))
	out := v.call("POST", "/auth/v1/start2fa", `{"username":"carol"}`)
	if out["error"] != ErrorNone || fmt.Sprint(out["expected_otp"]) != "[APP SMS]" || !strings.Contains(fmt.Sprint(out["error_message"]), "no SMS code was sent") {
		t.Errorf("carol (APP and SMS), the gateway down: %v; want ERROR_NONE, why in the message", out)
	}
	if out := v.call("POST", "/auth/v1/start2fa", `{"username":"dave"}`); out["error"] != ErrorFault {
		t.Errorf("dave (SMS alone), the gateway down: %v; want ERROR_FAULT", out)
	}
}

// TestCredentialsAreHeldToTheirAPI: an Auth API credential is refused (403,
// empty body) on every User Management endpoint, profile reads included,
// and changes nothing there; a User Management credential is refused on
// the Auth API.
func TestCredentialsAreHeldToTheirAPI(t *testing.T) {
	v := newEnv(t)
	manage, err := v.h.creds.Create(context.Background(), CreateRequest{Name: "manageonly", UserManagementAPI: true})
	if err != nil {
		t.Fatal(err)
	}
	v.user("bob", "+12025550100")
	authOnly := basicAuth(v.auth.Username, v.auth.Password)
	for _, c := range []struct{ method, path string }{
		{"GET", "/manage/users/v1/profile/bob"},
		{"POST", "/manage/users/v1/profile"},
		{"POST", "/manage/users/v1/unlock"},
		{"POST", "/manage/users/v1/deprovision"},
		{"POST", "/manage/users/v1/provisionmobileapp"},
		{"POST", "/manage/users/v1/provisiontextmessage"},
	} {
		body := ""
		if c.method == "POST" {
			body = `{"username":"bob"}`
		}
		if w := v.do(c.method, c.path, body, authOnly); w.Code != http.StatusForbidden || w.Body.Len() != 0 {
			t.Errorf("auth-only credential, %s %s: HTTP %d %q; want 403 with an empty body", c.method, c.path, w.Code, w.Body.String())
		}
	}
	if out := v.call("POST", "/auth/v1/start2fa", `{"username":"bob"}`); fmt.Sprint(out["expected_otp"]) != "[]" {
		t.Errorf("after the auth-only credential's refused enrolments, bob's factors: %v; want none", out)
	}
	manageOnly := basicAuth(manage.Username, manage.Password)
	for _, path := range []string{"/auth/v1/start2fa", "/auth/v1/authenticate"} {
		if w := v.do("POST", path, `{"username":"bob","otp":"123456"}`, manageOnly); w.Code != http.StatusForbidden || w.Body.Len() != 0 {
			t.Errorf("manage-only credential, POST %s: HTTP %d %q; want 403 with an empty body", path, w.Code, w.Body.String())
		}
	}
}

// TestLockedUserIsSentNoSMS: once the consecutive failures reach the
// lockout threshold (5 by default), start2fa sends the locked user no SMS
// code (it could not be used) and says so; the profile shows the lock.
func TestLockedUserIsSentNoSMS(t *testing.T) {
	v := newEnv(t)
	v.user("bob", "+12025550100")
	if out := v.call("POST", "/manage/users/v1/provisiontextmessage", `{"username":"bob"}`); out["error"] != ErrorNone {
		t.Fatal(out)
	}
	for range 5 {
		v.call("POST", "/auth/v1/authenticate", `{"username":"bob","otp":"000000"}`)
	}
	if out := v.call("GET", "/manage/users/v1/profile/bob", ""); out["is_locked"] != true || out["consecutive_failures"] != float64(5) {
		t.Fatalf("after 5 wrong codes: %v; want locked with 5 failures", out)
	}
	sent := v.sent.Len()
	out := v.call("POST", "/auth/v1/start2fa", `{"username":"bob"}`)
	if v.sent.Len() != sent {
		t.Errorf("start2fa for a locked user sent %d SMS: %v", v.sent.Len()-sent, v.sent.Messages()[sent:])
	}
	if out["error"] != ErrorNone || fmt.Sprint(out["expected_otp"]) != "[SMS]" || !strings.Contains(fmt.Sprint(out["error_message"]), "no SMS code was sent") {
		t.Errorf("start2fa for a locked user: %v; want ERROR_NONE, [SMS] and no SMS code sent", out)
	}
}
