// Package assertion produces the signed identity assertion Gatehouse
// forwards upstream in X-Gatehouse-Assertion: a compact JWS (ES256) of
// {iss, sub, roles, amr, aud, iat, exp}, verifiable with the JWKS the data
// plane publishes at /.well-known/gatehouse/jwks.json.
//
// The signing key is generated once, sealed with the keystore and kept in
// the store, so restarts and every instance of a cluster share it. Signing
// is not done per request: an assertion is reused for the same identity and
// audience for the first half of its lifetime.
package assertion

import (
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
	key      *ecdsa.PrivateKey
	keyID    string
	issuer   string
	lifetime time.Duration
	jwks     []byte
	header   string
	reuse    []atomic.Pointer[reused]
	seed     maphash.Seed
	now      func() time.Time
}

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
	key, kid, err := loadOrCreateKey(ctx, store, ks)
	if err != nil {
		return nil, err
	}
	s := &Signer{key: key, keyID: kid, issuer: issuer, lifetime: lifetime, reuse: make([]atomic.Pointer[reused], reuseSlots),
		seed: maphash.MakeSeed(), now: time.Now}
	hdr, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": kid})
	s.header = base64.RawURLEncoding.EncodeToString(hdr)
	s.jwks, _ = json.Marshal(map[string]any{"keys": []any{s.publicJWK()}})
	return s, nil
}

// loadOrCreateKey returns the signing key in the store, creating it
// first when there is none.
func loadOrCreateKey(ctx context.Context, store storage.Store, ks *keystore.Keystore) (key *ecdsa.PrivateKey, kid string, err error) {
	err = storage.Retry(func() (bool, error) {
		raw, err := store.Get(ctx, StoreKey)
		if err == nil {
			key, kid, err = openKey(raw, ks)
			return true, err
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return false, err
		}
		var rec []byte
		if key, kid, rec, err = newKey(ks); err != nil {
			return false, err
		}
		// Another instance may create the key at the same moment; the
		// compare-and-swap makes exactly one of them win and the others load it.
		return store.CompareAndSwap(ctx, StoreKey, nil, rec, 0)
	})
	if errors.Is(err, storage.ErrConflict) {
		return nil, "", errors.New("assertion signing key: could not create or load it")
	}
	if err != nil {
		return nil, "", err
	}
	return key, kid, nil
}

// newKey generates a signing key and its store record, sealed with ks.
func newKey(ks *keystore.Keystore) (key *ecdsa.PrivateKey, kid string, rec []byte, err error) {
	if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, "", nil, err
	}
	d, err := key.Bytes()
	if err != nil {
		return nil, "", nil, err
	}
	pub, _ := key.PublicKey.Bytes()
	sum := sha256.Sum256(pub)
	sk := storedKey{KeyID: base64.RawURLEncoding.EncodeToString(sum[:12]), Sealed: ks.Seal(d, StoreKey)}
	rec, err = json.Marshal(sk)
	return key, sk.KeyID, rec, err
}

// ErrNoKey is RotateKey's answer for a store that holds no signing key
// yet: Gatehouse makes one at its first start.
var ErrNoKey = errors.New("the store holds no assertion signing key yet (Gatehouse makes one at its first start)")

// RotateKey replaces the signing key in the store with a new one, for
// instances started afterwards (an instance keeps the key it loaded until
// it restarts). The old key must open with ks, which proves ks is the
// store's keystore before anything is written. It returns both key IDs.
func RotateKey(ctx context.Context, store storage.Store, ks *keystore.Keystore) (oldKID, newKID string, err error) {
	err = storage.Retry(func() (bool, error) {
		raw, err := store.Get(ctx, StoreKey)
		if errors.Is(err, storage.ErrNotFound) {
			return false, ErrNoKey
		}
		if err != nil {
			return false, err
		}
		if _, oldKID, err = openKey(raw, ks); err != nil {
			return false, err
		}
		var rec []byte
		if _, newKID, rec, err = newKey(ks); err != nil {
			return false, err
		}
		return store.CompareAndSwap(ctx, StoreKey, raw, rec, 0)
	})
	return oldKID, newKID, err
}

// openKey opens the stored signing key raw with the keystore.
func openKey(raw []byte, ks *keystore.Keystore) (*ecdsa.PrivateKey, string, error) {
	var sk storedKey
	if err := json.Unmarshal(raw, &sk); err != nil {
		return nil, "", fmt.Errorf("assertion signing key record is corrupt: %v", err)
	}
	d, err := ks.Open(sk.Sealed, StoreKey)
	if err != nil {
		return nil, "", fmt.Errorf("assertion signing key: %v (was the keystore %s replaced?)", err, ks.Path())
	}
	key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		return nil, "", fmt.Errorf("assertion signing key is invalid: %v", err)
	}
	return key, sk.KeyID, nil
}

func (s *Signer) publicJWK() map[string]string {
	enc := base64.RawURLEncoding
	return map[string]string{
		"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": s.keyID,
		"x": enc.EncodeToString(s.key.X.FillBytes(make([]byte, 32))),
		"y": enc.EncodeToString(s.key.Y.FillBytes(make([]byte, 32))),
	}
}

// JWKS returns the JSON Web Key Set document with the public key.
func (s *Signer) JWKS() []byte { return s.jwks }

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
	bucket := s.bucketOf(id, audience, httpMethod)
	for i := range bucket {
		if r := bucket[i].Load(); r != nil && r.matches(id, audience, httpMethod) && r.fresh(now) {
			return r.token, nil
		}
	}
	claims := Claims{Issuer: s.issuer, Subject: id.Username, Roles: id.Roles, AMR: AMR(id), Auth: string(id.Method.Forwarded()), Audience: audience,
		HTTPMethod: httpMethod, IssuedAt: now.Unix(), Expiry: now.Add(s.lifetime).Unix()}
	if claims.Roles == nil {
		claims.Roles = []string{}
	}
	token, err := s.sign(claims)
	if err != nil {
		return "", err
	}
	replaceable(bucket, id, audience, httpMethod).Store(&reused{username: id.Username, audience: audience, httpMethod: httpMethod,
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

func (s *Signer) sign(c Claims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signingInput := s.header + "." + base64.RawURLEncoding.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signingInput))
	r, sig, err := ecdsa.Sign(rand.Reader, s.key, digest[:])
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
