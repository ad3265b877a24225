package budget

import "testing"

func TestAccountsChargeTheirBudget(t *testing.T) {
	b := New(100)
	x, y := b.Account(), b.Account()
	x.Charge(60)
	y.Charge(30)
	if b.Used() != 90 || x.Used() != 60 || y.Used() != 30 || b.Over() || !b.Nearly() {
		t.Fatalf("used %d (%d, %d), over %v, nearly %v", b.Used(), x.Used(), y.Used(), b.Over(), b.Nearly())
	}
	y.Charge(20)
	if !b.Over() || x.Limit() != 100 {
		t.Fatalf("110 of 100 charged: over %v, limit %d", b.Over(), x.Limit())
	}
	x.Charge(-60)
	if b.Used() != 50 || b.Over() || b.Nearly() {
		t.Fatalf("after a release: used %d, over %v, nearly %v", b.Used(), b.Over(), b.Nearly())
	}
	var none *Account // a cache bounded otherwise
	none.Charge(5)
	if none.Used() != 0 || none.Limit() != 0 || none.Nearly() {
		t.Fatal("a nil account counted")
	}
}
