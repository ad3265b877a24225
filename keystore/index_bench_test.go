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

// BenchmarkRecordTag is the tag of a typical cached record (an app key's,
// about 200 bytes), made on every write and checked on every cache miss.
func BenchmarkRecordTag(b *testing.B) {
	ks, _ := Open(filepath.Join(b.TempDir(), "k"), true)
	value := make([]byte, 200)
	b.ReportAllocs()
	for b.Loop() {
		ks.RecordTag("appkey/idx/0123456789abcdef", value)
	}
}
