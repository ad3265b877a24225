package budget

import "testing"

func TestAccountsChargeTheirBudget(t *testing.T) {
	b := New(100)
	x, y := b.Account(), b.Account()
	x.Charge(60)
	y.Charge(30)
	if x.Used()+y.Used() != 90 || x.Used() != 60 || y.Used() != 30 || b.Over() || !b.Nearly() {
		t.Fatalf("used %d and %d, over %v, nearly %v", x.Used(), y.Used(), b.Over(), b.Nearly())
	}
	y.Charge(20)
	if !b.Over() || !x.Over() || x.Limit() != 100 {
		t.Fatalf("110 of 100 charged: over %v, limit %d", b.Over(), x.Limit())
	}
	x.Charge(-60)
	if x.Used()+y.Used() != 50 || b.Over() || b.Nearly() || x.Over() {
		t.Fatalf("after a release: used %d and %d, over %v, nearly %v", x.Used(), y.Used(), b.Over(), b.Nearly())
	}
	var none *Account // a cache bounded otherwise
	none.Charge(5)
	if none.Used() != 0 || none.Limit() != 0 || none.Nearly() || none.Over() {
		t.Fatal("a nil account counted")
	}
}
