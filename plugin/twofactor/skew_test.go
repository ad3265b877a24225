package twofactor

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestRightCodeAtAWrongTimeIsLogged: a right authenticator code for a
// time 90 seconds from the server's clock (a clock NTP no longer keeps,
// or a phone's that is off) is refused and counted as before, and the log
// says how far off it is, without the code; a wrong code, or a right one
// further off than ten minutes, says nothing. An operator used to see only
// "wrong or expired code" and users locked out.
func TestRightCodeAtAWrongTimeIsLogged(t *testing.T) {
	fx := newFixture(t)
	core, logs := observer.New(zapcore.WarnLevel)
	fx.e.Logger = zap.New(core)
	u, sec := fx.appUser(t, "alice")
	step := totpStep(fx.svc.now().Unix())
	const hint = "is the user's code for a time"
	ahead := code(sec, uint64(step+3))
	if res := fx.verify(t, u, ahead); res.OK || res.Reason != ReasonWrongCode {
		t.Fatalf("a code 3 steps ahead: %+v; want refused as a wrong code", res)
	}
	got := logs.FilterMessageSnippet(hint).All()
	if len(got) != 1 || got[0].ContextMap()["username"] != "alice" || got[0].ContextMap()["code_time_from_clock"] != 90*time.Second {
		t.Fatalf("log after a code 90 s ahead: %v; want one warning naming alice and 90s", logs.All())
	}
	for _, e := range logs.All() {
		for k, v := range e.ContextMap() {
			if s, ok := v.(string); ok && s == ahead {
				t.Errorf("the warning logs the code in %s", k)
			}
		}
	}
	if n, _ := fx.svc.failures(t.Context(), u.ID); n != 1 {
		t.Errorf("failures after the code 90 s ahead: %d; want it counted", n)
	}
	_, wrong := codesNow(fx, sec)
	fx.verify(t, u, wrong)
	fx.verify(t, u, code(sec, uint64(step-25)))
	if n := logs.FilterMessageSnippet(hint).Len(); n != 1 {
		t.Errorf("%d warnings after a wrong code and one 12.5 minutes old; want none more", n)
	}
}

// TestUsedCodeStaysUsedAfterTheClockStepsBack: a code accepted at T is
// refused once the server's clock steps back (NTP correcting a clock that
// ran ahead), while the step it was made for is again within the window,
// and so is an older code the step back brings into it; a hardware
// token's code, which no clock judges, likewise. A guarantee, not a fix:
// replay protection counts time steps and counters, never times.
func TestUsedCodeStaysUsedAfterTheClockStepsBack(t *testing.T) {
	fx := newFixture(t)
	u, sec := fx.appUser(t, "alice")
	step := totpStep(fx.svc.now().Unix())
	used := code(sec, uint64(step))
	if res := fx.verify(t, u, used); !res.OK {
		t.Fatalf("the code at T: %+v", res)
	}
	fx.advance(-45 * time.Second)
	if res := fx.verify(t, u, used); res.OK || res.Reason != ReasonRepeated {
		t.Errorf("the code used at T, after a step back of 45 s: %+v; want refused as repeated", res)
	}
	if res := fx.verify(t, u, code(sec, uint64(step-2))); res.OK || res.Reason != ReasonReplayed {
		t.Errorf("an older code now within the window: %+v; want refused as replayed", res)
	}
	fx.advance(45 * time.Second)
	if res := fx.verify(t, u, code(sec, uint64(step+1))); !res.OK {
		t.Errorf("the next step's code once the clock is back: %+v; want accepted", res)
	}
}

// TestSkewWarningsAreThinned: the warning of a right code at a wrong time
// is logged at most once a minute, with how many codes it stands for. A
// signed-in console user confirming a new authenticator secret (whose
// codes for every time they can make, and whose refusals count toward no
// lockout) otherwise wrote one warning per request, as fast as they sent
// them, each telling the operator of a clock that is off.
func TestSkewWarningsAreThinned(t *testing.T) {
	fx := newFixture(t)
	core, logs := observer.New(zapcore.WarnLevel)
	fx.e.Logger = zap.New(core)
	u := fx.user(t, "mallory", "")
	sec := secretOf(t, fx.svc.NewAppSecret(u.Username).URI)
	ahead := code(sec, uint64(totpStep(fx.svc.now().Unix())+5))
	for range 50 {
		if ok, err := fx.svc.ConfirmApp(t.Context(), u, sec, ahead); err != nil || ok {
			t.Fatalf("confirming with a code 150 s ahead: %v %v; want refused", ok, err)
		}
	}
	got := logs.FilterMessageSnippet("is the user's code for a time").All()
	if len(got) != 1 {
		t.Fatalf("%d warnings for 50 refused confirmations; want 1", len(got))
	}
	fx.advance(61 * time.Second)
	ahead = code(sec, uint64(totpStep(fx.svc.now().Unix())+5))
	if ok, _ := fx.svc.ConfirmApp(t.Context(), u, sec, ahead); ok {
		t.Fatal("a code 150 s ahead confirmed")
	}
	got = logs.FilterMessageSnippet("is the user's code for a time").All()
	if len(got) != 2 || got[1].ContextMap()["codes_since_last_line"] != int64(50) {
		t.Fatalf("the warning a minute later: %v; want one more standing for the 50 since the first", got)
	}
}
