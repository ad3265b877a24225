package account

import (
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
)

// Status is an account's state.
type Status string

// Account states: only active accounts authenticate.
const (
	StatusActive  Status = "active"
	StatusBlocked Status = "blocked"
)

// User is an account as stored. PasswordHash never leaves the service:
// the admin API shows View().
type User struct {
	// Username is the account's canonical name (see NormalizeUsername).
	Username string `json:"username"`
	// ID is the account's immutable random ID (32 hex digits); credentials
	// bound to it stop working when the account is deleted and re-created.
	ID string `json:"id"`
	// Roles are the names of the account's roles, sorted and deduplicated.
	Roles []string `json:"roles"`
	// RoleGenerations holds, for each role in Roles, the role's
	// Generation when it was assigned (absent: ""); see Role.Generation.
	RoleGenerations map[string]string `json:"role_generations,omitempty"`
	// Status is the account's state; only StatusActive authenticates.
	Status Status `json:"status"`
	// PasswordHash is the PHC-format argon2id hash of the password; empty
	// means the account has no password.
	PasswordHash string `json:"password_hash,omitempty"`
	// MobileNumber is the number text messages go to; empty means none.
	MobileNumber string `json:"mobile_number,omitempty"`
	// DirectoryMobile is, on a directory account as loaded, the number
	// its directory entry holds (mobile, else telephoneNumber) when it is
	// one; never stored. No text goes to it: an administrator's action
	// makes it MobileNumber when that is empty (Service.AdoptDirectoryMobile).
	DirectoryMobile string `json:"-"`
	// DirectoryProblem is, on a directory account as a password check
	// loaded it, why the directory's status keeps it from signing in
	// (directory.Entry.Problem, "deleted" or "replaced"); empty when it
	// does not. Never stored: for the audit log of its refusal.
	DirectoryProblem string `json:"-"`
	// Source is where the account's password, status and roles come
	// from: empty (local) or SourceDirectory.
	Source string `json:"source,omitempty"`
	// DN is a directory account's entry when it was first seen.
	DN string `json:"dn,omitempty"`
	// DirectoryID is a directory account's entry ID (directory.Entry.ID)
	// when it was first seen: an entry of the same name with another ID
	// is another account (deleted and created again), which this record's
	// credentials do not reach. Empty for records made before IDs were kept.
	DirectoryID string `json:"directory_id,omitempty"`
	// CreatedAt is when the account was created (UTC).
	CreatedAt time.Time `json:"created_at"`
	// UpdatedAt is when the account was last changed (UTC).
	UpdatedAt time.Time `json:"updated_at"`
	// SessionsEndedAt is when the account's sessions were last ended (UTC):
	// by a password change, a block, a change of its mobile number or
	// second factors, or EndSessions. Zero: never.
	SessionsEndedAt time.Time `json:"sessions_ended_at,omitzero"`
	// SessionEpoch counts those ends. A session, and a half-finished
	// portal login, carries the epoch it started in and is refused once
	// the account's has moved on (no clocks compared: instances' clocks
	// may differ).
	SessionEpoch uint64 `json:"session_epoch,omitempty"`
	// TokenEpoch counts the account's blocks. A connector token pair
	// carries the epoch it was issued in and is refused once the
	// account's has moved on, so that an unblock does not revive tokens
	// the block ended: the connector requests a new pair.
	TokenEpoch uint64 `json:"token_epoch,omitempty"`
	// joinedRoles is Roles joined, made when the record is decoded (as it
	// is read into the cache), for the requests of the account (Authorize).
	joinedRoles identity.JoinedRoles
	// usernameValue is Username boxed, made when the record is decoded,
	// for the {http.auth.user.id} placeholder of the account's requests
	// (Authorize, identity.Identity.UsernameValue).
	usernameValue any
}

// endSessions ends the account's sessions as of now (see SessionEpoch).
func (u *User) endSessions(now time.Time) {
	u.SessionsEndedAt = now
	u.SessionEpoch++
}

// UserView is the admin API's representation of a user.
type UserView struct {
	// Username is the account's canonical name.
	Username string `json:"username"`
	// Roles are the names of the account's roles, sorted.
	Roles []string `json:"roles"`
	// Status is the account's state ("active" or "blocked").
	Status Status `json:"status"`
	// HasPassword reports whether the account has a password set.
	HasPassword bool `json:"has_password"`
	// MobileNumber is the number text messages go to; omitted when none.
	MobileNumber string `json:"mobile_number,omitempty"`
	// Source is "local" or "directory".
	Source string `json:"source"`
	// Directory is a directory account's cached directory status; its
	// roles, not Roles, are the ones that count.
	Directory *DirectoryView `json:"directory,omitempty"`
	// CreatedAt is when the account was created (UTC).
	CreatedAt time.Time `json:"created_at"`
	// UpdatedAt is when the account was last changed (UTC).
	UpdatedAt time.Time `json:"updated_at"`
	// SessionsEndedAt is when the account's sessions were last ended;
	// omitted when never.
	SessionsEndedAt time.Time `json:"sessions_ended_at,omitzero"`
}

// View returns the user without secrets.
func (u *User) View() UserView {
	source := SourceLocal
	if u.FromDirectory() {
		source = SourceDirectory
	}
	return UserView{Username: u.Username, Roles: u.Roles, Status: u.Status, HasPassword: u.PasswordHash != "",
		MobileNumber: u.MobileNumber, Source: source, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt, SessionsEndedAt: u.SessionsEndedAt}
}

// TextNumber is the number an administrator's text to u would go to
// (an enrolment link): its own, or else its directory's, which that text
// adopts. A sign-in's code goes to MobileNumber only.
func (u *User) TextNumber() string {
	if u.MobileNumber != "" {
		return u.MobileNumber
	}
	return u.DirectoryMobile
}

// Active reports whether the account may authenticate.
func (u *User) Active() bool { return u.Status == StatusActive }

// NewUser is the body of POST /gatehouse/users.
type NewUser struct {
	// Username is the requested name; it is stored in canonical form.
	Username string `json:"username"`
	// Roles name existing roles to grant the account.
	Roles []string `json:"roles"`
	// Password is the initial password (at least 8 characters); nil creates
	// the account without one.
	Password *string `json:"password,omitempty"`
	// MobileNumber is an optional E.164-like number for text messages.
	MobileNumber string `json:"mobile_number,omitempty"`
}

// UserPatch is the body of PATCH /gatehouse/users/{username}; absent fields
// stay as they are.
type UserPatch struct {
	// Roles replaces the account's roles; each must exist.
	Roles *[]string `json:"roles,omitempty"`
	// Status sets the account's state: "active" or "blocked".
	Status *Status `json:"status,omitempty"`
	// Password sets a new password; an empty string removes it.
	Password *string `json:"password,omitempty"`
	// MobileNumber sets the number for text messages; empty clears it.
	MobileNumber *string `json:"mobile_number,omitempty"`
}

// ValidateMobileNumber accepts E.164-like numbers: an optional '+' and 6 to
// 15 digits (spaces and dashes removed). Empty clears the number.
func ValidateMobileNumber(n string) (string, error) {
	if n == "" {
		return "", nil
	}
	cleaned := strings.NewReplacer(" ", "", "-", "").Replace(n)
	digits := strings.TrimPrefix(cleaned, "+")
	if len(digits) < 6 || len(digits) > 15 || strings.Trim(digits, "0123456789") != "" {
		return "", failure.Invalid("mobile_number %q is not a phone number (+ and 6 to 15 digits)", n)
	}
	return cleaned, nil
}

func normalizeRoleList(roles []string) ([]string, error) {
	out := make([]string, 0, len(roles))
	for _, r := range roles {
		if err := ValidateName("role", r); err != nil {
			return nil, err
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out, nil
}
