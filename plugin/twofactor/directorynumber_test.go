package twofactor

import (
	"context"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/directory/directorytest"
	"github.com/gatehouse-auth/gatehouse/directory/slapdtest"
	"github.com/gatehouse-auth/gatehouse/failure"
)

// TestSignInNeverTextsTheDirectorysNumber: a directory account enrolled
// for SMS without a number of its own (enrolled by a version that texted
// the directory's number as it was at each send, or whose number an
// administrator cleared) gets no code at a sign-in, where whoever has the
// password alone could have just set the directory's number; the refusal
// says what an administrator does, and nothing is adopted.
func TestSignInNeverTextsTheDirectorysNumber(t *testing.T) {
	for _, cleared := range []bool{false, true} {
		t.Run(map[bool]string{false: "enrolled by an older version", true: "number cleared"}[cleared], func(t *testing.T) {
			srv := slapdtest.Start(t)
			srv.AddUser("gina", "gina password", "+15550001111", slapdtest.OperatorsDN)
			fx := newFixture(t)
			d := directorytest.New(t, srv, nil)
			fx.e.Accounts.SetDirectory(d)
			ctx := context.Background()
			u, err := fx.e.Accounts.User(ctx, "gina")
			if err != nil {
				t.Fatal(err)
			}
			if cleared {
				if err := fx.svc.EnrolSMS(ctx, u); err != nil { // adopts +15550001111
					t.Fatal(err)
				}
				empty := ""
				if _, err := fx.e.Accounts.UpdateUser(ctx, "gina", account.UserPatch{MobileNumber: &empty}); err != nil {
					t.Fatal(err)
				}
			} else if err := fx.svc.modifyFactors(ctx, u, func(f *storedFactors) error { f.SMS = true; return nil }); err != nil {
				t.Fatal(err)
			}
			srv.Modify("dn: uid=gina," + slapdtest.PeopleDN + "\nchangetype: modify\nreplace: mobile\nmobile: +19990000666\n")
			if _, err := d.Refresh(ctx, "gina"); err != nil {
				t.Fatal(err)
			}
			sent := fx.sender.Len()
			res, err := fx.e.Accounts.SignIn(ctx, "gina", "gina password", fx.svc.Lockout(signInRequest(ctx)))
			if err != nil || res.Outcome != account.OutcomeOK {
				t.Fatalf("sign-in: %+v %v", res, err)
			}
			err = fx.svc.SendCode(ctx, res.User)
			if failure.Status(err) != 400 || !strings.Contains(err.Error(), "administrator") {
				t.Errorf("SendCode = %v; want a 400 saying what an administrator does", err)
			}
			if fx.sender.Len() != sent {
				t.Errorf("a sign-in's code was texted to %s", fx.sender.Last().To)
			}
			if stored, _ := fx.e.Accounts.UserByCanonicalName(ctx, "gina"); stored.MobileNumber != "" {
				t.Errorf("a sign-in adopted %q", stored.MobileNumber)
			}
		})
	}
}
