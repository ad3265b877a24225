package account

import (
	"strings"

	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/guard"
)

// Rule allows the listed methods on the listed paths.
type Rule struct {
	// Methods are HTTP methods ("GET", "POST", …) or "*" for any.
	Methods []string `json:"methods"`
	// Paths are patterns: an exact path ("/api/status"), a prefix ending in
	// "/*" ("/api/*" matches "/api/" and everything below it), or "*" for
	// any; see ValidatePattern.
	Paths []string `json:"paths"`
}

// Role is a named set of rules. A request is allowed when one rule of one
// of the user's roles matches its method and path.
type Role struct {
	// Name identifies the role.
	Name string `json:"name"`
	// Rules are the operations the role allows.
	Rules []Rule `json:"rules"`
	// Admin marks roles with administrative reach; app keys issued to their
	// holders carry a warning.
	Admin bool `json:"admin"`
	// Generation is a random ID given to the role when it is created and
	// kept while it is replaced. A user holds the role only while the
	// generation recorded at assignment (User.RoleGenerations) is the
	// role's: a role deleted while being assigned, then created again
	// under its name, is not handed to that user. Empty for roles created
	// by earlier versions. Kept in the store (storedRole), not shown by
	// the admin API.
	Generation string `json:"-"`
}

// storedRole is a role as the store keeps it, with its generation.
type storedRole struct {
	Role
	Generation string `json:"generation,omitempty"`
}

// validate checks and canonicalises the rules (methods upper-cased).
func (r *Role) validate() error {
	if err := ValidateName("role", r.Name); err != nil {
		return err
	}
	if len(r.Rules) > 256 {
		return failure.Invalid("a role holds at most 256 rules")
	}
	for i := range r.Rules {
		rule := &r.Rules[i]
		n := i + 1 // numbered from 1, as the console's rules lines and rule tester are
		if len(rule.Methods) == 0 || len(rule.Paths) == 0 {
			return failure.Invalid("rule %d needs at least one method and one path", n)
		}
		for j, m := range rule.Methods {
			m = strings.ToUpper(m)
			if m != "*" && !validToken(m) {
				return failure.Invalid("rule %d: %q is not an HTTP method", n, rule.Methods[j])
			}
			rule.Methods[j] = m
		}
		for _, p := range rule.Paths {
			if err := ValidatePattern(p); err != nil {
				return failure.Invalid("rule %d: %v", n, err)
			}
		}
	}
	return nil
}

func validToken(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

type patternError string

// Error implements error.
func (e patternError) Error() string { return string(e) }

// ValidatePattern checks a path pattern of a rule or a route's public
// list: "*", an exact path ("/api/status") or a prefix ending in "/*"
// ("/api/*"), the path in its clean form (guard.IsClean) — so that "/public*"
// (a string prefix that would match "/publicadmin") and "/public/../admin"
// (which no clean request path matches) are refused rather than kept.
func ValidatePattern(p string) error {
	base, prefix := strings.CutSuffix(p, "/*")
	switch {
	case p == "*":
		return nil
	case !strings.HasPrefix(p, "/"):
		return patternError("path pattern " + quote(p) + " must start with '/' or be '*'")
	case strings.Contains(base, "*"):
		return patternError("path pattern " + quote(p) + " may hold '*' only as its last segment (" + quote(prefixPattern(p)) + ")")
	case prefix && !guard.IsClean(base+"/"), !prefix && !guard.IsClean(p):
		return patternError("path pattern " + quote(p) + ` must be a clean path: no "." or ".." segments, empty ones or backslashes`)
	}
	return nil
}

func quote(s string) string { return `"` + s + `"` }

// prefixPattern is the prefix pattern a pattern with a misplaced '*'
// likely meant: "/public*" → "/public/*", "/api/*/x" → "/api/*".
func prefixPattern(p string) string {
	base, _, _ := strings.Cut(p, "*")
	return strings.TrimRight(base, "/") + "/*"
}

// Allows reports whether the rule matches method and the clean path
// (guard.Contract.Inbound returns it).
func (r *Rule) Allows(method, cleanPath string) bool {
	return r.allowsMethod(method) && r.allowsPath(cleanPath)
}

func (r *Rule) allowsMethod(method string) bool {
	for _, m := range r.Methods {
		if m == "*" || m == method {
			return true
		}
	}
	return false
}

func (r *Rule) allowsPath(p string) bool {
	for _, pattern := range r.Paths {
		if MatchPath(pattern, p) {
			return true
		}
	}
	return false
}

// MatchPath reports whether a clean request path (guard.Contract.Inbound
// returns it; guard.IsClean) matches pattern.
func MatchPath(pattern, cleanPath string) bool {
	if pattern == "*" {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		// "/api/*", or, stored before ValidatePattern refused it, "/api*":
		// a prefix that matches at a segment boundary only.
		return strings.HasPrefix(cleanPath, prefix) &&
			(strings.HasSuffix(prefix, "/") || len(cleanPath) == len(prefix) || cleanPath[len(prefix)] == '/')
	}
	return cleanPath == pattern
}

// Allows reports whether any rule of the role matches.
func (r *Role) Allows(method, cleanPath string) bool {
	for i := range r.Rules {
		if r.Rules[i].Allows(method, cleanPath) {
			return true
		}
	}
	return false
}
