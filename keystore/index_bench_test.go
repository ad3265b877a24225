package keystore

import (
	"path/filepath"
	"testing"
)

func BenchmarkIndex(b *testing.B) {
	ks, _ := Open(filepath.Join(b.TempDir(), "k"), true)
	secret := []byte("alice\x00correct horse battery staple")
	b.ReportAllocs()
	for b.Loop() {
		ks.Index("basic", secret)
	}
}
