package esa

import (
	"context"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/directory/directorytest"
	"github.com/gatehouse-auth/gatehouse/directory/slapdtest"
)

// TestADirectoryAccountWithoutARecordIsAFault: a directory account that
// cannot be given a Gatehouse record under its name (beside a local user
// whose name swaps its spaces and '+' signs) is ERROR_FAULT saying why,
// as the admin API's 409 does, not an empty 500 that a client retries
// and Caddy's log records as a failure of the server.
func TestADirectoryAccountWithoutARecordIsAFault(t *testing.T) {
	srv := slapdtest.Start(t)
	srv.AddUser("john smith", "john password", "")
	v := newEnv(t)
	d := directorytest.New(t, srv, nil)
	if _, err := v.e.Accounts.CreateUser(context.Background(), account.NewUser{Username: "john+smith"}); err != nil {
		t.Fatal(err)
	}
	v.e.Accounts.SetDirectory(d)
	for _, path := range []string{"/auth/v1/start2fa", "/manage/users/v1/profile"} {
		out := v.call("POST", path, `{"username":"john smith"}`)
		if msg, _ := out["error_message"].(string); out["error"] != ErrorFault || !strings.Contains(msg, `"john+smith"`) {
			t.Errorf("%s for john smith beside john+smith: %v; want ERROR_FAULT naming john+smith", path, out)
		}
	}
}
