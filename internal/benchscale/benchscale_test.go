package benchscale

import "testing"

func TestKeys(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want int
	}{{"", 1000}, {"25", 25}, {"0", 1000}, {"-3", 1000}, {"many", 1000}} {
		t.Setenv("GATEHOUSE_BENCH_KEYS", tc.env)
		if got := Keys(1000); got != tc.want {
			t.Errorf("GATEHOUSE_BENCH_KEYS=%q: Keys(1000) = %d, want %d", tc.env, got, tc.want)
		}
	}
}
