package twofactor

import (
	"net/http"
	"time"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/failure"
)

// AdminRoutes implements adminapi.Provider: enrolment, status, removal and
// unlock of a user's second factors.
func (s *Service) AdminRoutes() []adminapi.Route {
	return []adminapi.Route{
		{Pattern: "POST /gatehouse/users/{username}/otp", Handle: s.adminEnrol, Body: true},
		{Pattern: "GET /gatehouse/users/{username}/otp", Handle: s.adminStatus},
		{Pattern: "DELETE /gatehouse/users/{username}/otp", Handle: s.adminDeprovision},
		{Pattern: "DELETE /gatehouse/users/{username}/otp/{type}", Handle: s.adminRemove},
		{Pattern: "POST /gatehouse/users/{username}/unlock", Handle: s.adminUnlock},
	}
}

// enrolRequest is the body of POST /gatehouse/users/{username}/otp.
type enrolRequest struct {
	// Type is the factor to enrol: APP (TOTP), HARD_TOKEN (HOTP) or SMS.
	Type string `json:"type"`
	// Secret is the base32 seed: required for HARD_TOKEN (16 to 64 bytes
	// decoded), optional for APP (Gatehouse makes one when absent, e.g.
	// to import an authenticator), refused for SMS.
	Secret *string `json:"secret,omitempty"`
	// Counter is a HARD_TOKEN's next counter value (default 0, at most
	// MaxHOTPCounter); refused for the other types.
	Counter *uint64 `json:"counter,omitempty"`
}

// enrolResponse answers an enrolment.
type enrolResponse struct {
	// Username is the enrolled account's canonical name.
	Username string `json:"username"`
	// Type is the factor enrolled.
	Type Type `json:"type"`
	// OTPAuthURI is the otpauth:// URI to show as a QR code: APP only.
	OTPAuthURI string `json:"otpauth_uri,omitempty"`
}

func (s *Service) adminEnrol(w http.ResponseWriter, r *http.Request) error {
	var in enrolRequest
	if err := adminapi.DecodeJSON(r, &in); err != nil {
		return err
	}
	t, err := ParseType(in.Type)
	if err != nil {
		return err
	}
	if in.Counter != nil && t != TypeHardToken {
		return failure.Invalid("counter applies to HARD_TOKEN only")
	}
	u, err := adminapi.PathUser(r, s.engine.Accounts)
	if err != nil {
		return err
	}
	out := enrolResponse{Username: u.Username, Type: t}
	switch t {
	case TypeApp:
		var raw []byte
		if in.Secret != nil {
			if raw, err = DecodeSecret(*in.Secret); err != nil {
				return err
			}
		}
		en, err := s.EnrolApp(r.Context(), u, raw)
		if err != nil {
			return err
		}
		out.OTPAuthURI = en.URI
	case TypeHardToken:
		if in.Secret == nil {
			return failure.Invalid("HARD_TOKEN needs the token's base32 secret")
		}
		var counter uint64
		if in.Counter != nil {
			counter = *in.Counter
		}
		if err := s.EnrolHardToken(r.Context(), u, *in.Secret, counter); err != nil {
			return err
		}
	case TypeSMS:
		if in.Secret != nil {
			return failure.Invalid("SMS takes no secret: codes are generated and sent when needed")
		}
		if err := s.EnrolSMS(r.Context(), u); err != nil {
			return err
		}
	}
	adminapi.Note(r, u.Username, "second factor "+string(t)+" enrolled")
	return adminapi.WriteJSON(w, http.StatusCreated, out)
}

// StatusView is the admin API's view of a user's second factors, with the
// fields the ESA profile shows.
type StatusView struct {
	// Username is the account's canonical name.
	Username string `json:"username"`
	// Types are the enabled second factors; never null.
	Types []Type `json:"credential_type"`
	// IsLocked is true when ConsecutiveFailures has reached the lockout
	// threshold.
	IsLocked bool `json:"is_locked"`
	// ConsecutiveFailures counts failed checks since the last success or
	// unlock.
	ConsecutiveFailures int64 `json:"consecutive_failures"`
	// LastSuccess is the time of the last passed check; null when none.
	LastSuccess *time.Time `json:"last_success"`
	// LastFailure is the time of the last failed check; null when none.
	LastFailure *time.Time `json:"last_failure"`
}

func (s *Service) adminStatus(w http.ResponseWriter, r *http.Request) error {
	u, err := adminapi.PathUser(r, s.engine.Accounts)
	if err != nil {
		return err
	}
	st, err := s.Status(r.Context(), u)
	if err != nil {
		return err
	}
	return adminapi.WriteJSON(w, http.StatusOK, StatusView{Username: u.Username, Types: st.Types, IsLocked: st.Locked,
		ConsecutiveFailures: st.ConsecutiveFailures, LastSuccess: st.LastSuccess, LastFailure: st.LastFailure})
}

func (s *Service) adminDeprovision(w http.ResponseWriter, r *http.Request) error {
	u, err := adminapi.PathUser(r, s.engine.Accounts)
	if err != nil {
		return err
	}
	if err := s.Deprovision(r.Context(), u); err != nil {
		return err
	}
	adminapi.Note(r, u.Username, "every second factor removed")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) adminRemove(w http.ResponseWriter, r *http.Request) error {
	t, err := ParseType(r.PathValue("type"))
	if err != nil {
		return err
	}
	u, err := adminapi.PathUser(r, s.engine.Accounts)
	if err != nil {
		return err
	}
	if err := s.Remove(r.Context(), u, t); err != nil {
		return err
	}
	adminapi.Note(r, u.Username, "second factor "+string(t)+" removed")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) adminUnlock(w http.ResponseWriter, r *http.Request) error {
	u, err := adminapi.PathUser(r, s.engine.Accounts)
	if err != nil {
		return err
	}
	if err := s.UnlockAll(r.Context(), u); err != nil {
		return err
	}
	adminapi.Note(r, u.Username, "second factors unlocked")
	w.WriteHeader(http.StatusNoContent)
	return nil
}
