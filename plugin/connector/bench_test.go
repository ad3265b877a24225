package connector

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/gatehouse-auth/gatehouse/engine"
)

// BenchmarkAuthenticate is the data-plane check of a cached, bound token.
func BenchmarkAuthenticate(b *testing.B) {
	f := newFixture(b, engine.Config{})
	f.user("alice")
	c1 := f.connector("c1", "alice")
	a := f.mustToken(c1)
	r := request(http.MethodGet, "/api/thing", c1, "")
	r.Header.Set("Authorization", "Bearer "+a.AccessToken)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.p.Authenticate(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTokenIssuance is the token endpoint's certificate grant: durable
// (synced) issuance, many clients at once. Reported as tokens/s.
func BenchmarkTokenIssuance(b *testing.B) {
	f := newFixture(b, engine.Config{})
	f.user("alice")
	c1 := f.connector("c1", "alice")
	body := url.Values{"grant_type": {"certificate"}}.Encode()
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			f.p.serveToken(w, request(http.MethodPost, TokenPath, c1, body))
			if w.Code != http.StatusOK {
				b.Fatalf("token endpoint: %d %s", w.Code, w.Body)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
