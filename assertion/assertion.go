// Package assertion produces the signed identity assertion Gatehouse
// forwards upstream in X-Gatehouse-Assertion: a compact JWS (ES256) of
// {iss, sub, roles, amr, aud, iat, exp}, verifiable with the JWKS the data
// plane publishes at /.well-known/gatehouse/jwks.json.
//
// The signing key is generated once, sealed with the keystore and kept in
// the store, so restarts and every instance of a cluster share it; Follow
// keeps a running instance's key and the store's the same when the store
// loses it. Signing is not done per request: an assertion is reused for
// the same identity and audience for the first half of its lifetime.
package assertion

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"math/big"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/identity"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// StoreKey is where the sealed signing key is kept; its presence tells that
// the store holds data sealed with the keystore.
const StoreKey = "assertion/signing-key"

// Claims is the payload of an assertion.
type Claims struct {
	// Issuer is the iss claim: the configured issuer name.
	Issuer string `json:"iss"`
	// Subject is the sub claim: the authenticated account's username.
	Subject string `json:"sub"`
	// Roles are the account's role names; never null, empty when none.
	Roles []string `json:"roles"`
	// AMR is the amr claim: the authentication methods used, as RFC 8176
	// registers them (see AMR); never null.
	AMR []string `json:"amr"`
	// Auth is the auth claim: Gatehouse's credential kind (basic,
	// connector, app_key or session), as in the X-Gatehouse-Auth header.
	Auth string `json:"auth"`
	// Audience is the aud claim: the route's configured audience.
	Audience string `json:"aud"`
	// HTTPMethod is the htm claim (RFC 9449's name for it): the method of
	// the request the assertion was forwarded with. An upstream that can
	// be reached another way compares it with its own request's method, so
	// that an assertion forwarded with a GET does not pass with a DELETE.
	HTTPMethod string `json:"htm"`
	// IssuedAt is the iat claim, in Unix seconds.
	IssuedAt int64 `json:"iat"`
	// Expiry is the exp claim, in Unix seconds: IssuedAt plus the
	// assertion lifetime.
	Expiry int64 `json:"exp"`
}

type storedKey struct {
	KeyID  string `json:"kid"`
	Sealed []byte `json:"sealed_d"`
}

// reused is a signed assertion kept for reuse, with what it was signed
// for: a lookup compares all of it, so two identities sharing a slot
// never get each other's assertion.
type reused struct {
	username, audience string
	httpMethod         string
	method             identity.Method
	viaAppKey          bool // a session an app key opened (its amr differs)
	secondFactor       bool
	roles              []string
	token              string
	// key signed token: once the signer signs with another, the
	// assertion is signed again rather than reused.
	key *signingKey
	// signedAt and refreshAt bound when the assertion is reused, on the
	// wall clock its iat and exp claims count (no monotonic reading): a
	// clock stepped forward past refreshAt, or back before signedAt, has
	// it signed again rather than reused expired or not yet issued.
	signedAt, refreshAt time.Time
}

// fresh reports whether r may be reused at now (a wall-clock time).
func (r *reused) fresh(now time.Time) bool {
	return !now.Before(r.signedAt) && now.Before(r.refreshAt)
}

// matches reports whether r was signed for id and audience.
func (r *reused) matches(id *identity.Identity, audience, httpMethod string) bool {
	return r.username == id.Username && r.audience == audience && r.httpMethod == httpMethod && r.method == id.Method &&
		r.viaAppKey == (id.AppKey != "") && r.secondFactor == id.SecondFactor && slices.Equal(r.roles, id.Roles)
}

// reuseSlots is the number of assertions kept for reuse (a power of
// two), in buckets of reuseWays slots: a hash of what was signed picks
// the bucket, and a new assertion takes a free slot of it or the one
// due soonest for refreshing. A hit takes no lock and allocates nothing.
// (With half as many slots, one per hash, 10 000 users left about a
// fifth of them sharing a slot with another and signing again on nearly
// every request: BenchmarkAssertionManyUsers took 5.5 µs a request; it
// takes 0.5 now. 64 Ki slots hold 512 KiB of pointers.)
const (
	reuseSlots = 1 << 16
	reuseWays  = 4
)

// Signer signs assertions and publishes its public key.
type Signer struct {
	keys     atomic.Pointer[keySet]
	store    storage.Store
	ks       *keystore.Keystore
	issuer   string
	lifetime time.Duration
	reuse    []atomic.Pointer[reused]
	seed     maphash.Seed
	now      func() time.Time
}

// signingKey is a key the signer signs with.
type signingKey struct {
	key *ecdsa.PrivateKey
	id  string // the kid
	// record is the key's sealed record as the store held it, written
	// back by Follow when the store lost it.
	record []byte
	// header is the JWS header naming it, base64url-encoded.
	header string
	// jwk is its public key as a JWKS lists it.
	jwk map[string]string
}

// keySet is what the signer signs with and publishes, replaced whole
// when it adopts the store's key (Follow).
type keySet struct {
	current *signingKey
	// retired is the key the signer signed with before current, listed
	// in the JWKS until retiredUntil so that the assertions it signed
	// still verify until they expire; nil when there is none.
	retired      *signingKey
	retiredUntil time.Time
	// jwks lists current and retired, jwksCurrent current alone.
	jwks, jwksCurrent []byte
}

// retiredMargin is how long a retired key stays in the JWKS beyond the
// assertion lifetime: for upstreams whose clocks are behind, which accept
// an assertion that long past its exp.
const retiredMargin = time.Minute

// MinLifetime is the shortest assertion lifetime. The exp claim counts
// whole seconds, so with a shorter one an assertion could still be reused
// after its exp, or be expired when signed.
const MinLifetime = 2 * time.Second

// NewSigner loads the signing key from the store, creating it on first
// use. The lifetime must be at least MinLifetime.
func NewSigner(ctx context.Context, store storage.Store, ks *keystore.Keystore, issuer string, lifetime time.Duration) (*Signer, error) {
	if lifetime < MinLifetime {
		return nil, fmt.Errorf("assertion lifetime %v is shorter than %v", lifetime, MinLifetime)
	}
	key, err := loadOrCreateKey(ctx, store, ks)
	if err != nil {
		return nil, err
	}
	s := &Signer{store: store, ks: ks, issuer: issuer, lifetime: lifetime, reuse: make([]atomic.Pointer[reused], reuseSlots),
		seed: maphash.MakeSeed(), now: time.Now}
	s.keys.Store(newKeySet(key, nil, time.Time{}))
	return s, nil
}

// newKeySet signs with current and publishes it, and retired until
// retiredUntil when retired is not nil.
func newKeySet(current, retired *signingKey, retiredUntil time.Time) *keySet {
	set := &keySet{current: current, retired: retired, retiredUntil: retiredUntil}
	set.jwksCurrent, _ = json.Marshal(map[string]any{"keys": []any{current.jwk}})
	set.jwks = set.jwksCurrent
	if retired != nil {
		set.jwks, _ = json.Marshal(map[string]any{"keys": []any{current.jwk, retired.jwk}})
	}
	return set
}

// loadOrCreateKey returns the signing key in the store, creating it
// first when there is none.
func loadOrCreateKey(ctx context.Context, store storage.Store, ks *keystore.Keystore) (key *signingKey, err error) {
	err = storage.Retry(func() (bool, error) {
		raw, err := store.Get(ctx, StoreKey)
		if err == nil {
			key, err = openKey(raw, ks)
			return true, err
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return false, err
		}
		if key, err = newKey(ks); err != nil {
			return false, err
		}
		// Another instance may create the key at the same moment; the
		// compare-and-swap makes exactly one of them win and the others load it.
		return store.CompareAndSwap(ctx, StoreKey, nil, key.record, 0)
	})
	if errors.Is(err, storage.ErrConflict) {
		return nil, errors.New("assertion signing key: could not create or load it")
	}
	if err != nil {
		return nil, err
	}
	return key, nil
}

// Follow keeps the signer's key and the store's the same, checking every
// interval until ctx ends. A store that lost its data (a Redis server
// restarted without persistence, a flush) no longer holds the key this
// instance signs with, and another instance starting or reloading then
// would make a new one, leaving the cluster to sign with two keys and
// serve two JWKS: an upstream that fetches the JWKS through a load
// balancer would refuse about half the assertions. So a key missing from
// the store is written back, which the next instance to start loads; and
// a key in the store other than this instance's (another instance made
// it first) is adopted: the signer signs with it from then on, and lists
// the key it signed with before in the JWKS for the assertion lifetime
// (and retiredMargin) more, so that what it signed still verifies. Each
// change is logged as a warning, a stored key that does not open with the
// keystore as an error (the signer keeps its key). The check reads the
// key through the store's cache, which the Redis store drops when its
// data was lost, so it costs no round trip while nothing changes.
func (s *Signer) Follow(ctx context.Context, interval time.Duration, log *zap.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var refused []byte // the stored record last found not to open: said once
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		before := s.keys.Load().current
		wroteBack, stored, err := s.sync(ctx)
		switch {
		case wroteBack:
			log.Warn("the store had lost the assertion signing key (its data was lost or flushed): wrote back the key this instance signs with",
				zap.String("kid", before.id))
		case err != nil && stored != nil && !bytes.Equal(stored, refused):
			refused = stored
			log.Error("the store's assertion signing key differs from this instance's and cannot be adopted: signing with this instance's key; "+
				"instances that load the store's key publish another JWKS", zap.String("kid", before.id), zap.Error(err))
		case err != nil:
			log.Debug("checking the store's assertion signing key failed", zap.Error(err))
		case s.keys.Load().current != before:
			set := s.keys.Load()
			log.Warn("the store holds another assertion signing key than this instance signed with (made by another instance after "+
				"the store lost its data): signing with the store's key now; the JWKS lists both until the assertions of the previous one expire",
				zap.String("kid", set.current.id), zap.String("previous_kid", before.id), zap.Time("previous_listed_until", set.retiredUntil))
		}
	}
}

// sync is one check of Follow: wroteBack reports that the store had no
// key and was given the signer's. stored, with err, is the stored record
// that could not be adopted.
func (s *Signer) sync(ctx context.Context) (wroteBack bool, stored []byte, err error) {
	set := s.keys.Load()
	raw, err := s.store.Get(ctx, StoreKey)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		// Create-if-absent: another instance writing its key back at the
		// same moment wins or loses cleanly, and the loser adopts it on
		// its next check.
		wroteBack, err = s.store.CompareAndSwap(ctx, StoreKey, nil, set.current.record, 0)
		return wroteBack, nil, err
	case err != nil && !errors.Is(err, storage.ErrUnavailable):
		// A record that fails its tag (written without this keystore) or
		// does not decode: refused like one that does not open, and said
		// as loudly.
		return false, []byte(err.Error()), err
	case err != nil:
		return false, nil, err
	case bytes.Equal(raw, set.current.record):
		return false, nil, nil
	}
	key, err := openKey(raw, s.ks)
	if err != nil {
		return false, raw, err
	}
	if key.id != set.current.id {
		s.keys.Store(newKeySet(key, set.current, s.now().Add(s.lifetime+retiredMargin)))
	}
	return false, nil, nil
}

// newKey generates a signing key and its store record, sealed with ks.
func newKey(ks *keystore.Keystore) (*signingKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	d, err := key.Bytes()
	if err != nil {
		return nil, err
	}
	pub, _ := key.PublicKey.Bytes()
	sum := sha256.Sum256(pub)
	sk := storedKey{KeyID: base64.RawURLEncoding.EncodeToString(sum[:12]), Sealed: ks.Seal(d, StoreKey)}
	rec, err := json.Marshal(sk)
	if err != nil {
		return nil, err
	}
	return newSigningKey(key, sk.KeyID, rec), nil
}

// newSigningKey is key, with key ID kid and store record rec, ready to
// sign with and publish.
func newSigningKey(key *ecdsa.PrivateKey, kid string, rec []byte) *signingKey {
	hdr, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": kid})
	enc := base64.RawURLEncoding
	return &signingKey{key: key, id: kid, record: rec, header: enc.EncodeToString(hdr), jwk: map[string]string{
		"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
		"x": enc.EncodeToString(key.X.FillBytes(make([]byte, 32))),
		"y": enc.EncodeToString(key.Y.FillBytes(make([]byte, 32))),
	}}
}

// ErrNoKey is RotateKey's answer for a store that holds no signing key
// yet: Gatehouse makes one at its first start.
var ErrNoKey = errors.New("the store holds no assertion signing key yet (Gatehouse makes one at its first start)")

// RotateKey replaces the signing key in the store with a new one, for
// instances started afterwards (the offline tool that calls it refuses a
// store in use; an instance running on it would adopt the new key, see
// Follow). The old key must open with ks, which proves ks is the store's
// keystore before anything is written. It returns both key IDs.
func RotateKey(ctx context.Context, store storage.Store, ks *keystore.Keystore) (oldKID, newKID string, err error) {
	err = storage.Retry(func() (bool, error) {
		raw, err := store.Get(ctx, StoreKey)
		if errors.Is(err, storage.ErrNotFound) {
			return false, ErrNoKey
		}
		if err != nil {
			return false, err
		}
		old, err := openKey(raw, ks)
		if err != nil {
			return false, err
		}
		key, err := newKey(ks)
		if err != nil {
			return false, err
		}
		oldKID, newKID = old.id, key.id
		return store.CompareAndSwap(ctx, StoreKey, raw, key.record, 0)
	})
	return oldKID, newKID, err
}

// openKey opens the stored signing key raw with the keystore.
func openKey(raw []byte, ks *keystore.Keystore) (*signingKey, error) {
	var sk storedKey
	if err := json.Unmarshal(raw, &sk); err != nil {
		return nil, fmt.Errorf("assertion signing key record is corrupt: %v", err)
	}
	d, err := ks.Open(sk.Sealed, StoreKey)
	if err != nil {
		return nil, fmt.Errorf("assertion signing key: %v (was the keystore %s replaced?)", err, ks.Path())
	}
	key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		return nil, fmt.Errorf("assertion signing key is invalid: %v", err)
	}
	return newSigningKey(key, sk.KeyID, bytes.Clone(raw)), nil
}

// OpensWith reports whether the signing key record raw, as the backing
// store holds it (with or without the record tag storage/tagged appends),
// opens with ks. Every instance seals the signing key first, so a store
// whose key does not open was made with another keystore: its records
// too, whose tags then fail as an older version's missing tags would.
func OpensWith(raw []byte, ks *keystore.Keystore) bool {
	for _, rec := range keystore.TagOnOrOff(raw) {
		if _, err := openKey(rec, ks); err == nil {
			return true
		}
	}
	return false
}

// JWKS returns the JSON Web Key Set document with the public key, and
// for a while after the signer adopted the store's key (Follow) the key
// it signed with before.
func (s *Signer) JWKS() []byte {
	set := s.keys.Load()
	if set.retired != nil && s.now().Before(set.retiredUntil) {
		return set.jwks
	}
	return set.jwksCurrent
}

// AMR lists the authentication methods of id for the amr claim, in the
// values RFC 8176 registers, which relying parties check: "pwd" for a
// password (HTTP Basic, the login portal's session), "pop" and "swk" for a
// connector token (proof of possession of the certificate's key, a
// software key), "otp" and "mfa" when a second factor was passed. An
// application key, a bearer secret, has no registered value: its amr is
// empty (the auth claim says app_key).
func AMR(id *identity.Identity) []string {
	var amr []string
	switch {
	case id.Method == identity.MethodBasic:
		amr = []string{"pwd"}
	case id.Method == identity.MethodConnector:
		amr = []string{"pop", "swk"}
	case id.Method == identity.MethodSession && id.AppKey == "":
		amr = []string{"pwd"}
	default:
		amr = []string{}
	}
	if id.SecondFactor {
		amr = append(amr, "otp", "mfa")
	}
	return amr
}

// Assertion returns a signed assertion for id and audience, reusing a
// previous one while it has more than half its lifetime left.
func (s *Signer) Assertion(id *identity.Identity, audience, httpMethod string) (string, error) {
	now := s.now().Round(0) // the wall clock, which iat and exp count
	key := s.keys.Load().current
	bucket := s.bucketOf(id, audience, httpMethod)
	for i := range bucket {
		if r := bucket[i].Load(); r != nil && r.key == key && r.matches(id, audience, httpMethod) && r.fresh(now) {
			return r.token, nil
		}
	}
	claims := Claims{Issuer: s.issuer, Subject: id.Username, Roles: id.Roles, AMR: AMR(id), Auth: string(id.Method.Forwarded()), Audience: audience,
		HTTPMethod: httpMethod, IssuedAt: now.Unix(), Expiry: now.Add(s.lifetime).Unix()}
	if claims.Roles == nil {
		claims.Roles = []string{}
	}
	token, err := sign(key, claims)
	if err != nil {
		return "", err
	}
	replaceable(bucket, id, audience, httpMethod).Store(&reused{key: key, username: id.Username, audience: audience, httpMethod: httpMethod,
		method: id.Method, viaAppKey: id.AppKey != "",
		secondFactor: id.SecondFactor, roles: slices.Clone(id.Roles), token: token, signedAt: now, refreshAt: now.Add(s.lifetime / 2)})
	return token, nil
}

// replaceable is the slot of bucket a new assertion for id and audience
// takes: the one of an older assertion for them, else an empty one, else
// the one due soonest for refreshing.
func replaceable(bucket []atomic.Pointer[reused], id *identity.Identity, audience, httpMethod string) *atomic.Pointer[reused] {
	var soonest *atomic.Pointer[reused]
	var soonestAt time.Time
	for i := range bucket {
		r := bucket[i].Load()
		if r == nil || r.matches(id, audience, httpMethod) {
			return &bucket[i]
		}
		if soonest == nil || r.refreshAt.Before(soonestAt) {
			soonest, soonestAt = &bucket[i], r.refreshAt
		}
	}
	return soonest
}

// bucketOf is the reuse bucket of an assertion for id and audience.
func (s *Signer) bucketOf(id *identity.Identity, audience, httpMethod string) []atomic.Pointer[reused] {
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(id.Username)
	h.WriteByte(0)
	h.WriteString(audience)
	h.WriteByte(0)
	h.WriteString(httpMethod)
	h.WriteByte(0)
	h.WriteString(string(id.Method))
	if id.AppKey != "" {
		h.WriteByte(2) // a session an app key opened: no password in amr
	}
	if id.SecondFactor {
		h.WriteByte(1)
	}
	for _, r := range id.Roles {
		h.WriteByte(0)
		h.WriteString(r)
	}
	buckets := uint64(len(s.reuse) / reuseWays)      //nolint:gosec // G115: a positive length
	start := (h.Sum64() & (buckets - 1)) * reuseWays // buckets is a power of two
	return s.reuse[start : start+reuseWays : start+reuseWays]
}

// sign makes the compact JWS of c with key.
func sign(key *signingKey, c Claims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signingInput := key.header + "." + base64.RawURLEncoding.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signingInput))
	r, sig, err := ecdsa.Sign(rand.Reader, key.key, digest[:])
	if err != nil {
		return "", err
	}
	raw := make([]byte, 64)
	r.FillBytes(raw[:32])
	sig.FillBytes(raw[32:])
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(raw), nil
}

// Verify checks a compact JWS against a JWKS document (signature, ES256,
// expiry) and returns its claims; it is what an upstream does, and what
// tests use. The caller then checks Audience against its own route's
// audience, which Verify cannot know.
func Verify(token string, jwks []byte, now time.Time) (*Claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("assertion is not a compact JWS")
	}
	var hdr struct{ Alg, Kid string }
	if err := decodeSegment(parts[0], &hdr); err != nil || hdr.Alg != "ES256" {
		return nil, errors.New("assertion header is not ES256")
	}
	var set struct {
		Keys []struct{ Kid, Crv, X, Y string } `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		return nil, fmt.Errorf("bad JWKS: %v", err)
	}
	for _, k := range set.Keys {
		if k.Kid != hdr.Kid || k.Crv != "P-256" {
			continue
		}
		x, err1 := base64.RawURLEncoding.DecodeString(k.X)
		y, err2 := base64.RawURLEncoding.DecodeString(k.Y)
		sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
		if err1 != nil || err2 != nil || err3 != nil || len(sig) != 64 || len(x) > 32 || len(y) > 32 {
			return nil, errors.New("malformed key or signature")
		}
		// The uncompressed point 04||X||Y, each coordinate left-padded to 32 bytes.
		point := make([]byte, 65)
		point[0] = 4
		copy(point[33-len(x):33], x)
		copy(point[65-len(y):], y)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
		digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		if err != nil || !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			return nil, errors.New("assertion signature does not verify")
		}
		var c Claims
		if err := decodeSegment(parts[1], &c); err != nil {
			return nil, errors.New("assertion payload is not JSON")
		}
		if now.Unix() >= c.Expiry {
			return nil, errors.New("assertion has expired")
		}
		return &c, nil
	}
	return nil, errors.New("no key in the JWKS matches the assertion's kid")
}

func decodeSegment(seg string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}
