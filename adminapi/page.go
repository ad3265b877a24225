package adminapi

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/gatehouse-auth/gatehouse/failure"
)

// MaxPageLimit is the most entries one page of a listing holds (the
// limit query parameter of GET /gatehouse/users, …/appkeys,
// …/connectors).
const MaxPageLimit = 10000

// PageQuery names the query parameters a paged listing reads, for
// Route.Query: limit (entries a page) and after (the name the previous
// page ended with).
var PageQuery = []string{"limit", "after"}

// Page is the part of a listing one call asks for: the entries after
// After in name order (all when it is empty), at most Limit of them (no
// bound when it is zero: the whole listing, as before there were pages).
type Page struct {
	// After is the name the previous page ended with.
	After string
	// Limit bounds the entries answered; 0 answers every one.
	Limit int
}

// ReadPage reads the page r asks for: limit, a whole number from 1 to
// MaxPageLimit (400 otherwise), and after.
func ReadPage(r *http.Request) (Page, error) {
	q := r.URL.Query()
	p := Page{After: q.Get("after")}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageLimit {
			return Page{}, failure.Invalid("limit must be a whole number from 1 to %d", MaxPageLimit)
		}
		p.Limit = n
	}
	return p, nil
}

// SetNext offers the next page of the listing r asked for, the entries
// after the name last: a Link header (RFC 8288) with rel="next" naming
// r's own path and query, its after set to last. A listing whose page
// is its end sets none.
func SetNext(w http.ResponseWriter, r *http.Request, last string) {
	q := r.URL.Query()
	q.Set("after", last)
	next := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
	w.Header().Set("Link", "<"+next.String()+`>; rel="next"`)
}
