package portal

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/audit"
)

// TestParallelPasswordGuessesStopAtTheThreshold: passwords guessed at once
// at the login portal are each counted before the (slow) password check:
// with one failure left before the lockout threshold, at most one of 30
// parallel wrong guesses has its password checked (the audit log names
// each "wrong password"); the right one, if checked in time, reaches the
// code step and takes its count back, and every wrong guess stays counted
// unless it found the server too busy to check it.
func TestParallelPasswordGuessesStopAtTheThreshold(t *testing.T) {
	h := newHarness(t)
	u := h.user("victim", "")
	ctx := context.Background()
	if _, err := h.svc.EnrolApp(ctx, u, nil); err != nil {
		t.Fatal(err)
	}
	for range h.e.Config.LockoutThreshold - 1 {
		a, _, err := h.svc.Try(ctx, httptest.NewRequestWithContext(ctx, http.MethodPost, "/gatehouse/login", nil), u)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Failed(ctx, "earlier failure"); err != nil {
			t.Fatal(err)
		}
	}
	const n = 30
	bs := make([]*browser, n)
	for i := range bs {
		bs[i] = h.browser()
		bs[i].get("/gatehouse/login")
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := 0
	for i, b := range bs {
		pw := "wrong guess"
		if i == n-1 {
			pw = password
		}
		wg.Go(func() {
			<-start
			_, body := b.post("/gatehouse/login", url.Values{"step": {"password"}, "username": {"victim"}, "password": {pw}, "return": {"/"}})
			if strings.Contains(body, `name="code"`) {
				mu.Lock()
				passed++
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	st, err := h.svc.Status(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	h.e.Audit.Flush()
	events, err := h.e.Audit.Query(ctx, audit.Filter{Username: "victim", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	wrong, busy := 0, 0
	for _, ev := range events {
		switch ev.Reason {
		case "wrong password":
			wrong++
		case "password not checked: the server is busy":
			busy++ // more parallel checks than hash slots: taken back
		}
	}
	if wrong > 1 || wrong+passed == 0 {
		t.Fatalf("%d parallel guesses: %d wrong passwords checked and the right one reached the code step %d times, want at most one wrong one checked", n, wrong, passed)
	}
	// The right password, if checked, takes its count back, and so does a
	// guess not checked because the server was busy.
	if want := int64(h.e.Config.LockoutThreshold - 1 + n - passed - busy); st.ConsecutiveFailures != want || !st.Locked {
		t.Fatalf("status %+v, want locked with %d failures", st, want)
	}
}

// TestWrongCodesAreAuditedOneByOne: a code refused after the right
// password is never counted in a summary of refusals, even once the
// client's network is past audit_refusals_per_minute; the password step's
// refusals are.
func TestWrongCodesAreAuditedOneByOne(t *testing.T) {
	h := newHarness(t)
	h.e.Audit.Reconfigure(zap.NewNop(), audit.Settings{RefusalsPerMinute: 1})
	u := h.user("carol", "")
	if _, err := h.svc.EnrolApp(context.Background(), u, nil); err != nil {
		t.Fatal(err)
	}
	b := h.browser()
	b.get("/gatehouse/login")
	for range 2 {
		b.post("/gatehouse/login", url.Values{"step": {"password"}, "username": {"carol"}, "password": {"wrong password"}, "return": {"/"}})
	}
	b.post("/gatehouse/login", url.Values{"step": {"password"}, "username": {"carol"}, "password": {password}, "return": {"/"}})
	for range 2 { // 4 failures in all: one short of the lockout
		if _, body := b.post("/gatehouse/login", url.Values{"step": {"code"}, "code": {"000000"}}); !strings.Contains(body, "not right") {
			t.Fatalf("a wrong code: %s", body)
		}
	}
	events, err := h.e.Audit.Query(context.Background(), audit.Filter{Username: "carol", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	codes, passwords, summarised := 0, 0, 0
	for _, ev := range events {
		switch {
		case ev.Reason == "wrong password":
			passwords += max(ev.Count, 1)
			summarised += ev.Count
		case ev.Outcome == audit.OutcomeFailure && ev.Count == 0:
			codes++
		}
	}
	if codes != 2 || passwords != 2 || summarised == 0 {
		t.Fatalf("events %+v; want the 2 wrong codes on their own and the wrong passwords past the allowance summarised", events)
	}
}
