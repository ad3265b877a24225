package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/spf13/cobra"
)

// usersCommand is "caddy gatehouse users": user accounts.
func usersCommand(a *adminClient) *cobra.Command {
	users := asGroup(&cobra.Command{Use: "users", Short: "Manage user accounts"})
	var roles []string
	var mobile string
	var passwordStdin bool
	add := &cobra.Command{
		Use: "add <username>", Short: "Create a user", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			body := map[string]any{"username": args[0], "roles": roles}
			if mobile != "" {
				body["mobile_number"] = mobile
			}
			if passwordStdin {
				pw, err := readSecret(c, "password", true)
				if err != nil {
					return err
				}
				body["password"] = pw
			}
			return a.call(http.MethodPost, "/gatehouse/users", body)
		},
	}
	add.Flags().StringSliceVar(&roles, "role", nil, "role to grant (repeatable)")
	add.Flags().StringVar(&mobile, "mobile", "", "mobile number for SMS codes")
	add.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of stdin (typed twice at a prompt when stdin is a terminal)")
	var noRoles bool
	setRoles := &cobra.Command{
		Use: "set-roles <username> <role>...", Short: "Replace a user's roles (--none: take every role away)", Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) == 1 && !noRoles {
				return errors.New("set-roles: name the roles, or give --none to take every role away")
			}
			if len(args) > 1 && noRoles {
				return errors.New("set-roles: --none with roles named")
			}
			return a.call(http.MethodPatch, userPath(args[0]), map[string]any{"roles": args[1:]})
		},
	}
	setRoles.Flags().BoolVar(&noRoles, "none", false, "take every role away")
	setPassword := &cobra.Command{
		Use: "set-password <username>", Short: "Set a user's password, read from the first line of stdin (typed twice at a prompt when stdin is a terminal)", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			pw, err := readSecret(c, "password", true)
			if err != nil {
				return err
			}
			if pw == "" {
				// The admin API reads an empty password as "remove it": a
				// job run with stdin closed must not do that.
				return errors.New("set-password: no password on the first line of stdin (to remove one: api PATCH /gatehouse/users/<name> '{\"password\":\"\"}')")
			}
			return a.call(http.MethodPatch, userPath(args[0]), map[string]any{"password": pw})
		},
	}
	var noMobile bool
	setMobile := &cobra.Command{
		Use: "set-mobile <username> <number> | set-mobile <username> --none", Short: "Set a user's mobile number for SMS codes (--none: remove it)",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(_ *cobra.Command, args []string) error {
			switch {
			case len(args) == 1 && !noMobile:
				return errors.New("set-mobile: give the number, or --none to remove it")
			case len(args) == 2 && noMobile:
				return errors.New("set-mobile: --none with a number given")
			case len(args) == 2 && strings.TrimSpace(args[1]) == "":
				return errors.New("set-mobile: the number is empty (to remove it: --none)")
			}
			return a.call(http.MethodPatch, userPath(args[0]), map[string]string{"mobile_number": strings.Join(args[1:], "")})
		},
	}
	setMobile.Flags().BoolVar(&noMobile, "none", false, "remove the mobile number")
	var prefix, role string
	listUsers := &cobra.Command{
		Use: "list", Short: "List users (read a page at a time)", Args: cobra.NoArgs, PreRunE: refuseEmpty("prefix", "role"),
		RunE: func(*cobra.Command, []string) error {
			return a.list(withQuery("/gatehouse/users", "prefix", prefix, "role", role))
		},
	}
	listUsers.Flags().StringVar(&prefix, "prefix", "", "only users whose name starts with this")
	listUsers.Flags().StringVar(&role, "role", "", "only users holding this role")
	users.AddCommand(add, setRoles, setPassword, setMobile,
		listUsers,
		simple("get <username>", "Show a user", 1, func(args []string) error { return a.call(http.MethodGet, userPath(args[0]), nil) }),
		simple("delete <username>", "Delete a user", 1, func(args []string) error { return a.call(http.MethodDelete, userPath(args[0]), nil) }),
		simple("block <username>", "Block a user", 1, func(args []string) error {
			return a.call(http.MethodPatch, userPath(args[0]), map[string]string{"status": "blocked"})
		}),
		simple("unblock <username>", "Unblock a user", 1, func(args []string) error {
			return a.call(http.MethodPatch, userPath(args[0]), map[string]string{"status": "active"})
		}),
		simple("end-sessions <username>", "End every session of a user", 1, func(args []string) error {
			return a.call(http.MethodDelete, userPath(args[0])+"/sessions", nil)
		}),
	)
	return users
}

// rolesCommand is "caddy gatehouse roles": roles and their rules.
func rolesCommand(a *adminClient) *cobra.Command {
	rolesCmd := asGroup(&cobra.Command{Use: "roles", Short: "Manage roles"})
	var allow []string
	var admin bool
	put := &cobra.Command{
		Use: "put <name>", Short: "Create or replace a role", Args: cobra.ExactArgs(1),
		Long: `Each --allow is "METHODS PATHS", e.g. --allow "GET,HEAD /api/*" --allow "* /public/*".`,
		RunE: func(_ *cobra.Command, args []string) error {
			rules := []map[string][]string{}
			for _, a := range allow {
				methods, paths, ok := strings.Cut(strings.TrimSpace(a), " ")
				if !ok {
					return fmt.Errorf("--allow %q: want \"METHODS PATHS\", e.g. \"GET /api/*\"", a)
				}
				rules = append(rules, map[string][]string{"methods": strings.Split(methods, ","), "paths": strings.Fields(paths)})
			}
			return a.call(http.MethodPut, rolePath(args[0]), map[string]any{"rules": rules, "admin": admin})
		},
	}
	put.Flags().StringArrayVar(&allow, "allow", nil, `rule "METHODS PATHS" (repeatable)`)
	put.Flags().BoolVar(&admin, "admin", false, "mark the role as administrative (put replaces the whole role: without it, the role is not)")
	rolesCmd.AddCommand(put, roleTestCommand(a),
		simple("sites", "List the routes that require roles (require_role), which test --site names", 0, func([]string) error {
			return a.call(http.MethodGet, "/gatehouse/sites", nil)
		}),
		simple("list", "List roles", 0, func([]string) error { return a.call(http.MethodGet, "/gatehouse/roles", nil) }),
		simple("get <name>", "Show a role", 1, func(args []string) error { return a.call(http.MethodGet, rolePath(args[0]), nil) }),
		simple("delete <name>", "Delete a role", 1, func(args []string) error { return a.call(http.MethodDelete, rolePath(args[0]), nil) }),
	)
	return rolesCmd
}

// exitRefused is the exit status of "roles test" when the request would
// be refused: 0 is allowed, and 1 (Caddy's for any error) a call that got
// no answer to the question (an unknown user or site, a bad method or
// path, a path that does not reach the site's route, no admin endpoint). Not 2, the status of a Go program that
// panicked.
const exitRefused = 3

// roleTestCommand is "caddy gatehouse roles test": would a request of a
// user be allowed?
func roleTestCommand(a *adminClient) *cobra.Command {
	var site string
	test := &cobra.Command{
		Use:   "test <username> <METHOD> <path>",
		Short: "Would a request of the user be allowed? Prints the answer; exit status 0 allowed, 3 refused, 1 no answer",
		Long: `Answers as the data plane would whether a request of METHOD for path
(a request target: /api/x?q=1) by the user's credential is allowed, on a
route without require_role or, with --site, on one of the routes that
require roles ('roles sites' lists them). Methods are case-sensitive, as
the rules match them: "get" is answered refused. Prints the admin API's
answer {allowed, why, site, not_routed}; the exit status is 0 when allowed
(a page Gatehouse serves itself to anyone, such as its login portal or
JWKS, is), 3 when refused, and 1 when there is no answer (an unknown user
or site, a bad method or path, a path that does not reach the site's
route, no admin endpoint).`,
		Args: cobra.ExactArgs(3), PreRunE: refuseEmpty("site"),
		RunE: func(_ *cobra.Command, args []string) error {
			raw, err := a.callFor(http.MethodGet, withQuery(userPath(args[0])+"/allowed", "method", args[1], "path", args[2], "site", site), nil)
			if err != nil {
				return err
			}
			var answer adminapi.Allowed
			if err := json.Unmarshal(raw, &answer); err != nil {
				return fmt.Errorf("roles test: the answer is not the admin API's: %v", err)
			}
			if answer.NotRouted {
				// No answer for the route asked about: the request
				// never reaches it.
				os.Exit(1)
			}
			if !answer.Allowed {
				os.Exit(exitRefused)
			}
			return nil
		},
	}
	test.Flags().StringVar(&site, "site", "", "a route that requires roles, as 'roles sites' names it (default: a route without require_role)")
	return test
}

// directoryCommand is "caddy gatehouse directory": accounts of the
// LDAP directory.
func directoryCommand(a *adminClient) *cobra.Command {
	directoryCmd := asGroup(&cobra.Command{Use: "directory", Short: "Manage accounts of the LDAP directory"})
	directoryCmd.AddCommand(
		simple("refresh <username>", "Read a directory account's status and groups at once", 1, func(args []string) error {
			return a.call(http.MethodPost, "/gatehouse/directory/refresh/"+url.PathEscape(args[0]), nil)
		}),
	)
	return directoryCmd
}

// auditCommand is "caddy gatehouse audit": the audit log, filtered.
func auditCommand(a *adminClient) *cobra.Command {
	var user, kind, outcome, since, until string
	var limit int
	filters := []string{"username", "kind", "outcome", "since", "until"}
	auditCmd := &cobra.Command{
		Use: "audit", Short: "Show audit events, newest first", Args: cobra.NoArgs, PreRunE: refuseEmpty(filters...),
		RunE: func(c *cobra.Command, _ []string) error {
			limitValue := ""
			if c.Flags().Changed("limit") {
				limitValue = strconv.Itoa(limit)
			}
			return a.call(http.MethodGet, withQuery("/gatehouse/audit", "username", user, "kind", kind, "outcome", outcome,
				"since", since, "until", until, "limit", limitValue), nil)
		},
	}
	auditCmd.Flags().StringVar(&user, "username", "", "only this user's events")
	auditCmd.Flags().StringVar(&kind, "kind", "", "only events of this kind ("+strings.Join(audit.Kinds, ", ")+")")
	auditCmd.Flags().StringVar(&outcome, "outcome", "", "only events of this outcome (allowed, denied, success, failure)")
	auditCmd.Flags().StringVar(&since, "since", "", "only events since this RFC 3339 time")
	auditCmd.Flags().StringVar(&until, "until", "", "only events before this RFC 3339 time (the next page: the time of the last event shown)")
	auditCmd.Flags().IntVar(&limit, "limit", 100, fmt.Sprintf("at most this many events (1 to %d)", audit.MaxQueryLimit))
	return auditCmd
}

// sessionsCommand is "caddy gatehouse sessions": the portal's sign-in
// sessions.
func sessionsCommand(a *adminClient) *cobra.Command {
	sessions := asGroup(&cobra.Command{Use: "sessions", Short: "List and end sign-in sessions"})
	sessions.AddCommand(
		simple("list <username>", "List a user's live sessions, newest first (never their cookies)", 1, func(args []string) error {
			return a.call(http.MethodGet, withQuery("/gatehouse/sessions", "username", args[0]), nil)
		}),
		simple("end <id>", "End one session", 1, func(args []string) error {
			return a.call(http.MethodDelete, "/gatehouse/sessions/"+url.PathEscape(args[0]), nil)
		}),
	)
	return sessions
}
