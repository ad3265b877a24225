package directory

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// ErrUnavailable means no directory server could be reached or answered
// in time. Its messages never hold the bind password.
var ErrUnavailable = errors.New("directory unavailable")

// errWrongPassword is a bind refused for its credentials.
var errWrongPassword = errors.New("wrong password")

// pool holds idle connections bound as the service account, so that a
// lookup rarely dials; at most 16 stay idle, and at most maxOpen are open
// at once, idle ones included.
type pool struct {
	cfg  Config
	tls  *tls.Config
	idle chan *ldap.Conn
	// open has a place for each open connection.
	open chan struct{}
	// observe records each LDAP operation for the metrics.
	observe func(op string, began time.Time, err error)

	// mu orders put with close: once closed, no connection is parked
	// again, so that one in use when the pool closed (a request of a
	// replaced config still running) is closed, not left open in a pool
	// nobody drains.
	mu     sync.Mutex
	closed bool
	// done is closed with the pool: it ends a wait for a place.
	done chan struct{}

	// failedMu guards failed: when each URL last failed to connect
	// (dialServers tries those that failed within failedFor last).
	failedMu sync.Mutex
	failed   map[string]time.Time
}

// failedFor is how long a URL that could not be connected to is tried
// after the others: a server that hangs would otherwise cost every new
// connection (each password check opens one) a whole timeout before the
// next URL is tried.
const failedFor = 30 * time.Second

// errClosed answers an operation started after the pool closed.
var errClosed = fmt.Errorf("%w: the directory client was closed (its config replaced or stopped)", ErrUnavailable)

func newPool(cfg Config, observe func(string, time.Time, error)) (*pool, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		var err error
		if tc.RootCAs, err = readCAFile(cfg.CAFile); err != nil {
			return nil, err
		}
	}
	return &pool{cfg: cfg, tls: tc, idle: make(chan *ldap.Conn, 16), open: make(chan struct{}, maxOpen), observe: observe,
		done: make(chan struct{})}, nil
}

// readCAFile reads the PEM certificates of ca_file into a pool.
func readCAFile(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file) //nolint:gosec // G304: the operator names the file (ca_file)
	if err != nil {
		return nil, fmt.Errorf("directory: ca_file: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("directory: ca_file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// maxOpen bounds the connections open to the directory at once. Every
// password check is a search and a bind on a fresh connection, so a flood
// of sign-ins (any name will do) would otherwise open connections without
// limit, as many as the requests in flight, against a directory that
// serves every other application too.
const maxOpen = 32

// reserve makes room for one more open connection, waiting at most the
// configured timeout: a free place, or an idle connection, which it
// returns, its place still taken, for the caller to use or to close in
// favour of a new one.
func (p *pool) reserve() (idle *ldap.Conn, err error) {
	if p.isClosed() {
		return nil, errClosed
	}
	select {
	case p.open <- struct{}{}:
		return nil, nil
	default:
	}
	timer := time.NewTimer(time.Duration(p.cfg.Timeout))
	defer timer.Stop()
	select {
	case p.open <- struct{}{}:
		return nil, nil
	case c := <-p.idle:
		return c, nil
	case <-p.done:
		return nil, errClosed
	case <-timer.C:
		return nil, fmt.Errorf("%w: all %d connections to the directory stayed in use for %v", ErrUnavailable, maxOpen, time.Duration(p.cfg.Timeout))
	}
}

// discard closes c and frees its place.
func (p *pool) discard(c *ldap.Conn) {
	c.Close()
	<-p.open
}

// dial opens a new connection (reserve) to the first server that
// answers, in the configured order, and binds it as the service account.
func (p *pool) dial() (*ldap.Conn, error) {
	idle, err := p.reserve()
	if err != nil {
		return nil, err
	}
	if idle != nil {
		idle.Close() // its place is the new connection's
	}
	return p.dialServers()
}

// dialServers connects to the first server that answers, in the
// configured order, and binds it as the service account, in a place
// reserved, which it gives back when none answers.
// A URL that failed within failedFor is tried after the others (still
// tried: when they fail too, it may be back).
func (p *pool) dialServers() (*ldap.Conn, error) {
	var errs []error
	for _, u := range p.order() {
		began := time.Now()
		c, err := p.dialOne(u)
		p.observe("connect", began, err)
		p.failedMu.Lock()
		if err != nil {
			if p.failed == nil {
				p.failed = map[string]time.Time{}
			}
			p.failed[u] = time.Now()
		} else {
			delete(p.failed, u)
		}
		p.failedMu.Unlock()
		if err == nil {
			return c, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
	}
	<-p.open
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
}

// order is the URLs in the configured order, those that failed within
// failedFor last.
func (p *pool) order() []string {
	p.failedMu.Lock()
	defer p.failedMu.Unlock()
	if len(p.failed) == 0 {
		return p.cfg.URLs
	}
	urls := make([]string, 0, len(p.cfg.URLs))
	var later []string
	for _, u := range p.cfg.URLs {
		if at, ok := p.failed[u]; ok && time.Since(at) < failedFor {
			later = append(later, u)
		} else {
			urls = append(urls, u)
		}
	}
	return append(urls, later...)
}

func (p *pool) dialOne(u string) (*ldap.Conn, error) {
	c, err := ldap.DialURL(u, ldap.DialWithDialer(&net.Dialer{Timeout: time.Duration(p.cfg.Timeout)}), ldap.DialWithTLSConfig(p.tls))
	if err != nil {
		return nil, err
	}
	c.SetTimeout(time.Duration(p.cfg.Timeout))
	// StartTLS upgrades the ldap:// servers of the list; an ldaps:// one
	// is TLS already, and refuses it ("ldap: already encrypted").
	if p.cfg.StartTLS && strings.HasPrefix(u, "ldap://") {
		if err := p.startTLS(c, u); err != nil {
			c.Close()
			return nil, fmt.Errorf("starttls: %w", err)
		}
	}
	if err := c.Bind(p.cfg.BindDN, p.cfg.BindPassword); err != nil {
		c.Close()
		return nil, fmt.Errorf("bind as %s: %w", p.cfg.BindDN, scrub(err))
	}
	return c, nil
}

// startTLS upgrades c, dialled to the ldap:// URL u, to TLS: the server's
// certificate is checked against u's host, and the handshake, which
// go-ldap runs without a deadline, is given up (the connection closed)
// after the configured timeout.
func (p *pool) startTLS(c *ldap.Conn, u string) error {
	parsed, err := url.Parse(u)
	if err != nil {
		return err
	}
	tc := p.tls.Clone()
	tc.ServerName = parsed.Hostname()
	done := make(chan error, 1)
	go func() { done <- c.StartTLS(tc) }()
	timer := time.NewTimer(time.Duration(p.cfg.Timeout))
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		c.Close() // ends the handshake, whose error follows
		return fmt.Errorf("no TLS handshake within %v: %w", time.Duration(p.cfg.Timeout), <-done)
	}
}

// scrub drops a server's diagnostic message, which some servers fill
// with what they were sent.
func scrub(err error) error {
	var le *ldap.Error
	if errors.As(err, &le) {
		return fmt.Errorf("LDAP result %d (%s)", le.ResultCode, ldap.LDAPResultCodeMap[le.ResultCode])
	}
	return err
}

// get returns an idle connection, or a new one.
func (p *pool) get() (*ldap.Conn, error) {
	for {
		select {
		case c := <-p.idle:
			if !c.IsClosing() {
				return c, nil
			}
			p.discard(c)
			continue
		default:
		}
		idle, err := p.reserve()
		switch {
		case err != nil:
			return nil, err
		case idle != nil && !idle.IsClosing():
			return idle, nil
		case idle != nil:
			idle.Close() // its place is the new connection's
		}
		return p.dialServers()
	}
}

// put returns a connection bound as the service account to the pool, or
// closes it when the pool is full or closed.
func (p *pool) put(c *ldap.Conn) {
	p.mu.Lock()
	parked := false
	if !p.closed {
		select {
		case p.idle <- c:
			parked = true
		default:
		}
	}
	p.mu.Unlock()
	if !parked {
		p.discard(c)
	}
}

// isClosed reports whether close was called.
func (p *pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// close closes the idle connections and makes every later operation fail
// (errClosed); a connection in use then is closed when it is put back.
func (p *pool) close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
	}
	p.mu.Unlock()
	for {
		select {
		case c := <-p.idle:
			p.discard(c)
		default:
			return
		}
	}
}

// do runs op on a pooled connection; on a network failure it retries once
// on a fresh one (the idle connection may have been dropped by the server
// or belong to a server that went down).
func (p *pool) do(name string, op func(c *ldap.Conn) error) error {
	for try := 0; ; try++ {
		c, err := p.get()
		if err != nil {
			return err
		}
		began := time.Now()
		err = op(c)
		p.observe(name, began, err)
		if err == nil || !isNetworkError(err) {
			if isNetworkError(err) || errors.Is(err, errRebind) {
				p.discard(c)
			} else {
				p.put(c)
			}
			return err
		}
		p.discard(c)
		if try == 1 {
			return fmt.Errorf("%w: %s: %w", ErrUnavailable, name, scrub(err))
		}
	}
}

// errRebind: the connection could not be bound back to the service
// account after a user's bind; it is not reused.
var errRebind = errors.New("directory: rebinding as the service account failed")

func isNetworkError(err error) bool {
	return ldap.IsErrorAnyOf(err, ldap.ErrorNetwork, ldap.LDAPResultServerDown, ldap.LDAPResultTimeout, ldap.LDAPResultUnavailable, ldap.LDAPResultBusy)
}

// search looks for the one entry filter names, on a pooled connection.
// It asks for two entries at most, enough to tell one from several (which
// callers take for none): a filter that matches many is not read past
// them, nor answered with the server's size limit, which a search for
// more entries than the limit meets.
func (p *pool) search(op, base, filter string, attrs []string) ([]*ldap.Entry, error) {
	return p.searchScope(op, base, ldap.ScopeWholeSubtree, 2, filter, attrs)
}

// searchScope is a search in the given scope (ldap.ScopeBaseObject: the
// base entry alone) for at most sizeLimit entries (0: as many as the
// server returns); a server that stops at sizeLimit has answered it.
func (p *pool) searchScope(op, base string, scope, sizeLimit int, filter string, attrs []string) ([]*ldap.Entry, error) {
	var entries []*ldap.Entry
	err := p.do(op, func(c *ldap.Conn) error {
		res, err := c.Search(ldap.NewSearchRequest(base, scope, ldap.NeverDerefAliases, sizeLimit,
			int(time.Duration(p.cfg.Timeout)/time.Second), false, filter, attrs, nil))
		if sizeLimit > 0 && ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) && res != nil && len(res.Entries) >= sizeLimit {
			err = nil
		}
		if err != nil {
			return err
		}
		entries = res.Entries
		return nil
	})
	return entries, err
}

// groupsPageSize is how many entries a page of searchPaged holds: below
// Active Directory's MaxPageSize (1000) and OpenLDAP's default size limit
// (500).
const groupsPageSize = 250

// searchPaged is search for every entry filter finds, a page at a time
// (RFC 2696), for searches that may find more entries than the server
// returns at once (Active Directory's MaxPageSize). The server's limit on
// the entries of a whole paged search (OpenLDAP's size.prtotal, by
// default its hard size limit) still holds: past it the search fails
// (limitAdvice). A paged search the server refuses (slapd's
// size.prtotal=disabled: adminLimitExceeded, "pagedResults control not
// allowed") is made again without paging, which gets the entries within
// the size limit: all of them, for most accounts.
func (p *pool) searchPaged(op, base, filter string, attrs []string) ([]*ldap.Entry, error) {
	request := func() *ldap.SearchRequest {
		return ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0,
			int(time.Duration(p.cfg.Timeout)/time.Second), false, filter, attrs, nil)
	}
	var entries []*ldap.Entry
	err := p.do(op, func(c *ldap.Conn) error {
		res, err := c.SearchWithPaging(request(), groupsPageSize)
		if ldap.IsErrorWithCode(err, ldap.LDAPResultAdminLimitExceeded) && (res == nil || len(res.Entries) == 0) {
			res, err = c.Search(request())
		}
		if err != nil {
			return err
		}
		entries = res.Entries
		return nil
	})
	return entries, err
}

// bind checks password by a bind as dn, then binds the connection back as
// the service account. An empty password is refused here: LDAP takes it
// as an unauthenticated bind, which succeeds. The bind goes on a fresh
// connection and is never sent twice: one that fails on the way may have
// reached the directory and counted against its lockout (ErrIndeterminate),
// and a fresh connection leaves no dropped idle one to retry for.
func (p *pool) bind(dn, password string) error {
	if password == "" {
		return errWrongPassword
	}
	c, err := p.dial()
	if err != nil {
		return err // nothing sent
	}
	began := time.Now()
	err = refusedCredentials(c.Bind(dn, password))
	if !isNetworkError(err) {
		if rebind := c.Bind(p.cfg.BindDN, p.cfg.BindPassword); rebind != nil {
			// Whatever the user's bind answered, the connection is no
			// longer the service account's: never pooled again.
			err = errors.Join(err, errRebind)
		}
	}
	p.observe("bind", began, err)
	switch {
	case isNetworkError(err):
		p.discard(c)
		return fmt.Errorf("%w: %w: bind: %w", ErrUnavailable, ErrIndeterminate, scrub(err))
	case errors.Is(err, errRebind):
		p.discard(c)
	default:
		p.put(c)
	}
	return err
}

// refusedCredentials is err of a bind, with invalidCredentials made
// errWrongPassword, or the adRefusal Active Directory's diagnostic
// message names; nothing else of that message is kept (scrub).
func refusedCredentials(err error) error {
	var le *ldap.Error
	if !errors.As(err, &le) || le.ResultCode != ldap.LDAPResultInvalidCredentials {
		return err
	}
	if le.Err != nil {
		if m := adDataCode.FindStringSubmatch(le.Err.Error()); m != nil && adBindRefusals[strings.ToLower(m[1])] != "" {
			return adRefusal(strings.ToLower(m[1]))
		}
	}
	return errWrongPassword
}

// ErrIndeterminate marks a bind that failed on the way: the directory may
// have checked the password, and counted a wrong one.
var ErrIndeterminate = errors.New("directory: the bind may have reached the directory")
