// Package twofactor is Gatehouse's second factor: TOTP authenticator apps
// (APP, RFC 6238), imported HOTP hardware tokens (HARD_TOKEN, RFC 4226) and
// one-time codes sent by text message (SMS), with a per-user lockout after
// consecutive failures. The ESA-compatible API (twofactor/esa) and the
// login portal (twofactor/portal) are built on the Service here.
//
// Everything is keyed by the account's immutable ID, so a deleted and
// re-created namesake starts with no factor and no lockout. Secrets are
// sealed with the keystore; SMS codes are stored only as keyed digests.
// Each code is accepted once: the last accepted TOTP step and the next
// HOTP counter only move forward (compare-and-swap), and an SMS code is
// consumed by compare-and-swap.
package twofactor

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/internal/logthin"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor/sms"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
	"github.com/gatehouse-auth/gatehouse/storage/counters"
)

// Type is a second-factor kind, named as the ESA API names it.
type Type string

// The second-factor kinds.
const (
	// TypeApp is a TOTP authenticator app (RFC 6238: SHA-1, 6 digits, 30 s).
	TypeApp Type = "APP"
	// TypeSMS is a one-time code sent by text message.
	TypeSMS Type = "SMS"
	// TypeHardToken is an imported HOTP hardware token (RFC 4226).
	TypeHardToken Type = "HARD_TOKEN"
)

// ParseType accepts "APP", "SMS" or "HARD_TOKEN".
func ParseType(s string) (Type, error) {
	switch t := Type(s); t {
	case TypeApp, TypeSMS, TypeHardToken:
		return t, nil
	}
	return "", failure.Invalid("type must be %q, %q or %q", TypeApp, TypeSMS, TypeHardToken)
}

// EnrolPath is the login portal's enrolment page, where a one-time
// enrolment link (the ESA installation_url) shows a new authenticator-app
// secret.
const EnrolPath = "/gatehouse/enrol"

// Defaults and limits.
const (
	// DefaultIssuer labels accounts in authenticator apps.
	DefaultIssuer = "Gatehouse"
	// DefaultHOTPWindow is how far ahead of the expected counter a
	// hardware token's code may be.
	DefaultHOTPWindow = 10
	// MaxHOTPWindow bounds the look-ahead window (each code checks up to
	// that many HMACs).
	MaxHOTPWindow = 1000
	// DefaultEnrolmentLinkLifetime is how long an enrolment link is valid.
	DefaultEnrolmentLinkLifetime = 24 * time.Hour
	// SMSCodeLifetime is how long an SMS code is valid.
	SMSCodeLifetime = 5 * time.Minute
	// EnrolmentTokenLength is the length of an enrolment link's token.
	EnrolmentTokenLength = 43 // base64url of 32 random bytes

	totpPeriod           = 30
	codeDigits           = 6
	minSecretBytes       = 16 // RFC 4226 §4 R6: at least 128 bits
	maxSecretBytes       = 64
	generatedSecretBytes = 20 // RFC 4226 recommends 160 bits
	enrolmentTokenBytes  = 32
	enrolmentLinkPrefix  = "2fa-link/"
	userKeyPrefix        = "2fa/"
	auditKind            = audit.KindTwoFactor
	smsDigestPurpose     = "2fa-sms-code"
)

// Options configure a Service.
type Options struct {
	// Sender delivers text messages; nil means SMS is not available.
	Sender sms.Sender
	// Issuer labels the account in authenticator apps (default "Gatehouse").
	Issuer string
	// HOTPWindow is how many codes ahead of the expected one a hardware
	// token may be (default 10).
	HOTPWindow int
	// EnrolmentLinkLifetime is how long an enrolment link stays valid
	// (default 24 h).
	EnrolmentLinkLifetime time.Duration
}

// Service manages and verifies second factors.
type Service struct {
	engine *engine.Engine
	opts   Options
	now    func() time.Time
	// skewLines thins noteSkew's warnings to one a minute: a user
	// confirming a new secret can send codes of every time, uncounted.
	skewLines logthin.Thinner
}

// New returns the second-factor service of e.
func New(e *engine.Engine, opts Options) *Service {
	if opts.Issuer == "" {
		opts.Issuer = DefaultIssuer
	}
	if opts.HOTPWindow <= 0 {
		opts.HOTPWindow = DefaultHOTPWindow
	}
	if opts.EnrolmentLinkLifetime <= 0 {
		opts.EnrolmentLinkLifetime = DefaultEnrolmentLinkLifetime
	}
	s := &Service{engine: e, opts: opts, now: time.Now, skewLines: logthin.Thinner{Interval: time.Minute}}
	e.Accounts.OnDelete(s.forget)
	return s
}

// forget deletes every second-factor record of an account that is being
// deleted (an account.DeleteHook): factors, counters, the failure count,
// SMS codes, its live enrolment link.
func (s *Service) forget(ctx context.Context, u *account.User) error {
	var ops []storage.Op
	err := s.engine.Store.Scan(ctx, userKey(u.ID, ""), func(e storage.Entry) error {
		ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: e.Key})
		if e.Key == liveLinkKey(u.ID) && strings.HasPrefix(string(e.Value), enrolmentLinkPrefix) {
			ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: string(e.Value)})
		}
		return nil
	})
	if err != nil || len(ops) == 0 {
		return err
	}
	return s.engine.Store.Batch(ctx, ops)
}

// Engine is the engine the service works on.
func (s *Service) Engine() *engine.Engine { return s.engine }

// SMSAvailable reports whether a text-message sender is configured.
func (s *Service) SMSAvailable() bool { return s.opts.Sender != nil }

// Record writes a 2FA event to the audit log with the request's client
// address, method and path filled in.
func (s *Service) Record(r *http.Request, ev audit.Event) {
	if ev.Kind == "" {
		ev.Kind = auditKind
	}
	s.engine.RecordRequest(r, ev)
}

// Store keys, all under the account's immutable ID.
func userKey(uid, what string) string { return userKeyPrefix + uid + "/" + what }

func factorsKey(uid string) string     { return userKey(uid, "factors") }
func stateKey(uid string) string       { return userKey(uid, "state") }
func failuresKey(uid string) string    { return counters.TwoFactorFailures(uid) }
func lastFailureKey(uid string) string { return userKey(uid, "last_failure") }
func lockNotedKey(uid string) string   { return userKey(uid, "lock_noted") }
func busySinceKey(uid string) string   { return userKey(uid, "busy_since") }
func unlocksKey(uid string) string     { return counters.TwoFactorUnlocks(uid) }
func smsKey(uid string) string         { return userKey(uid, "sms") }

// liveLinkKey holds the key of the account's live enrolment link.
func liveLinkKey(uid string) string { return userKey(uid, "link") }
func smsSentKey(uid string) string  { return counters.TwoFactorSMSSent(uid) }

// storedSecret is an OTP secret as stored: sealed with the keystore under a
// context naming the user, the factor and this secret's ID.
type storedSecret struct {
	// ID identifies this secret; HOTP counters and enrolment links refer
	// to it, so replacing the secret resets them.
	ID     string `json:"id"`
	Sealed []byte `json:"sealed"`
	// Counter is the first HOTP counter expected (HARD_TOKEN only).
	Counter   uint64    `json:"counter,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// storedFactors is a user's enrolment record.
type storedFactors struct {
	App       *storedSecret `json:"app,omitempty"`
	HardToken *storedSecret `json:"hard_token,omitempty"`
	SMS       bool          `json:"sms,omitempty"`
}

// secret is an opened OTP secret.
type secret struct {
	id      string
	base32  string
	counter uint64
	// digest is a keyed digest of a hardware token's secret (tokenDigest),
	// the same for every import of the same token.
	digest string
	// formerDigests are its digests under the index keys a keystore rekey
	// retired: the marks of the tokens no longer enrolled at the rekey,
	// which it could not make again, keep them (see usedNext).
	formerDigests []string
}

// tokenDigest is the keyed digest of the hardware token secret raw of the
// user uid: what the 2FA state keeps to know a token imported again
// (state.HOTPTokens), without the secret. It is the digest of the HMAC key
// the secret is: HMAC pads a key with zero bytes, so raw with zero bytes
// added at its end (base32 "A"s for padding) is the same token.
func (s *Service) tokenDigest(uid string, raw []byte) string {
	return tokenDigestWith(s.engine.Keystore, uid, raw)
}

// factors is a user's opened enrolment record, cached in memory.
type factors struct {
	app, hardToken *secret
	sms            bool
}

// types lists the enabled kinds in the order the ESA API lists them.
func (f *factors) types() []Type {
	out := make([]Type, 0, 3)
	if f.app != nil {
		out = append(out, TypeApp)
	}
	if f.sms {
		out = append(out, TypeSMS)
	}
	if f.hardToken != nil {
		out = append(out, TypeHardToken)
	}
	return out
}

func sealContext(uid string, t Type, id string) string {
	return "otp/" + uid + "/" + string(t) + "/" + id
}

func (s *Service) openSecret(uid string, t Type, st *storedSecret) (*secret, error) {
	if st == nil {
		return nil, nil
	}
	raw, err := s.engine.Keystore.Open(st.Sealed, sealContext(uid, t, st.ID))
	if err != nil {
		return nil, fmt.Errorf("opening the %s secret of user ID %s: %v", t, uid, err)
	}
	sec := &secret{id: st.ID, base32: b32.EncodeToString(raw), counter: st.Counter}
	if t == TypeHardToken {
		sec.digest = s.tokenDigest(uid, raw)
		sec.formerDigests = formerTokenDigests(s.engine.Keystore, uid, raw)
	}
	return sec, nil
}

// factors returns the user's opened enrolment (empty when none), decoded
// and decrypted once per cached record.
func (s *Service) factors(ctx context.Context, uid string) (*factors, error) {
	f, err := cache.Load(s.engine.Store, ctx, factorsKey(uid), func(b []byte) (*factors, error) {
		var st storedFactors
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("decoding the 2FA record of user ID %s: %v", uid, err)
		}
		f := &factors{sms: st.SMS}
		var err error
		if f.app, err = s.openSecret(uid, TypeApp, st.App); err != nil {
			return nil, err
		}
		if f.hardToken, err = s.openSecret(uid, TypeHardToken, st.HardToken); err != nil {
			return nil, err
		}
		return f, nil
	})
	if errors.Is(err, storage.ErrNotFound) {
		return &factors{}, nil
	}
	return f, err
}

// modifyFactors applies change to u's stored enrolment with
// storage.Update. An enrolment left with no factor is deleted; a change
// that replaced or removed a factor ends u's sessions.
func (s *Service) modifyFactors(ctx context.Context, u *account.User, change func(*storedFactors) error) error {
	var withdrew bool
	_, err := storage.UpdateJSON(ctx, s.engine.Store, factorsKey(u.ID), 0, func(st *storedFactors) (*storedFactors, error) {
		if st == nil {
			st = new(storedFactors)
		}
		before := *st
		if err := change(st); err != nil {
			return nil, err
		}
		withdrew = withdrawn(&before, st)
		if st.App == nil && st.HardToken == nil && !st.SMS {
			return nil, nil
		}
		return st, nil
	})
	if errors.Is(err, storage.ErrConflict) {
		return failure.Conflict("the second factors of this user are being changed concurrently; try again")
	}
	if err != nil || !withdrew {
		return err
	}
	// The user's sessions passed a factor that is gone (perhaps because it
	// was compromised): they end with it.
	_, err = s.engine.Accounts.EndSessions(ctx, u.Username)
	return err
}

// withdrawn reports whether going from before to after replaced or removed
// a factor that was enabled.
func withdrawn(before, after *storedFactors) bool {
	replaced := func(was, now *storedSecret) bool { return was != nil && (now == nil || now.ID != was.ID) }
	return replaced(before.App, after.App) || replaced(before.HardToken, after.HardToken) || (before.SMS && !after.SMS)
}

// state is the per-user verification state that must only move forward.
type state struct {
	// AppStep is the last TOTP time step accepted.
	AppStep int64 `json:"app_step,omitempty"`
	// HOTPID and HOTPNext are the next HOTP counter expected for the
	// hardware token whose secret has that ID (the token used last).
	HOTPID   string `json:"hotp_id,omitempty"`
	HOTPNext uint64 `json:"hotp_next,omitempty"`
	// HOTPTokens are the next counters expected for the tokens used
	// last, newest first, at most maxTokenMarks, known by their secret's
	// digest: a token imported again (a new ID), even after another
	// token was used, takes back none of the codes it gave.
	HOTPTokens  []tokenMark `json:"hotp_tokens,omitempty"`
	LastSuccess *time.Time  `json:"last_success,omitempty"`
}

// maxTokenMarks bounds state.HOTPTokens: the hardware tokens of one user
// whose counters are remembered.
const maxTokenMarks = 8

// tokenMark is the next HOTP counter expected for the hardware token
// whose secret has the digest Secret (tokenDigest).
type tokenMark struct {
	Secret string `json:"secret"`
	Next   uint64 `json:"next"`
}

// markToken returns marks with the next counter of the token digest set
// to next, first, and the oldest dropped past maxTokenMarks.
func markToken(marks []tokenMark, digest string, next uint64) []tokenMark {
	out := make([]tokenMark, 0, maxTokenMarks)
	out = append(out, tokenMark{Secret: digest, Next: next})
	for _, m := range marks {
		if m.Secret != digest && len(out) < maxTokenMarks {
			out = append(out, m)
		}
	}
	return out
}

// readState returns the stored state (the zero state when absent).
func (s *Service) readState(ctx context.Context, uid string) (state, error) {
	var st state
	raw, err := s.engine.Store.Get(ctx, stateKey(uid))
	if errors.Is(err, storage.ErrNotFound) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("decoding the 2FA state of user ID %s: %v", uid, err)
	}
	return st, nil
}

// advance applies change to the state with storage.Update and records
// the success time. change returns false to refuse (a replayed code); the
// state is then left alone and advance reports false.
func (s *Service) advance(ctx context.Context, uid string, change func(*state) bool) (bool, error) {
	refused := false
	_, err := storage.UpdateJSON(ctx, s.engine.Store, stateKey(uid), 0, func(st *state) (*state, error) {
		if st == nil {
			st = new(state)
		}
		if refused = !change(st); refused {
			return nil, storage.ErrNoChange
		}
		now := s.now().UTC()
		st.LastSuccess = &now
		return st, nil
	})
	if err != nil {
		return false, fmt.Errorf("advancing the 2FA state of user ID %s: %w", uid, err)
	}
	return !refused, nil
}

// RandomToken returns n random bytes, base64url-encoded without padding.
func RandomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand panics on failure)
	return base64.RawURLEncoding.EncodeToString(b)
}

func parseCounter(b []byte) (int64, error) { return strconv.ParseInt(string(b), 10, 64) }
