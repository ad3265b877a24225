package account

import (
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/failure"
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
	Username     string    `json:"username"`
	ID           string    `json:"id"`
	Roles        []string  `json:"roles"`
	Status       Status    `json:"status"`
	PasswordHash string    `json:"password_hash,omitempty"`
	MobileNumber string    `json:"mobile_number,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// UserView is the admin API's representation of a user.
type UserView struct {
	Username     string    `json:"username"`
	Roles        []string  `json:"roles"`
	Status       Status    `json:"status"`
	HasPassword  bool      `json:"has_password"`
	MobileNumber string    `json:"mobile_number,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// View returns the user without secrets.
func (u *User) View() UserView {
	return UserView{Username: u.Username, Roles: u.Roles, Status: u.Status, HasPassword: u.PasswordHash != "",
		MobileNumber: u.MobileNumber, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

// Active reports whether the account may authenticate.
func (u *User) Active() bool { return u.Status == StatusActive }

// NewUser is the body of POST /gatehouse/users.
type NewUser struct {
	Username     string   `json:"username"`
	Roles        []string `json:"roles"`
	Password     *string  `json:"password,omitempty"`
	MobileNumber string   `json:"mobile_number,omitempty"`
}

// UserPatch is the body of PATCH /gatehouse/users/{username}; absent fields
// stay as they are.
type UserPatch struct {
	Roles        *[]string `json:"roles,omitempty"`
	Status       *Status   `json:"status,omitempty"`
	Password     *string   `json:"password,omitempty"`
	MobileNumber *string   `json:"mobile_number,omitempty"`
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
