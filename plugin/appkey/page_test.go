package appkey

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
)

// TestKeyListPages: GET /gatehouse/appkeys answers every key without a
// limit (no Link); with ?limit= a page at a time in name order, the next
// offered in a Link header until the last, together the whole list;
// ?prefix= narrows it, with ?username= too; a bad limit is a 400.
func TestKeyListPages(t *testing.T) {
	f := newFixture(t)
	var all []string
	for i := range 23 {
		name, user := fmt.Sprintf("k-%02d", i), "alice"
		if i%2 == 1 {
			user = "boss"
		}
		if i >= 20 {
			name = fmt.Sprintf("z-%02d", i)
		}
		if code := f.call("POST", "/gatehouse/appkeys", `{"name":"`+name+`","username":"`+user+`"}`, nil); code != http.StatusCreated {
			t.Fatalf("creating %s: %d", name, code)
		}
		all = append(all, name)
	}
	list := func(path string) ([]string, string) {
		t.Helper()
		views, link := f.listPage(t, path)
		names := []string{}
		for _, v := range views {
			names = append(names, v.Name)
		}
		next := ""
		if link != "" {
			target, rel, _ := strings.Cut(link, ";")
			if strings.TrimSpace(rel) != `rel="next"` {
				t.Fatalf("Link %q", link)
			}
			next = strings.Trim(target, "<>")
		}
		return names, next
	}
	if got, next := list("/gatehouse/appkeys"); !slices.Equal(got, all) || next != "" {
		t.Fatalf("the whole list: %v, next %q; want every key, no Link", got, next)
	}
	var paged []string
	for next := "/gatehouse/appkeys?limit=5"; next != ""; {
		var got []string
		got, next = list(next)
		if len(got) > 5 {
			t.Fatalf("%d keys on a page of 5", len(got))
		}
		paged = append(paged, got...)
	}
	if !slices.Equal(paged, all) {
		t.Fatalf("pages of 5 = %v; want %v", paged, all)
	}
	if got, next := list("/gatehouse/appkeys?prefix=z-"); !slices.Equal(got, all[20:]) || next != "" {
		t.Fatalf("prefix=z-: %v, next %q", got, next)
	}
	if got, next := list("/gatehouse/appkeys?username=alice&prefix=k-&limit=3&after=k-04"); !slices.Equal(got, []string{"k-06", "k-08", "k-10"}) || !strings.Contains(next, "after=k-10") || !strings.Contains(next, "username=alice") {
		t.Fatalf("alice's k- keys after k-04, 3: %v, next %q", got, next)
	}
	if got, next := list("/gatehouse/appkeys?username=alice&limit=3&after=k-16"); !slices.Equal(got, []string{"k-18", "z-20", "z-22"}) || next != "" {
		t.Fatalf("alice's last page: %v, next %q", got, next)
	}
	for _, bad := range []string{"limit=0", "limit=10001", "limit=x"} {
		if code := f.call("GET", "/gatehouse/appkeys?"+bad, "", nil); code != http.StatusBadRequest {
			t.Errorf("?%s: %d; want 400", bad, code)
		}
	}
}

// TestWholeListReadsRecordsInOneScan: the whole key list reads every
// key's record in one scan, not with one read a key (two thirds of its
// time at 100 000 keys): it answers with point reads failing, a rotated
// key's record found past its rotation stub.
func TestWholeListReadsRecordsInOneScan(t *testing.T) {
	f := newFixture(t)
	want := f.createKeysRotatingOne(t, 12, "k-03")
	f.backend.Down.Store(true) // Get, GetEntry and GetMany fail; scans go on
	defer f.backend.Down.Store(false)
	var views []View
	if code := f.call("GET", "/gatehouse/appkeys", "", &views); code != http.StatusOK {
		t.Fatalf("the whole list with point reads failing: %d", code)
	}
	var got []string
	for _, v := range views {
		got = append(got, v.Name)
		if v.Name == "k-03" && v.PreviousKeyValidUntil == nil {
			t.Errorf("k-03 listed without its rotation's grace: %+v", v)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("listed %v; want %v", got, want)
	}
}

// TestKeyPageReadsRecordsTogether: a page of the key list reads its
// keys' records and last uses together (GetMany: one round trip each on
// Redis), not one key at a time (two round trips a key): it answers
// with point reads failing, in name order, a rotated key's record found
// past its rotation stub, the next page offered.
func TestKeyPageReadsRecordsTogether(t *testing.T) {
	f := newFixtureFailing(t, enginetest.CallGet|enginetest.CallGetEntry)
	want := f.createKeysRotatingOne(t, 8, "k-01")
	names := func(views []View) []string {
		var out []string
		for _, v := range views {
			out = append(out, v.Name)
		}
		return out
	}
	// The rotated key's record is read past its stub, on its own.
	if views, link := f.listPage(t, "/gatehouse/appkeys?limit=3"); !slices.Equal(names(views), want[:3]) || views[1].PreviousKeyValidUntil == nil || !strings.Contains(link, "after=k-02") {
		t.Fatalf("the first page: %v, link %q; want %v, k-01 with its grace", names(views), link, want[:3])
	}
	f.backend.Down.Store(true) // Get and GetEntry fail; GetMany and scans go on
	defer f.backend.Down.Store(false)
	if views, link := f.listPage(t, "/gatehouse/appkeys?limit=3&after=k-02"); !slices.Equal(names(views), want[3:6]) || !strings.Contains(link, "after=k-05") {
		t.Fatalf("a page with point reads failing: %v, link %q; want %v and a next page", names(views), link, want[3:6])
	}
	if views, link := f.listPage(t, "/gatehouse/appkeys?prefix=k-0&after=k-05"); !slices.Equal(names(views), want[6:]) || link != "" {
		t.Fatalf("the last page with point reads failing: %v, link %q; want %v", names(views), link, want[6:])
	}
}

// createKeysRotatingOne creates n keys of alice, k-00 to k-<n-1>, rotates
// the one named rotated with a minute's grace, and returns their names.
func (f *fixture) createKeysRotatingOne(t *testing.T, n int, rotated string) []string {
	t.Helper()
	var names []string
	for i := range n {
		name := fmt.Sprintf("k-%02d", i)
		if code := f.call("POST", "/gatehouse/appkeys", `{"name":"`+name+`","username":"alice"}`, nil); code != http.StatusCreated {
			t.Fatalf("creating %s: %d", name, code)
		}
		names = append(names, name)
	}
	if code := f.call("POST", "/gatehouse/appkeys/"+rotated+"/rotate", `{"grace_seconds":60}`, nil); code != http.StatusOK {
		t.Fatalf("rotating %s: %d", rotated, code)
	}
	return names
}

// listPage GETs path, a page of the key list, and returns its keys and
// its Link header.
func (f *fixture) listPage(t *testing.T, path string) ([]View, string) {
	t.Helper()
	w := httptest.NewRecorder()
	f.admin.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
	var views []View
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), &views); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return views, w.Header().Get("Link")
}
