package twofactor

import (
	"context"
	"encoding/base32"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor/sms/smstest"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/counters"
	"github.com/gatehouse-auth/gatehouse/storage/tagged"
)

// rfcSecret is the shared secret of the RFC 4226 and RFC 6238 (SHA-1) test vectors.
var rfcSecret = b32.EncodeToString([]byte("12345678901234567890"))

func TestRFC4226Vectors(t *testing.T) {
	// RFC 4226 Appendix D.
	want := []string{"755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"}
	for counter, w := range want {
		if got := code(rfcSecret, uint64(counter)); got != w {
			t.Errorf("HOTP counter %d: got %s, want %s", counter, got, w)
		}
	}
}

func TestRFC6238Vectors(t *testing.T) {
	// RFC 6238 Appendix B, SHA-1; the 6-digit code is the last 6 digits of
	// the 8-digit one (both are the truncated value modulo 10^digits).
	for _, v := range []struct {
		unix int64
		want string
	}{{59, "94287082"}, {1111111109, "07081804"}, {1111111111, "14050471"},
		{1234567890, "89005924"}, {2000000000, "69279037"}, {20000000000, "65353130"}} {
		sec := &secret{base32: rfcSecret}
		got := code(rfcSecret, uint64(totpStep(v.unix)))
		if got != v.want[2:] {
			t.Errorf("TOTP at %d: got %s, want %s", v.unix, got, v.want[2:])
		}
		if step, ok := matchTOTP(sec, v.want[2:], v.unix); !ok || step != totpStep(v.unix) {
			t.Errorf("TOTP at %d not matched (step %d, %v)", v.unix, step, ok)
		}
	}
}

func oathtool(t *testing.T, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("oathtool")
	if err != nil {
		t.Skip("oathtool is not installed (apt-get install oathtool)")
	}
	out, err := exec.Command(path, args...).Output()
	if err != nil {
		t.Fatalf("oathtool %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

func TestAgainstOathtool(t *testing.T) {
	secretB32 := "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	for _, counter := range []uint64{0, 1, 7, 1000, 1 << 33} {
		want := oathtool(t, "-c", strconv.FormatUint(counter, 10), "-b", secretB32)
		if got := code(secretB32, counter); got != want {
			t.Errorf("HOTP %d: got %s, oathtool %s", counter, got, want)
		}
	}
	for _, unix := range []int64{0, 59, 1700000000, 4102444800} {
		want := oathtool(t, "--totp", "-b", "-N", "@"+strconv.FormatInt(unix, 10), secretB32)
		if got := code(secretB32, uint64(totpStep(unix))); got != want {
			t.Errorf("TOTP at %d: got %s, oathtool %s", unix, got, want)
		}
	}
}

type fixture struct {
	svc    *Service
	e      *engine.Engine
	sender *smstest.Recorder
	clock  time.Time
	mu     sync.Mutex
}

func newFixture(t testing.TB) *fixture { return newFixtureWith(t, nil) }

// newFixtureWith is newFixture over a store wrapped by wrap (nil: none).
func newFixtureWith(t testing.TB, wrap func(storage.Store) storage.Store) *fixture {
	e := enginetest.New(t, engine.Config{}, wrap)
	fx := &fixture{e: e, sender: &smstest.Recorder{}, clock: time.Unix(1_700_000_000, 0)}
	fx.svc = New(e, Options{Sender: fx.sender})
	fx.svc.now = func() time.Time {
		fx.mu.Lock()
		defer fx.mu.Unlock()
		return fx.clock
	}
	return fx
}

func (fx *fixture) advance(d time.Duration) {
	fx.mu.Lock()
	fx.clock = fx.clock.Add(d)
	fx.mu.Unlock()
}

func (fx *fixture) user(t testing.TB, name, mobile string) *account.User {
	t.Helper()
	u, err := fx.e.Accounts.CreateUser(context.Background(), account.NewUser{Username: name, MobileNumber: mobile})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (fx *fixture) verify(t *testing.T, u *account.User, c string) Result {
	t.Helper()
	res, err := fx.svc.Verify(signInRequest(context.Background()), u, c)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func secretOf(t *testing.T, uri string) string {
	t.Helper()
	m := regexp.MustCompile(`secret=([A-Z2-7]+)`).FindStringSubmatch(uri)
	if m == nil {
		t.Fatalf("no secret in %s", uri)
	}
	return m[1]
}

func TestAppCodeAcceptedOnce(t *testing.T) {
	fx := newFixture(t)
	u := fx.user(t, "alice", "")
	en, err := fx.svc.EnrolApp(context.Background(), u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(en.URI, "otpauth://totp/Gatehouse:alice?") || !strings.Contains(en.URI, "issuer=Gatehouse") {
		t.Fatalf("otpauth URI: %s", en.URI)
	}
	sec := secretOf(t, en.URI)
	if raw, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(sec); len(raw) != 20 {
		t.Fatalf("generated secret holds %d bytes, want 20", len(raw))
	}
	now := fx.svc.now().Unix()
	current := code(sec, uint64(totpStep(now)))
	if res := fx.verify(t, u, current[:3]+" "+current[3:]); !res.OK || res.Type != TypeApp {
		t.Fatalf("current code refused: %+v", res)
	}
	if res := fx.verify(t, u, current); res.OK || res.Reason != ReasonRepeated {
		t.Fatalf("replayed code: %+v", res)
	}
	// The previous step is older than the one accepted: refused too.
	if res := fx.verify(t, u, code(sec, uint64(totpStep(now)-1))); res.OK || res.Reason != ReasonReplayed {
		t.Fatalf("older code: %+v", res)
	}
	// The next step (clock skew +30 s) is accepted, then two steps ahead is not.
	if res := fx.verify(t, u, code(sec, uint64(totpStep(now)+1))); !res.OK {
		t.Fatalf("next-step code refused: %+v", res)
	}
	if res := fx.verify(t, u, code(sec, uint64(totpStep(now)+3))); res.OK {
		t.Fatalf("code three steps ahead accepted: %+v", res)
	}
	fx.advance(90 * time.Second)
	if res := fx.verify(t, u, code(sec, uint64(totpStep(fx.svc.now().Unix())))); !res.OK {
		t.Fatalf("later code refused: %+v", res)
	}
	st, err := fx.svc.Status(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	if st.LastSuccess == nil || !st.LastSuccess.Equal(fx.svc.now()) || st.ConsecutiveFailures != 0 || st.LastFailure == nil {
		t.Fatalf("status after success: %+v", st)
	}
}

// TestConfirmingCodeIsUsed: the code that confirms a new authenticator
// secret (ConfirmApp) is used up: once the secret is enrolled it does not
// sign in, nor does an older one; a code of the next step does. A wrong
// code confirms nothing and uses nothing up. A code of the same step as
// one of the old secret just accepted still confirms.
func TestConfirmingCodeIsUsed(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	u := fx.user(t, "alice", "")
	old, err := fx.svc.EnrolApp(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	step := totpStep(fx.svc.now().Unix())
	if res := fx.verify(t, u, code(old.Secret, uint64(step))); !res.OK {
		t.Fatalf("a code of the old secret: %+v", res)
	}
	en := fx.svc.NewAppSecret(u.Username)
	for _, wrong := range []string{"", "12345", code(old.Secret, uint64(step+1))} {
		if ok, err := fx.svc.ConfirmApp(ctx, u, en.Secret, wrong); ok || err != nil {
			t.Fatalf("confirming with %q: %v %v", wrong, ok, err)
		}
	}
	if ok, err := fx.svc.ConfirmApp(ctx, u, en.Secret, code(en.Secret, uint64(step))); !ok || err != nil {
		t.Fatalf("confirming with a code of the step the old secret just used: %v %v", ok, err)
	}
	confirming := code(en.Secret, uint64(step+1))
	if ok, err := fx.svc.ConfirmApp(ctx, u, en.Secret, confirming[:3]+" "+confirming[3:]); !ok || err != nil {
		t.Fatalf("confirming with a code of the next step: %v %v", ok, err)
	}
	raw, _ := b32.DecodeString(en.Secret)
	if _, err := fx.svc.EnrolApp(ctx, u, raw); err != nil {
		t.Fatal(err)
	}
	if res := fx.verify(t, u, confirming); res.OK || res.Reason != ReasonRepeated {
		t.Fatalf("signing in with the confirming code: %+v", res)
	}
	if res := fx.verify(t, u, code(en.Secret, uint64(step))); res.OK || res.Reason != ReasonReplayed {
		t.Fatalf("signing in with an older code: %+v", res)
	}
	fx.advance(30 * time.Second)
	if res := fx.verify(t, u, code(en.Secret, uint64(step+2))); !res.OK {
		t.Fatalf("signing in with a code of a later step: %+v", res)
	}
}

func TestHardTokenWindowAndCounter(t *testing.T) {
	fx := newFixture(t)
	u := fx.user(t, "bob", "")
	ctx := context.Background()
	if err := fx.svc.EnrolHardToken(ctx, u, "gezdgnbvgy3tqojq gezdgnbvgy3tqojq", 0); err != nil {
		t.Fatal(err)
	}
	if res := fx.verify(t, u, "755224"); !res.OK || res.Type != TypeHardToken {
		t.Fatalf("counter 0 refused: %+v", res)
	}
	if res := fx.verify(t, u, "755224"); res.OK || res.Reason != ReasonRepeated {
		t.Fatalf("counter 0 replayed: %+v", res)
	}
	// Counter 5 is within the window of 10 after 1; counters before it are then spent.
	if res := fx.verify(t, u, "254676"); !res.OK {
		t.Fatalf("counter 5 refused: %+v", res)
	}
	if res := fx.verify(t, u, "969429"); res.OK {
		t.Fatalf("counter 3 accepted after 5: %+v", res)
	}
	far := code(rfcSecret, 6+11)
	if res := fx.verify(t, u, far); res.OK || res.Reason != ReasonWrongCode {
		t.Fatalf("counter 17 (beyond window) accepted: %+v", res)
	}
	if res := fx.verify(t, u, code(rfcSecret, 16)); !res.OK {
		t.Fatalf("counter 16 (edge of window) refused: %+v", res)
	}
	// Importing the same token again with a lower counter (a
	// resynchronisation) takes back no code it gave: counter 2 stays
	// spent, the next one after 16 is taken. A higher counter moves it
	// forward. Zero bytes after the secret (base32 "A"s where "=" was
	// meant) make the same HMAC key, so the same token; so does removing
	// it first; and using another token in between does not make the
	// first one forget its codes.
	const otherSecret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	for _, step := range []struct {
		what          string
		remove, enrol bool   // remove the token first; import secret at counter
		secret        string // else verify the code of secret at counter
		counter       uint64
		accepted      bool
	}{
		{what: "imported again at 2", enrol: true, secret: rfcSecret, counter: 2},
		{what: "counter 2, spent before", secret: rfcSecret, counter: 2},
		{what: "counter 17, the next", secret: rfcSecret, counter: 17, accepted: true},
		{what: "imported again at 40", enrol: true, secret: rfcSecret, counter: 40},
		{what: "counter 30, behind 40", secret: rfcSecret, counter: 30},
		{what: "counter 40", secret: rfcSecret, counter: 40, accepted: true},
		{what: "imported again with zero bytes added", enrol: true, secret: rfcSecret + "AAAAAAAA"},
		{what: "counter 40, spent", secret: rfcSecret, counter: 40},
		{what: "removed and imported again", remove: true, enrol: true, secret: rfcSecret},
		{what: "counter 40, spent", secret: rfcSecret, counter: 40},
		{what: "another token imported at 2", enrol: true, secret: otherSecret, counter: 2},
		{what: "counter 2 of the other token", secret: otherSecret, counter: 2, accepted: true},
		{what: "the first token imported again", enrol: true, secret: rfcSecret},
		{what: "counter 40, spent before the other token", secret: rfcSecret, counter: 40},
		{what: "counter 41 of the first token", secret: rfcSecret, counter: 41, accepted: true},
		// A counter mistyped at an import is corrected by the next: only
		// codes accepted are carried over.
		{what: "imported at a mistyped 1000000", enrol: true, secret: rfcSecret, counter: 1000000},
		{what: "imported again at 50", enrol: true, secret: rfcSecret, counter: 50},
		{what: "counter 50, after the correction", secret: rfcSecret, counter: 50, accepted: true},
	} {
		if step.remove {
			if err := fx.svc.Remove(ctx, u, TypeHardToken); err != nil {
				t.Fatal(err)
			}
		}
		if step.enrol {
			if err := fx.svc.EnrolHardToken(ctx, u, step.secret, step.counter); err != nil {
				t.Fatalf("%s: %v", step.what, err)
			}
			continue
		}
		if res := fx.verify(t, u, code(step.secret, step.counter)); res.OK != step.accepted {
			t.Fatalf("%s: %+v, want accepted %t", step.what, res, step.accepted)
		}
	}
	// A counter past 2^63 is refused at enrolment; the highest one taken
	// works, and so does the look-ahead window from it.
	if err := fx.svc.EnrolHardToken(ctx, u, rfcSecret, MaxHOTPCounter+1); failure.Status(err) != 400 {
		t.Fatalf("counter 2^63 at enrolment: %v; want 400", err)
	}
	if err := fx.svc.EnrolHardToken(ctx, u, rfcSecret, MaxHOTPCounter); err != nil {
		t.Fatal(err)
	}
	if res := fx.verify(t, u, code(rfcSecret, MaxHOTPCounter+3)); !res.OK {
		t.Fatalf("counter 2^63+2, within the window of the highest counter enrolled: %+v", res)
	}
	// At the very end of uint64 the window stops rather than wraps.
	top := &secret{base32: rfcSecret}
	if c, ok := matchHOTP(top, code(rfcSecret, math.MaxUint64), math.MaxUint64-1, 10); !ok || c != math.MaxUint64 {
		t.Fatalf("the last counter of uint64, one after next: %d, %t", c, ok)
	}
	if _, ok := matchHOTP(top, code(rfcSecret, 3), math.MaxUint64-1, 10); ok {
		t.Fatal("the window wrapped around to counter 3")
	}
}

func TestSecretValidation(t *testing.T) {
	for _, bad := range []string{"", "not base32!", "GEZDGNBV", strings.Repeat("A", 200), "1111111111111111111111111111"} {
		if _, err := DecodeSecret(bad); err == nil {
			t.Errorf("secret %q accepted", bad)
		}
	}
	if raw, err := DecodeSecret("gezd-gnbv gy3t qojq gezd gnbv gy3t qojq===="); err != nil || string(raw) != "12345678901234567890" {
		t.Errorf("formatted secret: %q %v", raw, err)
	}
}

func TestSMSCode(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	noPhone := fx.user(t, "nophone", "")
	if err := fx.svc.EnrolSMS(ctx, noPhone); err == nil || !strings.Contains(err.Error(), "no mobile number") {
		t.Fatalf("SMS without mobile number: %v", err)
	}
	u := fx.user(t, "carol", "+421 900 123 456")
	if err := fx.svc.EnrolSMS(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := fx.svc.SendCode(ctx, u); err != nil {
		t.Fatal(err)
	}
	first := fx.sender.LastCode(t)
	if fx.sender.Messages()[0].To != "+421900123456" {
		t.Fatalf("sent to %q", fx.sender.Messages()[0].To)
	}
	// A new code replaces the old one.
	if err := fx.svc.SendCode(ctx, u); err != nil {
		t.Fatal(err)
	}
	second := fx.sender.LastCode(t)
	if first != second {
		if res := fx.verify(t, u, first); res.OK {
			t.Fatal("replaced SMS code accepted")
		}
	}
	if res := fx.verify(t, u, second); !res.OK || res.Type != TypeSMS {
		t.Fatalf("SMS code refused: %+v", res)
	}
	if res := fx.verify(t, u, second); res.OK {
		t.Fatal("SMS code accepted twice")
	}
	// Expiry after 5 minutes.
	if err := fx.svc.SendCode(ctx, u); err != nil {
		t.Fatal(err)
	}
	third := fx.sender.LastCode(t)
	fx.advance(SMSCodeLifetime + time.Second)
	if res := fx.verify(t, u, third); res.OK {
		t.Fatal("expired SMS code accepted")
	}
	// The store holds only a digest.
	raw, err := fx.e.Store.Get(ctx, smsKey(u.ID))
	if err == nil && strings.Contains(string(raw), third) {
		t.Fatal("SMS code stored in clear")
	}
	fx.sender.Fail(fmt.Errorf("gateway down"))
	if err := fx.svc.SendCode(ctx, u); err == nil {
		t.Fatal("send failure not reported")
	}
}

// TestSMSCodesPerHourAreBounded: beyond SMSPerHour a request for a code
// sends nothing and keeps the code sent last valid.
func TestSMSCodesPerHourAreBounded(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	u := fx.user(t, "sms-flood", "+421 900 123 457")
	if err := fx.svc.EnrolSMS(ctx, u); err != nil {
		t.Fatal(err)
	}
	for range SMSPerHour {
		if err := fx.svc.SendCode(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	last := fx.sender.LastCode(t)
	sent := fx.sender.Len()
	if err := fx.svc.SendCode(ctx, u); !errors.Is(err, ErrTooManyTexts) {
		t.Fatalf("code %d of the hour: %v, want ErrTooManyTexts", SMSPerHour+1, err)
	}
	if fx.sender.Len() != sent {
		t.Fatal("a text was sent beyond the hourly bound")
	}
	if res := fx.verify(t, u, last); !res.OK {
		t.Fatalf("the last code sent stopped working: %+v", res)
	}
}

// TestOtherTextsShareTheHourlyBound: texts other than codes (the ESA
// API's enrolment links) count toward SMSPerHour with the codes, so no
// caller can send a phone more than SMSPerHour texts an hour.
func TestOtherTextsShareTheHourlyBound(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	u := fx.user(t, "sms-links", "+421 900 123 458")
	if err := fx.svc.EnrolSMS(ctx, u); err != nil {
		t.Fatal(err)
	}
	for range SMSPerHour - 1 {
		if err := fx.svc.SendText(ctx, u, "a link"); err != nil {
			t.Fatal(err)
		}
	}
	if err := fx.svc.SendCode(ctx, u); err != nil {
		t.Fatalf("the hour's last text, a code: %v", err)
	}
	sent := fx.sender.Len()
	if err := fx.svc.SendText(ctx, u, "one link more"); !errors.Is(err, ErrTooManyTexts) {
		t.Fatalf("text %d of the hour: %v, want ErrTooManyTexts", SMSPerHour+1, err)
	}
	if err := fx.svc.SendCode(ctx, u); !errors.Is(err, ErrTooManyTexts) {
		t.Fatalf("code after %d texts: %v, want ErrTooManyTexts", SMSPerHour, err)
	}
	if fx.sender.Len() != sent {
		t.Fatal("a text was sent beyond the hourly bound")
	}
}

func TestLockout(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	u := fx.user(t, "dave", "")
	en, err := fx.svc.EnrolApp(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	sec := secretOf(t, en.URI)
	right := func() string { return code(sec, uint64(totpStep(fx.svc.now().Unix()))) }
	for i := 1; i <= 4; i++ {
		if res := fx.verify(t, u, "000000"); res.OK || res.Locked {
			t.Fatalf("failure %d: %+v", i, res)
		}
	}
	if res := fx.verify(t, u, "12345"); res.OK || !res.Locked || res.Reason != ReasonMalformed {
		t.Fatalf("fifth failure (malformed) should lock: %+v", res)
	}
	if res := fx.verify(t, u, right()); res.OK || !res.Locked || res.Reason != ReasonLocked {
		t.Fatalf("right code of a locked user: %+v", res)
	}
	st, _ := fx.svc.Status(ctx, u)
	if !st.Locked || st.ConsecutiveFailures != 6 || st.LastFailure == nil {
		t.Fatalf("status: %+v", st)
	}
	if err := fx.svc.Unlock(ctx, u); err != nil {
		t.Fatal(err)
	}
	if res := fx.verify(t, u, right()); !res.OK {
		t.Fatalf("right code after unlock: %+v", res)
	}
	// A success ends the run of failures.
	fx.verify(t, u, "000000")
	fx.advance(30 * time.Second)
	if res := fx.verify(t, u, right()); !res.OK {
		t.Fatalf("%+v", res)
	}
	if st, _ := fx.svc.Status(ctx, u); st.ConsecutiveFailures != 0 || st.Locked {
		t.Fatalf("status after success: %+v", st)
	}
}

// TestLockIsToldOncePerRun: the lock is logged and audited once per run
// of failures, also when the attempt counted at the threshold is taken
// back after another was counted past it (a right portal password does
// that), and again after a passed code or an unlock ended the run.
func TestLockIsToldOncePerRun(t *testing.T) {
	var planted atomic.Bool
	fx := newFixtureWith(t, func(st storage.Store) storage.Store { return plantedNote{st, &planted} })
	ctx := context.Background()
	u := fx.user(t, "oscar", "")
	if _, err := fx.svc.EnrolApp(ctx, u, nil); err != nil {
		t.Fatal(err)
	}
	threshold := fx.svc.engine.Config.LockoutThreshold
	told := func() int {
		t.Helper()
		fx.e.Audit.Flush()
		events, err := fx.e.Audit.Query(ctx, audit.Filter{Username: "oscar", Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, ev := range events {
			if strings.HasPrefix(ev.Reason, "user locked after") {
				if ev.RemoteIP != "192.0.2.1" || ev.Method != http.MethodPost || ev.Path != "/gatehouse/login" {
					t.Fatalf("the lock event names no request: %+v", ev)
				}
				n++
			}
		}
		return n
	}
	try := func() *Attempt {
		t.Helper()
		a, _, err := fx.svc.Try(ctx, signInRequest(ctx), u)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	// pastThreshold is a password counted past the threshold at the portal,
	// refused as locked and kept counted (a code counted there while no
	// lock is stored is taken back as busy instead).
	pastThreshold := func() Result {
		t.Helper()
		res, err := try().Failed(ctx, ReasonLocked)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// A note planted without the keystore, to keep the lock untold, is
	// taken for none.
	planted.Store(true)
	for range threshold - 1 {
		fx.verify(t, u, "000000")
	}
	atThreshold := try() // say, the right password at the portal, not answered yet
	if res := pastThreshold(); !res.Locked {
		t.Fatalf("failure past the threshold: %+v", res)
	}
	if err := atThreshold.Withdraw(ctx); err != nil {
		t.Fatal(err)
	}
	fx.verify(t, u, "000000") // locked, refused unchecked: no second event
	if st, _ := fx.svc.Status(ctx, u); !st.Locked {
		t.Fatalf("status: %+v", st)
	}
	if n := told(); n != 1 {
		t.Fatalf("lock events after the run went past the threshold: %d, want 1", n)
	}

	// A passed code ends the run: the next lock is told again.
	if err := fx.svc.Unlock(ctx, u); err != nil {
		t.Fatal(err)
	}
	for range threshold - 1 {
		fx.verify(t, u, "000000")
	}
	passing := try()
	pastThreshold() // locked, told
	if err := passing.Passed(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := fx.svc.Status(ctx, u); st.Locked || st.ConsecutiveFailures != 1 {
		t.Fatalf("status after the pass: %+v, want one failure left", st)
	}
	for range threshold - 1 {
		fx.verify(t, u, "000000")
	}
	if n := told(); n != 3 {
		t.Fatalf("lock events: %d, want 3 (one per run, unlock and pass included)", n)
	}
}

// plantedNote is a store in which a lock note was written without the
// keystore (its reads fail authentication) until it is deleted.
type plantedNote struct {
	storage.Store
	planted *atomic.Bool
}

func (p plantedNote) GetEntry(ctx context.Context, key string) (storage.Entry, error) {
	if p.planted.Load() && strings.HasSuffix(key, "/lock_noted") {
		return storage.Entry{}, fmt.Errorf("reading a planted note: %w", tagged.ErrTampered)
	}
	return p.Store.GetEntry(ctx, key)
}

func (p plantedNote) Delete(ctx context.Context, key string) error {
	if strings.HasSuffix(key, "/lock_noted") {
		p.planted.Store(false)
	}
	return p.Store.Delete(ctx, key)
}

// failingNote is a store whose writes of lock notes fail while armed.
type failingNote struct {
	storage.Store
	armed *atomic.Bool
}

func (f failingNote) touchesNote(keys ...string) bool {
	for _, k := range keys {
		if f.armed.Load() && strings.HasSuffix(k, "/lock_noted") {
			return true
		}
	}
	return false
}

func (f failingNote) Delete(ctx context.Context, key string) error {
	if f.touchesNote(key) {
		return storage.ErrUnavailable
	}
	return f.Store.Delete(ctx, key)
}

func (f failingNote) Batch(ctx context.Context, ops []storage.Op) error {
	for _, op := range ops {
		if f.touchesNote(op.Key) {
			return storage.ErrUnavailable
		}
	}
	return f.Store.Batch(ctx, ops)
}

// TestAFailedUnlockKeepsTheNextLockTold: an unlock that the store fails
// half-way must not leave the user unlocked with the lock note still set,
// or the next lock would go untold.
func TestAFailedUnlockKeepsTheNextLockTold(t *testing.T) {
	var armed atomic.Bool
	e := enginetest.New(t, engine.Config{}, func(st storage.Store) storage.Store { return failingNote{st, &armed} })
	svc := New(e, Options{})
	ctx := context.Background()
	u, err := e.Accounts.CreateUser(ctx, account.NewUser{Username: "olga"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.EnrolApp(ctx, u, nil); err != nil {
		t.Fatal(err)
	}
	fail := func() {
		for range e.Config.LockoutThreshold {
			if _, err := svc.Verify(signInRequest(ctx), u, "000000"); err != nil {
				t.Fatal(err)
			}
		}
	}
	fail()
	armed.Store(true)
	if err := svc.Unlock(ctx, u); err == nil {
		t.Fatal("unlock succeeded with the store failing")
	}
	armed.Store(false)
	if st, _ := svc.Status(ctx, u); st.Locked {
		return // the failed unlock left the user locked: nothing was lost
	}
	fail()
	e.Audit.Flush()
	events, _ := e.Audit.Query(ctx, audit.Filter{Username: "olga", Limit: 100})
	told := 0
	for _, ev := range events {
		if strings.HasPrefix(ev.Reason, "user locked after") {
			told++
		}
	}
	if told != 2 {
		t.Fatalf("the failed unlock left the user unlocked, and the next lock was told %d times in all, want 2", told)
	}
}

// TestAnAdministratorsUnlockLiftsEveryPasswordThrottle: the admin API's
// and the console's unlock clear every count that keeps the user's
// password refused — HTTP Basic's shared one, each familiar network's (a
// device of the user's that kept sending an old password throttled its
// own network) and the directory's failed binds — and nobody else's.
func TestAnAdministratorsUnlockLiftsEveryPasswordThrottle(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	u := fx.user(t, "bob", "")
	mine := []string{counters.BasicFailures("bob"), counters.BasicNetworkFailures("bob", "192.0.2.7"),
		counters.BasicNetworkFailures("bob", "2001:db8::/64"), counters.DirectoryBindFailures("bob")}
	others := []string{counters.BasicFailures("bobby"), counters.BasicNetworkFailures("bobby", "192.0.2.7")}
	for _, key := range append(slices.Clone(mine), others...) {
		if _, err := fx.e.Store.Incr(ctx, key, 11, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := fx.svc.UnlockAll(ctx, u); err != nil {
		t.Fatal(err)
	}
	for _, key := range mine {
		if n, err := fx.e.Store.Incr(ctx, key, 0, time.Hour); err != nil || n != 0 {
			t.Errorf("%s after an administrator's unlock: %d, %v; want 0", key, n, err)
		}
	}
	for _, key := range others {
		if n, err := fx.e.Store.Incr(ctx, key, 0, time.Hour); err != nil || n != 11 {
			t.Errorf("another user's %s after bob's unlock: %d, %v; want 11, kept", key, n, err)
		}
	}
}

func TestParallelFailuresAreAllCounted(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	u := fx.user(t, "eve", "")
	if _, err := fx.svc.EnrolApp(ctx, u, nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var busy atomic.Int64
	for range 40 {
		wg.Go(func() {
			res, err := fx.svc.Verify(signInRequest(ctx), u, "999999")
			if err != nil || res.OK {
				t.Errorf("%+v %v", res, err)
			}
			if res.Reason == ReasonBusy {
				busy.Add(1) // counted past the threshold before the lock was stored: taken back
			}
		})
	}
	wg.Wait()
	st, err := fx.svc.Status(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Locked || st.ConsecutiveFailures != 40-busy.Load() {
		t.Fatalf("after 40 parallel failures, %d answered busy: %+v", busy.Load(), st)
	}
}

// TestParallelGuessesStopAtTheThreshold: codes guessed at once are each
// counted before they are checked, so with 4 failures behind a threshold of
// 5 at most one of 200 parallel wrong guesses is checked; the others are
// refused unchecked, as locked once the lock is stored, as busy (and
// taken back) before. The right code, if checked in time, is accepted and
// ends the run of failures before it (a new run may check as many as the
// threshold again), not those counted beside it.
func TestParallelGuessesStopAtTheThreshold(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	u, sec := fx.appUser(t, "mallory")
	right, wrong := codesNow(fx, sec)
	threshold := fx.svc.engine.Config.LockoutThreshold
	for range threshold - 1 {
		fx.verify(t, u, wrong)
	}
	const n = 200
	start := make(chan struct{})
	var mu sync.Mutex
	wrongChecked, accepted, busy, conflicts := 0, 0, 0, 0
	var wg sync.WaitGroup
	for i := range n {
		c := wrong
		if i == n-1 {
			c = right
		}
		wg.Go(func() {
			<-start
			res, err := fx.svc.Verify(signInRequest(ctx), u, c)
			if errors.Is(err, storage.ErrConflict) {
				// A take-back (a busy answer's, or the right code's ending
				// the run) lost its compare-and-swap to the other guesses'
				// counts every time (a loaded machine): answered "try
				// again", its count kept, as for a guess.
				mu.Lock()
				conflicts++
				mu.Unlock()
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case res.OK:
				accepted++
			case res.Reason == ReasonBusy:
				busy++
			case res.Reason != ReasonLocked:
				wrongChecked++
			}
		})
	}
	close(start)
	wg.Wait()
	// One check was left; an accepted code starts a new run, with
	// threshold checks of its own.
	limit := 1 + accepted*(threshold-1)
	if wrongChecked > limit || wrongChecked+accepted+conflicts == 0 {
		t.Fatalf("%d of %d parallel wrong guesses were checked with %d failures behind a threshold of %d (right code accepted %d times), want at most %d", wrongChecked, n, threshold-1, threshold, accepted, limit)
	}
	st, err := fx.svc.Status(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	// An accepted code (it could only have been the attempt counted at
	// the threshold) ends the run before it; the guesses after it stay,
	// but for those answered busy. Without one, the user is locked.
	if want := int64(threshold - 1 + n - busy - accepted*threshold); st.ConsecutiveFailures != want || (accepted == 0 && !st.Locked) {
		t.Fatalf("after the parallel guesses (right code accepted %d times, %d answered busy): %+v, want %d failures", accepted, busy, st, want)
	}
}

func TestParallelReplayAcceptsOnce(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	u := fx.user(t, "frank", "")
	en, _ := fx.svc.EnrolApp(ctx, u, nil)
	c := code(secretOf(t, en.URI), uint64(totpStep(fx.svc.now().Unix())))
	var mu sync.Mutex
	accepted := 0
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			res, err := fx.svc.Verify(signInRequest(ctx), u, c)
			if err != nil {
				t.Error(err)
			}
			if res.OK {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if accepted != 1 {
		t.Fatalf("the same code was accepted %d times", accepted)
	}
}

func TestEnrolmentLink(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	u := fx.user(t, "gina", "")
	en, err := fx.svc.EnrolApp(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	token, err := fx.svc.NewEnrolmentLink(ctx, en, u)
	if err != nil {
		t.Fatal(err)
	}
	if name, err := fx.svc.CheckEnrolmentLink(ctx, token); err != nil || name != "gina" {
		t.Fatalf("check: %q %v", name, err)
	}
	got, err := fx.svc.RedeemEnrolmentLink(ctx, token)
	if err != nil || got.URI != en.URI || got.Secret != en.Secret {
		t.Fatalf("redeem: %+v %v", got, err)
	}
	if _, err := fx.svc.RedeemEnrolmentLink(ctx, token); err == nil {
		t.Fatal("link used twice")
	}
	// A newer secret voids older links.
	token2, _ := fx.svc.NewEnrolmentLink(ctx, en, u)
	if _, err := fx.svc.EnrolApp(ctx, u, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.svc.RedeemEnrolmentLink(ctx, token2); err == nil {
		t.Fatal("superseded link worked")
	}
	if _, err := fx.svc.RedeemEnrolmentLink(ctx, "short"); err == nil {
		t.Fatal("malformed token accepted")
	}
	// Links asked for in a loop (the ESA API's provisionmobileapp) leave
	// one record, the live link's; deleting the account takes it too.
	var last string
	for range 50 {
		en, err := fx.svc.EnrolApp(ctx, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		if last, err = fx.svc.NewEnrolmentLink(ctx, en, u); err != nil {
			t.Fatal(err)
		}
	}
	links := func() (n int) {
		err := fx.e.Store.Scan(ctx, enrolmentLinkPrefix, func(storage.Entry) error { n++; return nil })
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := links(); n != 1 {
		t.Fatalf("%d enrolment link records after 50 links for one account; want 1", n)
	}
	if name, err := fx.svc.CheckEnrolmentLink(ctx, last); err != nil || name != "gina" {
		t.Fatalf("the last link: %q %v", name, err)
	}
	if err := fx.e.Accounts.DeleteUser(ctx, "gina"); err != nil {
		t.Fatal(err)
	}
	if n := links(); n != 0 {
		t.Fatalf("%d enrolment link records after the account was deleted; want none", n)
	}
}

func TestRecreatedUserStartsClean(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	u := fx.user(t, "hank", "")
	if _, err := fx.svc.EnrolApp(ctx, u, nil); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		fx.verify(t, u, "000000")
	}
	if err := fx.e.Accounts.DeleteUser(ctx, "hank"); err != nil {
		t.Fatal(err)
	}
	// Nothing of the deleted account's second factors is left behind.
	err := fx.e.Store.Scan(ctx, userKey(u.ID, ""), func(e storage.Entry) error {
		t.Errorf("left after the user was deleted: %s", e.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	u2 := fx.user(t, "hank", "")
	st, err := fx.svc.Status(ctx, u2)
	if err != nil || len(st.Types) != 0 || st.Locked {
		t.Fatalf("re-created user inherited 2FA state: %+v %v", st, err)
	}
}

func TestDeprovisionAndBlocked(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	u := fx.user(t, "ivy", "+12025550123")
	en, _ := fx.svc.EnrolApp(ctx, u, nil)
	if err := fx.svc.EnrolSMS(ctx, u); err != nil {
		t.Fatal(err)
	}
	if types, _ := fx.svc.Types(ctx, u); fmt.Sprint(types) != "[APP SMS]" {
		t.Fatalf("types %v", types)
	}
	if err := fx.svc.Remove(ctx, u, TypeHardToken); err == nil {
		t.Fatal("removing an absent factor succeeded")
	}
	if err := fx.svc.Deprovision(ctx, u); err != nil {
		t.Fatal(err)
	}
	if res := fx.verify(t, u, code(secretOf(t, en.URI), uint64(totpStep(fx.svc.now().Unix())))); res.OK || res.Reason != ReasonNotEnabled {
		t.Fatalf("after deprovision: %+v", res)
	}
	blocked := *u
	blocked.Status = account.StatusBlocked
	if res := fx.verify(t, &blocked, "123456"); res.OK || res.Reason != ReasonBlocked {
		t.Fatalf("blocked: %+v", res)
	}
}

// TestNormalizeCode: the white space a person or a client puts around or
// inside a code (a trailing newline, a no-break or thin space), invisible
// format characters and dashes are dropped, as ESET's server drops white
// space, and fullwidth digits read as digits; anything else that is not
// one of six digits is refused.
func TestNormalizeCode(t *testing.T) {
	for _, in := range []string{"123456", " 123456 ", "123 456", "12-34-56", "123456\n", "123456\r\n", "\n123456", "\t123\t456",
		"123\u00a0456", "123\u2009456", "123\u202f456", "123\u3000456", "123\u2028456", "123\u200b456", "\ufeff123456", "\u200e123456",
		"１２３４５６", "123４５６"} {
		if c, ok := NormalizeCode(in); !ok || c != "123456" {
			t.Errorf("NormalizeCode(%q) = %q, %t; want 123456", in, c, ok)
		}
	}
	for _, in := range []string{"", "12345", "1234567", "12345a", "123_456", "123.456", "١٢٣٤٥٦", strings.Repeat(" ", 30) + "123456"} {
		if c, ok := NormalizeCode(in); ok {
			t.Errorf("NormalizeCode(%q) = %q: accepted", in, c)
		}
	}
}

// TestHardTokenStateOfAnOlderVersion: a state an older version wrote
// knows the token used last by its ID alone; the same token imported
// again before its next code keeps its counter all the same.
func TestHardTokenStateOfAnOlderVersion(t *testing.T) {
	fx := newFixture(t)
	u := fx.user(t, "bob", "")
	ctx := context.Background()
	if err := fx.svc.EnrolHardToken(ctx, u, rfcSecret, 0); err != nil {
		t.Fatal(err)
	}
	if res := fx.verify(t, u, code(rfcSecret, 5)); !res.OK {
		t.Fatalf("counter 5 refused: %+v", res)
	}
	if _, err := fx.svc.advance(ctx, u.ID, func(st *state) bool { // as an older version wrote it
		st.HOTPTokens = nil
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if err := fx.svc.EnrolHardToken(ctx, u, rfcSecret, 0); err != nil {
		t.Fatal(err)
	}
	if res := fx.verify(t, u, code(rfcSecret, 5)); res.OK {
		t.Fatalf("counter 5, spent, accepted after the token was imported again: %+v", res)
	}
	if res := fx.verify(t, u, code(rfcSecret, 6)); !res.OK {
		t.Fatalf("counter 6 refused: %+v", res)
	}
}

func FuzzNormalizeCode(f *testing.F) {
	for _, s := range []string{"123456", "123 456", "12-34-56", "", "abcdef", "１２３４５６", "1234567"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := NormalizeCode(s)
		if ok {
			if len(c) != 6 || strings.Trim(c, "0123456789") != "" {
				t.Fatalf("%q normalised to %q", s, c)
			}
		}
	})
}

func FuzzDecodeSecret(f *testing.F) {
	for _, s := range []string{rfcSecret, "gezdgnbv gy3tqojq", "====", "", "A"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		raw, err := DecodeSecret(s)
		if err == nil && (len(raw) < minSecretBytes || len(raw) > maxSecretBytes) {
			t.Fatalf("%q decoded to %d bytes", s, len(raw))
		}
	})
}

// TestAttemptBeforeAnUnlockTakesNothingBack: an attempt counted before an
// unlock (the right password at the portal, say, whose second factor
// follows later) takes nothing back once it passes or is withdrawn: the
// unlock cleared its count, and what is counted now are guesses made
// after the unlock, which must all stay counted.
func TestAttemptBeforeAnUnlockTakesNothingBack(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	u := fx.user(t, "ursula", "")
	if _, err := fx.svc.EnrolApp(ctx, u, nil); err != nil {
		t.Fatal(err)
	}
	for _, end := range []struct {
		name string
		do   func(*Attempt) error
	}{{"passed", func(a *Attempt) error { return a.Passed(ctx) }}, {"withdrawn", func(a *Attempt) error { return a.Withdraw(ctx) }}} {
		fx.verify(t, u, "000000")
		before, _, err := fx.svc.Try(ctx, signInRequest(ctx), u)
		if err != nil {
			t.Fatal(err)
		}
		if err := fx.svc.Unlock(ctx, u); err != nil {
			t.Fatal(err)
		}
		fx.verify(t, u, "000000")
		fx.verify(t, u, "000000")
		if err := end.do(before); err != nil {
			t.Fatal(err)
		}
		if st, _ := fx.svc.Status(ctx, u); st.ConsecutiveFailures != 2 {
			t.Fatalf("%s attempt from before the unlock: %d failures counted, want the 2 guesses made after it", end.name, st.ConsecutiveFailures)
		}
		if err := fx.svc.Unlock(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReplaysDoNotLock: the code accepted last, sent again more times
// than the lockout threshold (a client retrying a request that timed
// out), is refused each time but does not lock the user: it is no guess.
// A wrong code still counts, and so do an older step's code and a
// hardware token's code skipped over: only the last accepted one is free.
func TestReplaysDoNotLock(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	u, sec := fx.appUser(t, "rita")
	right, wrong := codesNow(fx, sec)
	if res, err := fx.svc.Verify(signInRequest(ctx), u, right); err != nil || !res.OK {
		t.Fatalf("the right code: %+v, %v", res, err)
	}
	for i := range 2 * fx.svc.engine.Config.LockoutThreshold {
		if res, err := fx.svc.Verify(signInRequest(ctx), u, right); err != nil || res.OK || res.Reason != ReasonRepeated || res.Locked {
			t.Fatalf("replay %d: %+v, %v; want refused as a replay, not locked", i, res, err)
		}
	}
	st, err := fx.svc.Status(ctx, u)
	if err != nil || st.Locked || st.ConsecutiveFailures != 0 || st.LastFailure == nil {
		t.Fatalf("after the replays: %+v, %v; want unlocked, no failure counted, the last failure's time", st, err)
	}
	if res, _ := fx.svc.Verify(signInRequest(ctx), u, wrong); res.OK || res.Reason != ReasonWrongCode {
		t.Fatalf("a wrong code: %+v", res)
	}
	if st, _ := fx.svc.Status(ctx, u); st.ConsecutiveFailures != 1 {
		t.Fatalf("after a wrong code: %+v; want 1 failure counted", st)
	}
	older := code(sec, uint64(totpStep(fx.svc.now().Unix())-1))
	if res, _ := fx.svc.Verify(signInRequest(ctx), u, older); res.OK || res.Reason != ReasonReplayed {
		t.Fatalf("the previous step's code: %+v", res)
	}
	if st, _ := fx.svc.Status(ctx, u); st.ConsecutiveFailures != 2 {
		t.Fatalf("after an older step's code: %+v; want 2 failures counted", st)
	}
	if err := fx.svc.EnrolHardToken(ctx, u, rfcSecret, 0); err != nil {
		t.Fatal(err)
	}
	if res := fx.verify(t, u, code(rfcSecret, 5)); !res.OK {
		t.Fatalf("hardware token counter 5: %+v", res)
	}
	for _, c := range []uint64{2, 5} { // skipped, then the last accepted
		fx.verify(t, u, code(rfcSecret, c))
	}
	if st, _ := fx.svc.Status(ctx, u); st.ConsecutiveFailures != 1 {
		t.Fatalf("after a skipped code and the last accepted one again: %+v; want 1 failure counted (the skipped one)", st)
	}
}

// TestSMSReplaysDoNotLock: the SMS code accepted last, sent again, one
// after another or many at once, is refused as a repeat and not counted
// toward the lockout, as an app's code is; a new code sent after it
// makes it a replay, counted.
func TestSMSReplaysDoNotLock(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	u := fx.user(t, "sam", "+421 900 123 457")
	if err := fx.svc.EnrolSMS(ctx, u); err != nil {
		t.Fatal(err)
	}
	send := func() string {
		t.Helper()
		if err := fx.svc.SendCode(ctx, u); err != nil {
			t.Fatal(err)
		}
		return fx.sender.LastCode(t)
	}
	right := send()
	if res := fx.verify(t, u, right); !res.OK {
		t.Fatalf("the right code: %+v", res)
	}
	for i := range 2 * fx.svc.engine.Config.LockoutThreshold {
		if res, err := fx.svc.Verify(signInRequest(ctx), u, right); err != nil || res.OK || res.Reason != ReasonRepeated || res.Locked {
			t.Fatalf("repeat %d: %+v, %v; want refused as a repeat, not locked", i, res, err)
		}
	}
	if st, err := fx.svc.Status(ctx, u); err != nil || st.Locked || st.ConsecutiveFailures != 0 {
		t.Fatalf("after the repeats: %+v, %v; want unlocked, no failure counted", st, err)
	}

	// Several at once (fewer than the lockout threshold: attempts are
	// counted before they are checked): one accepted, the others repeats.
	right = send()
	results := make(chan Result, fx.svc.engine.Config.LockoutThreshold-1)
	var wg sync.WaitGroup
	for range cap(results) {
		wg.Go(func() {
			res, err := fx.svc.Verify(signInRequest(ctx), u, right)
			if err != nil {
				t.Error(err)
			}
			results <- res
		})
	}
	wg.Wait()
	close(results)
	accepted := 0
	for res := range results {
		switch {
		case res.OK:
			accepted++
		case res.Reason != ReasonRepeated:
			t.Errorf("a parallel submission of the right code: %+v", res)
		}
	}
	if st, _ := fx.svc.Status(ctx, u); accepted != 1 || st.Locked || st.ConsecutiveFailures != 0 {
		t.Fatalf("%d accepted of the same code sent at once, then %+v; want 1 and nothing counted", accepted, st)
	}

	// Once a newer code was sent, the old one is no repeat: counted.
	send()
	if res := fx.verify(t, u, right); res.OK || res.Reason == ReasonRepeated {
		t.Fatalf("a code accepted before a newer one was sent: %+v", res)
	}
	if st, _ := fx.svc.Status(ctx, u); st.ConsecutiveFailures != 1 {
		t.Fatalf("after an old code: %+v; want 1 failure counted", st)
	}
}

// appUser creates the user name with an authenticator app enrolled, and
// returns it with the app's secret.
func (fx *fixture) appUser(t *testing.T, name string) (*account.User, string) {
	t.Helper()
	u := fx.user(t, name, "")
	en, err := fx.svc.EnrolApp(context.Background(), u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return u, secretOf(t, en.URI)
}

// codesNow returns the app's code for the current step and a code that is
// not it.
func codesNow(fx *fixture, sec string) (right, wrong string) {
	right, wrong = code(sec, uint64(totpStep(fx.svc.now().Unix()))), "000001"
	if wrong == right {
		wrong = "000002"
	}
	return right, wrong
}

// signInRequest is a request a code or password came with, for the
// lockout's audit event.
func signInRequest(ctx context.Context) *http.Request {
	return httptest.NewRequestWithContext(ctx, http.MethodPost, "/gatehouse/login", nil)
}

// TestAdminEventsNameTheAccount: an admin call naming a user in another
// spelling (upper case here; a directory's EXAMPLE\olga or another name
// of its entry alike) acts on the account and its audit event names the
// account, so that the audit log filtered by the user finds it.
func TestAdminEventsNameTheAccount(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	svc := New(e, Options{})
	h := adminapi.NewHandler(e, adminapi.NewCore(e), svc)
	ctx := context.Background()
	if _, err := e.Accounts.CreateUser(ctx, account.NewUser{Username: "olga"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/gatehouse/users/OLGA/otp", `{"type":"APP"}`},
		{"POST", "/gatehouse/users/Olga/unlock", ""},
		{"DELETE", "/gatehouse/users/oLGA/otp", ""},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(c.method, c.path, strings.NewReader(c.body)))
		if w.Code >= 300 {
			t.Fatalf("%s %s: %d %s", c.method, c.path, w.Code, w.Body)
		}
	}
	e.Audit.Flush()
	events, err := e.Audit.Query(ctx, audit.Filter{Kind: "admin", Username: "olga", Limit: 10})
	if err != nil || len(events) != 3 {
		t.Fatalf("admin events of olga: %d %v; want the 3 calls", len(events), err)
	}
}

// TestAppCodeWindowIsOneStepEitherSide: an authenticator code is accepted
// within one 30-second step of the server's clock: a code two steps old
// (a minute or more) or two steps ahead is refused as a wrong code,
// though none was used before; one a step old still signs in.
func TestAppCodeWindowIsOneStepEitherSide(t *testing.T) {
	fx := newFixture(t)
	u, sec := fx.appUser(t, "alice")
	step := totpStep(fx.svc.now().Unix())
	for _, d := range []int64{-2, 2} {
		if res := fx.verify(t, u, code(sec, uint64(step+d))); res.OK || res.Reason != ReasonWrongCode {
			t.Errorf("a code %+d steps from now: %+v; want refused as a wrong code", d, res)
		}
	}
	if res := fx.verify(t, u, code(sec, uint64(step-1))); !res.OK || res.Type != TypeApp {
		t.Errorf("a code one step old: %+v; want accepted", res)
	}
}
