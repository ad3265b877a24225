package twofactor

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor/sms"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// Enrolment is a newly created authenticator-app secret, to be shown to
// its user once.
type Enrolment struct {
	// Username is the account the secret belongs to.
	Username string
	// URI is the otpauth:// Key URI authenticator apps scan.
	URI string
	// Secret is the base32 secret, for typing it in by hand.
	Secret string
	// id identifies the secret (enrolment links refer to it).
	id string
}

// EnrolApp gives the user a new TOTP secret (raw, or a random 160-bit one
// when raw is nil), replacing any previous one; a replacement ends the
// user's sessions (see modifyFactors).
func (s *Service) EnrolApp(ctx context.Context, u *account.User, raw []byte) (*Enrolment, error) {
	if raw == nil {
		raw = make([]byte, generatedSecretBytes)
		rand.Read(raw)
	}
	st := s.newSecret(u.ID, TypeApp, raw, 0)
	err := s.modifyFactors(ctx, u, func(f *storedFactors) error {
		f.App = st
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Enrolment{Username: u.Username, URI: s.otpauthURI(u.Username, raw), Secret: b32.EncodeToString(raw), id: st.ID}, nil
}

// MaxHOTPCounter bounds a hardware token's counter at enrolment: far
// beyond any real token's (2^63 presses), and far enough below the end of
// uint64 that counting on from it never wraps around.
const MaxHOTPCounter = math.MaxInt64

// EnrolHardToken imports an HOTP hardware token's secret (base32) with the
// counter its next code will use, replacing any previous token; a
// replacement ends the user's sessions, as in EnrolApp.
func (s *Service) EnrolHardToken(ctx context.Context, u *account.User, secretB32 string, counter uint64) error {
	if counter > MaxHOTPCounter {
		return failure.Invalid("counter must be at most %d", uint64(MaxHOTPCounter))
	}
	raw, err := DecodeSecret(secretB32)
	if err != nil {
		return err
	}
	// The same token imported again: its counter stays past the codes it
	// gave, those accepted before state.HOTPTokens too (by the ID of the
	// import they were accepted under). Only codes accepted count: a
	// counter mistyped at the last import is corrected by this one.
	f, err := s.factors(ctx, u.ID)
	if err != nil {
		return err
	}
	if old := f.hardToken; old != nil && old.digest == s.tokenDigest(u.ID, raw) {
		st, err := s.readState(ctx, u.ID)
		if err != nil {
			return err
		}
		if next, used := usedNext(&st, old); used {
			counter = max(counter, next)
		}
	}
	st := s.newSecret(u.ID, TypeHardToken, raw, counter)
	return s.modifyFactors(ctx, u, func(f *storedFactors) error {
		f.HardToken = st
		return nil
	})
}

// EnrolSMS enables text-message codes; the user needs a mobile number
// (a directory account's is adopted: textable) and Gatehouse a
// configured sender.
func (s *Service) EnrolSMS(ctx context.Context, u *account.User) error {
	u, err := s.textable(ctx, u, true)
	if err != nil {
		return err
	}
	return s.modifyFactors(ctx, u, func(f *storedFactors) error {
		f.SMS = true
		return nil
	})
}

// Remove disables one factor of the user and ends the user's sessions
// (a session that passed the removed factor should not outlive it).
func (s *Service) Remove(ctx context.Context, u *account.User, t Type) error {
	err := s.modifyFactors(ctx, u, func(f *storedFactors) error {
		switch {
		case t == TypeApp && f.App != nil:
			f.App = nil
		case t == TypeHardToken && f.HardToken != nil:
			f.HardToken = nil
		case t == TypeSMS && f.SMS:
			f.SMS = false
		default:
			return failure.NotFound("user %q has no %s factor", u.Username, t)
		}
		return nil
	})
	if err == nil && t == TypeSMS {
		err = s.engine.Store.Delete(ctx, smsKey(u.ID))
	}
	return err
}

// Deprovision disables every factor of the user, which ends the user's
// sessions. The lockout and the last success and failure times stay.
func (s *Service) Deprovision(ctx context.Context, u *account.User) error {
	err := s.modifyFactors(ctx, u, func(f *storedFactors) error {
		*f = storedFactors{}
		return nil
	})
	if err != nil {
		return err
	}
	return s.engine.Store.Delete(ctx, smsKey(u.ID))
}

func (s *Service) newSecret(uid string, t Type, raw []byte, counter uint64) *storedSecret {
	id := RandomToken(12)
	return &storedSecret{ID: id, Sealed: s.engine.Keystore.Seal(raw, sealContext(uid, t, id)), Counter: counter,
		CreatedAt: s.now().UTC()}
}

// Types lists the user's enabled factors in ESA order (APP, SMS, HARD_TOKEN).
func (s *Service) Types(ctx context.Context, u *account.User) ([]Type, error) {
	f, err := s.factors(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	return f.types(), nil
}

// ErrSMSDelivery wraps a failure of the SMS sender.
var ErrSMSDelivery = errors.New("the text message could not be sent")

// textable returns u, with the number texts to it go to, once Gatehouse
// can text it: a sender is configured and the account has a number of its
// own. An administrator's action (adopt: enrolling SMS, sending an
// enrolment link) adopts the directory's number when it has none
// (account.Service.AdoptDirectoryMobile), audited; a sign-in's code never
// does: whoever has the password alone could have set that number, and
// the code would go to them.
func (s *Service) textable(ctx context.Context, u *account.User, adopt bool) (*account.User, error) {
	if s.opts.Sender == nil {
		return nil, failure.Invalid("no SMS sender is configured (gatehouse global option: sms file <path> | sms webhook <url>)")
	}
	if adopt {
		var adopted bool
		var err error
		if u, adopted, err = s.engine.Accounts.AdoptDirectoryMobile(ctx, u); err != nil {
			return nil, err
		}
		if adopted {
			s.engine.Audit.Record(audit.Event{Kind: auditKind, Username: u.Username, Outcome: audit.OutcomeSuccess,
				Reason: "the directory's mobile number became the account's number for text messages; later changes in the directory are not followed"})
		}
	}
	switch {
	case u.MobileNumber == "" && u.DirectoryMobile != "":
		return nil, failure.Invalid("user %q has no mobile number of its own (the directory's is not texted for a sign-in): "+
			"an administrator checks the number and sets mobile_number, or enrols SMS again, which takes the directory's", u.Username)
	case u.MobileNumber == "":
		return nil, failure.Invalid("user %q has no mobile number; set one first (console: the user's SMS number; admin API: PATCH its mobile_number; CLI: caddy gatehouse users set-mobile)", u.Username)
	}
	return u, nil
}

// SendText sends text to the user's mobile number (adopting the directory's,
// an administrator's action: textable), within the user's
// SMSPerHour (beyond it, nothing is sent: ErrTooManyTexts), which the
// SMS codes share: every text costs a message to the same phone.
func (s *Service) SendText(ctx context.Context, u *account.User, text string) error {
	u, err := s.spendText(ctx, u, true)
	if err != nil {
		return err
	}
	return s.send(ctx, u, text)
}

// spendText counts one text to u against SMSPerHour, once u can be
// texted at all (textable, given adopt, whose u it returns); beyond the
// bound it returns ErrTooManyTexts.
func (s *Service) spendText(ctx context.Context, u *account.User, adopt bool) (*account.User, error) {
	u, err := s.textable(ctx, u, adopt)
	if err != nil {
		return nil, err
	}
	sent, err := s.engine.Store.Incr(ctx, smsSentKey(u.ID), 1, time.Hour)
	if err != nil {
		return nil, err
	}
	if sent > SMSPerHour {
		return nil, ErrTooManyTexts
	}
	return u, nil
}

// send sends text to u's mobile number; the caller spent it (spendText).
func (s *Service) send(ctx context.Context, u *account.User, text string) error {
	if err := s.opts.Sender.Send(ctx, sms.Message{To: u.MobileNumber, Message: text}); err != nil {
		s.engine.Logger.Error("sending a text message failed", zap.String("username", u.Username), zap.Error(err))
		return fmt.Errorf("%w: %v", ErrSMSDelivery, err)
	}
	return nil
}

// smsCode is a pending SMS code, or the one accepted last: only its
// keyed digest is stored.
type smsCode struct {
	// Digest is the code's keyed digest (smsDigest).
	Digest string `json:"digest"`
	// ExpiresAt is when the code stops being valid.
	ExpiresAt time.Time `json:"expires_at"`
	// Used marks the code accepted, kept until it would have expired so
	// that it sent again is told apart from a wrong guess
	// (ReasonRepeated).
	Used bool `json:"used,omitempty"`
}

func (s *Service) smsDigest(uid, code string) string {
	return s.engine.Keystore.Index(smsDigestPurpose, []byte(uid+"\x00"+code))
}

// SMSPerHour bounds the texts sent to one user within an hour (from the
// first), SMS codes and enrolment links together: each costs a message,
// and each code replaces the user's pending one, so unbounded sends would
// let anyone who can start a login flood the phone and keep voiding the
// code the user is typing.
const SMSPerHour = 10

// ErrTooManyTexts refuses an SMS code beyond SMSPerHour; the code sent
// before stays valid.
var ErrTooManyTexts = failure.Throttled("%d text messages were already sent to the user within the hour; use the last code sent, another factor, or try again later", SMSPerHour)

// SendCode sends the user a new 6-digit SMS code, valid for 5 minutes and
// once; it replaces any code sent before. Beyond SMSPerHour it sends
// nothing and returns ErrTooManyTexts.
func (s *Service) SendCode(ctx context.Context, u *account.User) error {
	u, err := s.spendText(ctx, u, false)
	if err != nil {
		return err
	}
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		return err
	}
	code := fmt.Sprintf("%06d", n.Int64())
	rec, _ := json.Marshal(smsCode{Digest: s.smsDigest(u.ID, code), ExpiresAt: s.now().Add(SMSCodeLifetime).UTC()})
	if err := s.engine.Store.Put(ctx, smsKey(u.ID), rec, SMSCodeLifetime); err != nil {
		return err
	}
	return s.send(ctx, u, fmt.Sprintf("Your %s code is %s. It is valid for %d minutes.",
		s.opts.Issuer, code, int(SMSCodeLifetime.Minutes())))
}

// checkSMS accepts the pending SMS code once, before it expires.
func (s *Service) checkSMS(ctx context.Context, u *account.User, f *factors, c string) (bool, string, error) {
	if !f.sms {
		return false, "", nil
	}
	raw, err := s.engine.Store.Get(ctx, smsKey(u.ID))
	if errors.Is(err, storage.ErrNotFound) {
		return false, "", nil
	}
	if err != nil {
		return false, "", err
	}
	var rec smsCode
	if err := json.Unmarshal(raw, &rec); err != nil {
		return false, "", fmt.Errorf("decoding the SMS code of user ID %s: %v", u.ID, err)
	}
	now := s.now()
	if !now.Before(rec.ExpiresAt) || !matches(s.smsDigest(u.ID, c), rec.Digest) {
		return false, "", nil
	}
	if rec.Used {
		return false, ReasonRepeated, nil
	}
	rec.Used = true
	used, _ := json.Marshal(rec)
	consumed, err := s.engine.Store.CompareAndSwap(ctx, smsKey(u.ID), raw, used, rec.ExpiresAt.Sub(now))
	if err != nil {
		return false, "", err
	}
	if !consumed {
		// Another request took it first (the same code sent twice at once),
		// or a new code replaced it.
		raw, err := s.engine.Store.Get(ctx, smsKey(u.ID))
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return false, "", err
		}
		var current smsCode
		if err == nil && json.Unmarshal(raw, &current) == nil && current.Used && current.Digest == rec.Digest {
			return false, ReasonRepeated, nil
		}
		return false, ReasonReplayed, nil
	}
	_, err = s.advance(ctx, u.ID, func(*state) bool { return true })
	return err == nil, "", err
}

// linkRecord is a pending enrolment link, stored under the digest of its
// token.
type linkRecord struct {
	UserID   string `json:"user_id"`
	Username string `json:"username"`
	// AppID is the TOTP secret the link shows; a newer secret voids it.
	AppID string `json:"app_id"`
}

func linkKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return enrolmentLinkPrefix + hex.EncodeToString(sum[:])
}

// errLinkInvalid is the one answer for an unknown, used, expired or
// superseded enrolment link.
var errLinkInvalid = failure.NotFound("this enrolment link is invalid, was already used or has expired; ask for a new one")

// NewEnrolmentLink returns the token of a one-time link that shows the
// enrolment's secret once, within the link lifetime. An account has one
// live link: the record of the one made before goes (its secret, which a
// new enrolment replaced, voids it anyway), so that links asked for in a
// loop (the ESA API's provisionmobileapp) do not pile up in the store.
func (s *Service) NewEnrolmentLink(ctx context.Context, en *Enrolment, u *account.User) (string, error) {
	token := RandomToken(enrolmentTokenBytes)
	rec, _ := json.Marshal(linkRecord{UserID: u.ID, Username: u.Username, AppID: en.id})
	lifetime := s.opts.EnrolmentLinkLifetime
	previous, err := s.engine.Store.Get(ctx, liveLinkKey(u.ID))
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return "", err
	}
	if err := s.engine.Store.Put(ctx, linkKey(token), rec, lifetime); err != nil {
		return "", err
	}
	// The link's key, the digest of its token: the store holds no token.
	if err := s.engine.Store.Put(ctx, liveLinkKey(u.ID), []byte(linkKey(token)), lifetime); err != nil {
		return "", err
	}
	if previous != nil && strings.HasPrefix(string(previous), enrolmentLinkPrefix) {
		if err := s.engine.Store.Delete(ctx, string(previous)); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return "", err
		}
	}
	return token, nil
}

// CheckEnrolmentLink returns the username of a valid link without using it.
func (s *Service) CheckEnrolmentLink(ctx context.Context, token string) (string, error) {
	rec, _, err := s.readLink(ctx, token)
	if err != nil {
		return "", err
	}
	return rec.Username, nil
}

func (s *Service) readLink(ctx context.Context, token string) (*linkRecord, []byte, error) {
	if len(token) != EnrolmentTokenLength {
		return nil, nil, errLinkInvalid
	}
	raw, err := s.engine.Store.Get(ctx, linkKey(token))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil, errLinkInvalid
	}
	if err != nil {
		return nil, nil, err
	}
	var rec linkRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, nil, fmt.Errorf("decoding an enrolment link: %v", err)
	}
	return &rec, raw, nil
}

// RedeemEnrolmentLink uses up the link and returns the secret it shows.
func (s *Service) RedeemEnrolmentLink(ctx context.Context, token string) (*Enrolment, error) {
	rec, raw, err := s.readLink(ctx, token)
	if err != nil {
		return nil, err
	}
	used, err := s.engine.Store.CompareAndSwap(ctx, linkKey(token), raw, nil, 0)
	if err != nil {
		return nil, err
	}
	if !used {
		return nil, errLinkInvalid
	}
	u, err := s.engine.Accounts.User(ctx, rec.Username)
	if errors.Is(err, failure.ErrNotFound) {
		return nil, errLinkInvalid
	}
	if err != nil {
		return nil, err
	}
	f, err := s.factors(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	if u.ID != rec.UserID || f.app == nil || f.app.id != rec.AppID {
		return nil, errLinkInvalid
	}
	raw2, _ := b32.DecodeString(f.app.base32)
	return &Enrolment{Username: u.Username, URI: s.otpauthURI(u.Username, raw2), Secret: f.app.base32, id: f.app.id}, nil
}
