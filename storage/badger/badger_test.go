package badger

import (
	"path/filepath"
	"testing"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/storetest"
)

func TestConformance(t *testing.T) {
	dirs := map[storage.Store]string{}
	open := func(t *testing.T, dir string) storage.Store {
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		dirs[s] = dir
		return s
	}
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) storage.Store { return open(t, filepath.Join(t.TempDir(), "db")) },
		Reopen: func(t *testing.T, s storage.Store) storage.Store {
			dir := dirs[s]
			s.Close()
			return open(t, dir)
		},
	})
}

func TestSecondOpenOfSameDirFails(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s2, err := Open(dir, Options{}); err == nil {
		s2.Close()
		t.Fatal("a second Open of a locked directory succeeded")
	}
}
