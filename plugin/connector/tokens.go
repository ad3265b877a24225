package connector

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
	"unsafe"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/internal/reccodec"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// Token values: a kind prefix and 256 random bits in base64url. The prefix
// lets secret scanners recognise a leaked token and keeps an access token
// from being mistaken for a refresh token.
const (
	accessTokenPrefix  = "gct_"
	refreshTokenPrefix = "gcr_"
	tokenRandomBytes   = 32
	tokenLength        = 4 + (tokenRandomBytes*8+5)/6 // prefix + unpadded base64url
	tokenIDBytes       = 12
	// maxRefreshChain bounds how far reuse detection follows a chain of
	// refreshes to the live pair.
	maxRefreshChain = 1000
)

// Grant types of the token endpoint.
const (
	GrantCertificate  = "certificate"
	GrantRefreshToken = "refresh_token"
)

// newToken returns a fresh token with the given prefix and its digest.
func newToken(prefix string) (token, digest string) {
	var b [tokenRandomBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("connector: crypto/rand failed: " + err.Error())
	}
	token = prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return token, tokenDigest(token)
}

// tokenDigest is the store name of a token: hex SHA-256 of its value. A
// 256-bit random token needs no salt or key: the digest reveals nothing.
func tokenDigest(token string) string {
	var digest [2 * sha256.Size]byte
	tokenDigestInto(&digest, token)
	return string(digest[:])
}

// tokenDigestInto writes tokenDigest(token) into digest, without
// allocating: the data plane looks a token up by it on every request.
func tokenDigestInto(digest *[2 * sha256.Size]byte, token string) {
	// A view of the token's bytes, which Sum256 only reads: []byte(token)
	// would copy a token of more than 32 bytes to the heap.
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token))) //nolint:gosec // G103: read only
	hex.Encode(digest[:], sum[:])
}

func newTokenID() string {
	var b [tokenIDBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("connector: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// validTokenID reports whether id has the shape newTokenID produces.
func validTokenID(id string) bool {
	if len(id) != 2*tokenIDBytes {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// parseToken reports whether s has the shape of a token with prefix: the
// prefix and exactly 43 base64url characters, the last of which carries
// two zero padding bits (so each token has exactly one spelling). It does
// not say whether the token exists.
func parseToken(s, prefix string) bool {
	if len(s) != tokenLength || !strings.HasPrefix(s, prefix) {
		return false
	}
	var v byte
	for i := len(prefix); i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z':
			v = c - 'A'
		case 'a' <= c && c <= 'z':
			v = c - 'a' + 26
		case '0' <= c && c <= '9':
			v = c - '0' + 52
		case c == '-':
			v = 62
		case c == '_':
			v = 63
		default:
			return false
		}
	}
	return v&3 == 0
}

// bearerToken returns the access token of an "Authorization: Bearer …"
// header value (RFC 6750; scheme matched case-insensitively), or false
// when the value is not a bearer credential of this shape.
func bearerToken(h string) (string, bool) {
	token, ok := bearerPayload(h)
	if !ok || !parseToken(token, accessTokenPrefix) {
		return "", false
	}
	return token, true
}

// bearerPayload returns what follows "Bearer " in h.
func bearerPayload(h string) (string, bool) {
	const scheme = "bearer "
	if len(h) < len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	return strings.TrimLeft(h[len(scheme):], " "), true
}

// issued is the answer of a successful token request.
type issued struct {
	access, refresh string
	meta            tokenMeta
}

// newPair builds a token pair for conn, valid for lifetime from now and
// until the account's token epoch moves on from epoch, and the store
// writes that create it.
func newPair(conn *Connector, grant string, epoch uint64, now time.Time, lifetime time.Duration) (issued, []storage.Op) {
	access, accessDigest := newToken(accessTokenPrefix)
	refresh, refreshDigest := newToken(refreshTokenPrefix)
	meta := tokenMeta{ID: newTokenID(), Connector: conn.Name, Username: conn.Username, Grant: grant,
		X5tS256: conn.thumbprint, IssuedAt: now.UTC(), ExpiresAt: now.Add(lifetime).UTC(), AccessDigest: accessDigest, RefreshDigest: refreshDigest}
	rec := tokenRecord{Kind: kindAccess, ID: meta.ID, Connector: conn.Name, Username: conn.Username,
		UserID: conn.UserID, X5tS256: conn.thumbprint, IssuedAt: reccodec.Stamp(meta.IssuedAt), ExpiresAt: reccodec.Stamp(meta.ExpiresAt),
		TokenEpoch: epoch}
	accessRaw := rec.encode()
	rec.Kind, rec.AccessDigest = kindRefresh, accessDigest
	refreshRaw := rec.encode()
	metaRaw, _ := json.Marshal(&meta)
	ops := []storage.Op{
		{Kind: storage.OpPut, Key: tokenKey(accessDigest), Value: accessRaw, TTL: lifetime},
		{Kind: storage.OpPut, Key: tokenKey(refreshDigest), Value: refreshRaw, TTL: lifetime},
		{Kind: storage.OpPut, Key: tokenIDKey(meta.ID), Value: []byte(conn.Name), TTL: lifetime},
		{Kind: storage.OpPut, Key: connTokenKey(conn.Name, meta.ID), Value: metaRaw, TTL: lifetime},
	}
	return issued{access: access, refresh: refresh, meta: meta}, ops
}

// pairDeletes are the writes that revoke the pair described by meta.
func pairDeletes(m *tokenMeta) []storage.Op {
	return []storage.Op{
		{Kind: storage.OpDelete, Key: tokenKey(m.AccessDigest)},
		{Kind: storage.OpDelete, Key: tokenKey(m.RefreshDigest)},
		{Kind: storage.OpDelete, Key: tokenIDKey(m.ID)},
		{Kind: storage.OpDelete, Key: connTokenKey(m.Connector, m.ID)},
	}
}

// pairsPerBatch is how many token pairs one batch revokes.
const pairsPerBatch = 128

// MaxLivePairs bounds the live token pairs of one connector: a
// certificate grant beyond it revokes the oldest, so that a connector
// asking in a loop (or whoever holds its key) cannot grow the store and
// the token listing without end. A refresh replaces its pair and counts
// nothing.
const MaxLivePairs = 100

// issueForCertificate creates a token pair for conn, whose account is u,
// with one durable batch, and then revokes the connector's oldest pairs
// beyond MaxLivePairs (a failure there is logged: the pair is issued).
func (p *Plugin) issueForCertificate(ctx context.Context, conn *Connector, u *account.User) (issued, error) {
	out, ops := newPair(conn, GrantCertificate, u.TokenEpoch, p.now(), p.engine.Config.TokenLifetime)
	if err := p.engine.Store.Batch(ctx, ops); err != nil {
		return issued{}, err
	}
	if err := p.trimPairs(ctx, conn.Name, out.meta.ID); err != nil {
		p.engine.LogFailure("revoking a connector's token pairs beyond the most it may hold", err)
	}
	return out, nil
}

// trimPairs revokes the oldest token pairs of connector beyond
// MaxLivePairs, never the pair keep (the one just issued).
func (p *Plugin) trimPairs(ctx context.Context, connector, keep string) error {
	metas, err := p.scanTokens(ctx, connTokenScanPrefix(connector))
	if err != nil || len(metas) <= MaxLivePairs {
		return err
	}
	slices.SortFunc(metas, func(a, b tokenMeta) int {
		return cmp.Or(a.IssuedAt.Compare(b.IssuedAt), strings.Compare(a.ID, b.ID))
	})
	var ops []storage.Op
	pairs := 0
	for i, live := 0, len(metas); i < len(metas) && live > MaxLivePairs; i++ {
		if metas[i].ID == keep {
			continue
		}
		ops = append(ops, pairDeletes(&metas[i])...)
		live--
		if pairs++; pairs == pairsPerBatch { // more than a batch: a store from before the bound
			if err := p.engine.Store.Batch(ctx, ops); err != nil {
				return err
			}
			ops, pairs = ops[:0], 0
		}
	}
	if len(ops) == 0 {
		return nil
	}
	return p.engine.Store.Batch(ctx, ops)
}

// refresh exchanges a refresh token of conn, whose account is u, for a
// new pair; a refresh token issued before a block of the account is
// refused, so that the connector asks for a new pair with its
// certificate. The exchange
// is single-use: a compare-and-swap turns the refresh record into a "used"
// record naming its successor, and only then is the new pair written (with
// the old access token deleted in the same batch). A used refresh token
// presented again revokes the pair issued in exchange for it (OAuth 2.0
// security BCP, refresh token reuse detection).
func (p *Plugin) refresh(ctx context.Context, conn *Connector, u *account.User, token string) (issued, error) {
	if !parseToken(token, refreshTokenPrefix) {
		return issued{}, invalidGrant("the refresh token is malformed")
	}
	key := tokenKey(tokenDigest(token))
	var out issued
	err := storage.Retry(func() (bool, error) {
		raw, err := p.engine.Store.Get(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			return false, invalidGrant("the refresh token is unknown, expired or revoked")
		}
		if err != nil {
			return false, err
		}
		old, err := decodeTokenRecord(raw)
		if err != nil {
			return false, fmt.Errorf("decoding token record: %w", err)
		}
		if old.Connector != conn.Name || old.X5tS256 != conn.thumbprint {
			return false, invalidGrant("the refresh token was issued to another certificate")
		}
		now := p.now()
		switch {
		case old.Kind == kindUsed:
			n, err := p.revokeSuccessors(ctx, old.Successor)
			if err != nil {
				return false, err
			}
			refused := invalidGrant("the refresh token was already used; the tokens issued in exchange for it are revoked")
			refused.revoked = n > 0
			return false, refused
		case old.Kind != kindRefresh:
			return false, invalidGrant("the token is not a refresh token")
		case !now.Before(old.ExpiresAt):
			return false, invalidGrant("the refresh token expired")
		case old.TokenEpoch != u.TokenEpoch:
			return false, invalidGrant("the account was blocked after the refresh token was issued; request a new pair with the certificate")
		}
		// The new pair is written before the old refresh token is marked
		// used, so that a reuse racing this exchange, once it sees the
		// mark, finds the pair to revoke; a pair whose exchange then loses
		// the race was never handed out and is taken back.
		var ops []storage.Op
		out, ops = newPair(conn, GrantRefreshToken, u.TokenEpoch, now, p.engine.Config.TokenLifetime)
		if err := p.engine.Store.Batch(ctx, ops); err != nil {
			return false, err
		}
		used := *old
		used.Kind, used.AccessDigest, used.Successor = kindUsed, "", out.meta.RefreshDigest
		swapped, err := p.engine.Store.CompareAndSwap(ctx, key, raw, used.encode(), old.ExpiresAt.Sub(now))
		if err != nil || !swapped {
			// Lost to a concurrent exchange: look again (and see the reuse).
			// The pair is unknown to anyone; taken back at best effort, it
			// expires anyway.
			_ = p.engine.Store.Batch(ctx, pairDeletes(&out.meta))
			return false, err
		}
		return true, p.engine.Store.Batch(ctx, []storage.Op{
			{Kind: storage.OpDelete, Key: tokenKey(old.AccessDigest)},
			{Kind: storage.OpDelete, Key: tokenIDKey(old.ID)},
			{Kind: storage.OpDelete, Key: connTokenKey(old.Connector, old.ID)}})
	})
	if errors.Is(err, storage.ErrConflict) {
		return issued{}, invalidGrant("the refresh token is being used concurrently")
	}
	if err != nil {
		return issued{}, err
	}
	return out, nil
}

// revokeSuccessors follows the chain of refreshes that started with the
// refresh token whose digest is next and revokes the live pair at its end.
// It returns the number of pairs revoked. The live refresh token's record
// is deleted only while it is still live (a compare-and-swap): an exchange
// of it racing the revocation either finds it gone, or marked it used
// first, and then the revocation follows the mark to the pair it issued.
func (p *Plugin) revokeSuccessors(ctx context.Context, next string) (int, error) {
	for range maxRefreshChain {
		if next == "" {
			return 0, nil
		}
		raw, err := p.engine.Store.Get(ctx, tokenKey(next))
		if errors.Is(err, storage.ErrNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		rec, err := decodeTokenRecord(raw)
		if err != nil {
			return 0, fmt.Errorf("decoding token record: %w", err)
		}
		if rec.Kind == kindUsed {
			next = rec.Successor
			continue
		}
		deleted, err := p.engine.Store.CompareAndSwap(ctx, tokenKey(next), raw, nil, 0)
		switch {
		case err != nil:
			return 0, err
		case !deleted:
			continue // exchanged (or revoked) meanwhile: read it again
		}
		return p.revokePair(ctx, rec.Connector, rec.ID)
	}
	return 0, nil
}

// revokePair deletes token pair id of connector; 0 when it is gone already.
func (p *Plugin) revokePair(ctx context.Context, connector, id string) (int, error) {
	raw, err := p.engine.Store.Get(ctx, connTokenKey(connector, id))
	if errors.Is(err, storage.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var m tokenMeta
	if err := json.Unmarshal(raw, &m); err != nil {
		return 0, fmt.Errorf("decoding token metadata: %w", err)
	}
	return 1, p.engine.Store.Batch(ctx, pairDeletes(&m))
}

// revokeConnectorTokens revokes the token pairs issued through connector,
// except those bound to the certificate whose thumbprint is keep (none
// when keep is empty), reading only that connector's index.
func (p *Plugin) revokeConnectorTokens(ctx context.Context, connector, keep string) (int, error) {
	all, err := p.scanTokens(ctx, connTokenScanPrefix(connector))
	if err != nil {
		return 0, err
	}
	metas := all[:0]
	for _, m := range all {
		if keep == "" || m.X5tS256 != keep {
			metas = append(metas, m)
		}
	}
	for start := 0; start < len(metas); start += pairsPerBatch {
		var ops []storage.Op
		for i := start; i < len(metas) && i < start+pairsPerBatch; i++ {
			ops = append(ops, pairDeletes(&metas[i])...)
		}
		if err := p.engine.Store.Batch(ctx, ops); err != nil {
			return start, err
		}
	}
	return len(metas), nil
}

func (p *Plugin) scanTokens(ctx context.Context, prefix string) ([]tokenMeta, error) {
	var out []tokenMeta
	err := p.engine.Store.Scan(ctx, prefix, func(e storage.Entry) error {
		var m tokenMeta
		if err := json.Unmarshal(e.Value, &m); err != nil {
			return fmt.Errorf("decoding %s: %w", e.Key, err)
		}
		out = append(out, m)
		return nil
	})
	return out, err
}

// TokenView is what the admin API shows of a token pair: metadata only.
type TokenView struct {
	// ID identifies the pair (not a secret); DELETE /gatehouse/tokens/{id} revokes it.
	ID string `json:"id"`
	// Connector is the connector the pair was issued to.
	Connector string `json:"connector"`
	// Username is the account the connector acts as.
	Username string `json:"username"`
	// Grant is how the pair was obtained: "certificate" or "refresh_token".
	Grant string `json:"grant"`
	// IssuedAt is when it was issued.
	IssuedAt time.Time `json:"issued_at"`
	// ExpiresAt is when both tokens of the pair expire.
	ExpiresAt time.Time `json:"expires_at"`
}

func (m *tokenMeta) view() TokenView {
	return TokenView{ID: m.ID, Connector: m.Connector, Username: m.Username, Grant: m.Grant,
		IssuedAt: m.IssuedAt, ExpiresAt: m.ExpiresAt}
}

// ListTokens returns the live token pairs, newest first, optionally only
// those of one connector and/or one user.
func (p *Plugin) ListTokens(ctx context.Context, connector, username string) ([]TokenView, error) {
	out, _, err := p.ListTokensPage(ctx, connector, username, "", 0)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].IssuedAt.After(out[j].IssuedAt) })
	return out, nil
}

// TokenPageKey is where a token pair stands in the pages of
// ListTokensPage: its connector and ID, "connector/id" (the order of the
// store's index of pairs, and the after of the admin API's next page).
func TokenPageKey(v TokenView) string { return v.Connector + "/" + v.ID }

// ListTokensPage is the live token pairs (of connector and/or username
// when given) in TokenPageKey order, not newest first: those after the
// key after (all when it is empty), at most limit of them (0: no
// bound), and whether more follow the last one returned. The store's
// index is read from after on, and only until the page is full.
func (p *Plugin) ListTokensPage(ctx context.Context, connector, username, after string, limit int) ([]TokenView, bool, error) {
	prefix := connTokenPrefix
	if connector != "" {
		prefix = connTokenScanPrefix(connector)
	}
	now := p.now()
	out, more := []TokenView{}, false
	err := storage.ScanFrom(ctx, p.engine.Store, prefix, storage.KeyAfter(connTokenPrefix, after), func(e storage.Entry) error {
		var m tokenMeta
		if err := json.Unmarshal(e.Value, &m); err != nil {
			return fmt.Errorf("decoding %s: %w", e.Key, err)
		}
		if (username != "" && m.Username != username) || !now.Before(m.ExpiresAt) {
			return nil
		}
		if limit > 0 && len(out) == limit {
			more = true
			return storage.ErrStopScan
		}
		out = append(out, m.view())
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return out, more, nil
}

// RevokeToken revokes token pair id; a 404 failure when there is none.
func (p *Plugin) RevokeToken(ctx context.Context, id string) (*TokenView, error) {
	if !validTokenID(id) {
		return nil, failure.NotFound("token %q not found", id)
	}
	connector, err := p.engine.Store.Get(ctx, tokenIDKey(id))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, failure.NotFound("token %q not found", id)
	}
	if err != nil {
		return nil, err
	}
	raw, err := p.engine.Store.Get(ctx, connTokenKey(string(connector), id))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, failure.NotFound("token %q not found", id)
	}
	if err != nil {
		return nil, err
	}
	var m tokenMeta
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decoding token metadata: %w", err)
	}
	if err := p.engine.Store.Batch(ctx, pairDeletes(&m)); err != nil {
		return nil, err
	}
	v := m.view()
	return &v, nil
}
