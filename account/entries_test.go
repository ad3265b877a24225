package account

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/directory"
	"github.com/gatehouse-auth/gatehouse/directory/slapdtest"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

// beforeIndexScan runs a function once, just before the first scan of
// the index of directory entries.
type beforeIndexScan struct {
	storage.Store
	run func()
}

// Scan implements storage.Store.
func (b *beforeIndexScan) Scan(ctx context.Context, prefix string, fn func(storage.Entry) error) error {
	if prefix == entryPrefix && b.run != nil {
		run := b.run
		b.run = nil
		run()
	}
	return b.Store.Scan(ctx, prefix, fn)
}

// TestStartKeepsTheClaimOfASignInMeanwhile: a first sign-in on another
// instance while one starts (a rolling restart) claims its entry before
// its record exists; the start, which read the records before, must not
// take that claim for an orphan and free it, or the other name of the
// entry would make a second record and block the first (found by an
// outside review).
func TestStartKeepsTheClaimOfASignInMeanwhile(t *testing.T) {
	srv := slapdtest.Start(t)
	dn := "cn=Cal C," + slapdtest.PeopleDN
	srv.Modify("dn: " + dn + "\nobjectClass: inetOrgPerson\ncn: Cal C\nsn: C\nuid: cal\nuid: cally\nuserPassword: cal password\n\n" +
		"dn: " + slapdtest.OperatorsDN + "\nchangetype: modify\nadd: member\nmember: " + dn + "\n")
	d, err := directory.New(slapdConfig(srv), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	db, err := badger.Open(filepath.Join(t.TempDir(), "db"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hooked := &beforeIndexScan{Store: db}
	c := cache.New(hooked, 1024)
	t.Cleanup(func() { c.Close() })
	s := NewService(c, nil)
	s.SetDirectory(d)
	ctx := context.Background()

	hooked.run = func() {
		if res, err := s.SignIn(ctx, "cal", "cal password", gate(GateOpen)); err != nil || res.Outcome != OutcomeOK {
			t.Errorf("the sign-in during the start: %+v %v", res, err)
		}
	}
	if err := s.IndexDirectoryEntries(ctx, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if res, err := s.SignIn(ctx, "cally", "cal password", gate(GateOpen)); err != nil || res.Outcome != OutcomeOK || res.User.Username != "cal" {
		t.Fatalf("the entry's other name after the start: %+v %v; want the account cal", res, err)
	}
	if err := s.IndexDirectoryEntries(ctx, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	e, _ := d.Locate(ctx, "cal")
	if raw, err := db.Get(ctx, entryPrefix+e.ID); err != nil || strings.HasPrefix(string(raw), contestedMark) {
		t.Fatalf("the index after the next start: %q %v; want cal's", raw, err)
	}
	if res, err := s.SignIn(ctx, "cal", "cal password", gate(GateOpen)); err != nil || res.Outcome != OutcomeOK {
		t.Fatalf("cal after both starts: %+v %v; want signed in", res, err)
	}
}
