package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/gatehouse-auth/gatehouse/assertion"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/migrate"
	"github.com/gatehouse-auth/gatehouse/storage/tagged"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "gatehouse",
		Usage: "<users|roles|directory|audit|api|migrate|tag-records|rotate-signing-key> …",
		Short: "Manages Gatehouse users, roles and credentials through the admin API",
		Long: `
Manages a running Gatehouse through Caddy's admin endpoint (--address,
default localhost:2019). Every subcommand but 'migrate', 'tag-records' and
'rotate-signing-key' is a thin wrapper of an admin API call and prints its
JSON answer; 'api' makes any call of the admin API. 'migrate' copies the
state between stores offline, 'tag-records' tags the records of a store
written by a version before record tags, and 'rotate-signing-key' retires
the identity assertions' signing key, all three without the admin API.`,
		CobraFunc: buildCLI,
	})
}

func buildCLI(cmd *cobra.Command) {
	asGroup(cmd)
	var address string
	cmd.PersistentFlags().StringVar(&address, "address", "localhost:2019", "Caddy admin endpoint")
	call := func(method, path string, body any) error {
		return adminCall(cmd.OutOrStdout(), address, method, path, body)
	}
	cmd.AddCommand(usersCommand(call), rolesCommand(call), directoryCommand(call), auditCommand(call), apiCommand(call),
		migrateCommand(), tagRecordsCommand(), rotateSigningKeyCommand())
}

// asGroup makes cmd, a command that only holds subcommands, refuse any
// argument that names none of them (a misspelt subcommand: "user block
// alice"), where Cobra would print the help and exit 0, so that a script
// would take it for done; without arguments it prints the help.
func asGroup(cmd *cobra.Command) *cobra.Command {
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) > 0 && args[0] != "help" {
			return fmt.Errorf("unknown command %q for %q", args[0], c.CommandPath())
		}
		return nil
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	return cmd
}

// adminCaller makes one admin API call and prints its answer.
type adminCaller func(method, path string, body any) error

// usersCommand is "caddy gatehouse users": user accounts.
func usersCommand(call adminCaller) *cobra.Command {
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
				pw, err := readSecretLine(c.InOrStdin())
				if err != nil {
					return err
				}
				body["password"] = pw
			}
			return call(http.MethodPost, "/gatehouse/users", body)
		},
	}
	add.Flags().StringSliceVar(&roles, "role", nil, "role to grant (repeatable)")
	add.Flags().StringVar(&mobile, "mobile", "", "mobile number for SMS codes")
	add.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of stdin")
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
			return call(http.MethodPatch, userPath(args[0]), map[string]any{"roles": args[1:]})
		},
	}
	setRoles.Flags().BoolVar(&noRoles, "none", false, "take every role away")
	setPassword := &cobra.Command{
		Use: "set-password <username>", Short: "Set a user's password, read from the first line of stdin", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			pw, err := readSecretLine(c.InOrStdin())
			if err != nil {
				return err
			}
			if pw == "" {
				// The admin API reads an empty password as "remove it": a
				// job run with stdin closed must not do that.
				return errors.New("set-password: no password on the first line of stdin (to remove one: api PATCH /gatehouse/users/<name> '{\"password\":\"\"}')")
			}
			return call(http.MethodPatch, userPath(args[0]), map[string]any{"password": pw})
		},
	}
	users.AddCommand(add, setRoles, setPassword,
		simple("list", "List users", 0, func([]string) error { return call(http.MethodGet, "/gatehouse/users", nil) }),
		simple("get <username>", "Show a user", 1, func(a []string) error { return call(http.MethodGet, userPath(a[0]), nil) }),
		simple("delete <username>", "Delete a user", 1, func(a []string) error { return call(http.MethodDelete, userPath(a[0]), nil) }),
		simple("block <username>", "Block a user", 1, func(a []string) error {
			return call(http.MethodPatch, userPath(a[0]), map[string]string{"status": "blocked"})
		}),
		simple("unblock <username>", "Unblock a user", 1, func(a []string) error {
			return call(http.MethodPatch, userPath(a[0]), map[string]string{"status": "active"})
		}),
		simple("end-sessions <username>", "End every session of a user", 1, func(a []string) error {
			return call(http.MethodDelete, userPath(a[0])+"/sessions", nil)
		}),
	)
	return users
}

// rolesCommand is "caddy gatehouse roles": roles and their rules.
func rolesCommand(call adminCaller) *cobra.Command {
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
			return call(http.MethodPut, rolePath(args[0]), map[string]any{"rules": rules, "admin": admin})
		},
	}
	put.Flags().StringArrayVar(&allow, "allow", nil, `rule "METHODS PATHS" (repeatable)`)
	put.Flags().BoolVar(&admin, "admin", false, "mark the role as administrative (put replaces the whole role: without it, the role is not)")
	rolesCmd.AddCommand(put,
		simple("list", "List roles", 0, func([]string) error { return call(http.MethodGet, "/gatehouse/roles", nil) }),
		simple("get <name>", "Show a role", 1, func(a []string) error { return call(http.MethodGet, rolePath(a[0]), nil) }),
		simple("delete <name>", "Delete a role", 1, func(a []string) error { return call(http.MethodDelete, rolePath(a[0]), nil) }),
	)
	return rolesCmd
}

// directoryCommand is "caddy gatehouse directory": accounts of the
// LDAP directory.
func directoryCommand(call adminCaller) *cobra.Command {
	directoryCmd := asGroup(&cobra.Command{Use: "directory", Short: "Manage accounts of the LDAP directory"})
	directoryCmd.AddCommand(
		simple("refresh <username>", "Read a directory account's status and groups at once", 1, func(a []string) error {
			return call(http.MethodPost, "/gatehouse/directory/refresh/"+url.PathEscape(a[0]), nil)
		}),
	)
	return directoryCmd
}

// auditCommand is "caddy gatehouse audit": the audit log, filtered.
func auditCommand(call adminCaller) *cobra.Command {
	var auditUser, auditKind, auditOutcome, auditSince, auditUntil, auditLimit string
	auditCmd := &cobra.Command{
		Use: "audit", Short: "Show audit events, newest first", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"username": auditUser, "kind": auditKind, "outcome": auditOutcome,
				"since": auditSince, "until": auditUntil, "limit": auditLimit} {
				if v != "" {
					q.Set(k, v)
				}
			}
			return call(http.MethodGet, "/gatehouse/audit?"+q.Encode(), nil)
		},
	}
	auditCmd.Flags().StringVar(&auditUser, "username", "", "only this user's events")
	auditCmd.Flags().StringVar(&auditKind, "kind", "", "only events of this kind")
	auditCmd.Flags().StringVar(&auditOutcome, "outcome", "", "only events of this outcome (allowed, denied, success, failure)")
	auditCmd.Flags().StringVar(&auditSince, "since", "", "only events since this RFC 3339 time")
	auditCmd.Flags().StringVar(&auditUntil, "until", "", "only events before this RFC 3339 time (the next page: the time of the last event shown)")
	auditCmd.Flags().StringVar(&auditLimit, "limit", "", "at most this many events")
	return auditCmd
}

// apiCommand is "caddy gatehouse api": any admin API call.
func apiCommand(call adminCaller) *cobra.Command {
	return &cobra.Command{
		Use: "api <METHOD> <path> [json-body | -]", Short: "Call any admin endpoint (- reads the body from stdin)", Args: cobra.RangeArgs(2, 3),
		RunE: func(c *cobra.Command, args []string) error {
			var body any
			switch {
			case len(args) == 3 && args[2] == "-":
				// From stdin: a body with a secret stays off the command line.
				raw, err := io.ReadAll(io.LimitReader(c.InOrStdin(), 64<<20))
				if err != nil {
					return fmt.Errorf("reading the body from stdin: %v", err)
				}
				body = json.RawMessage(raw)
			case len(args) == 3:
				body = json.RawMessage(args[2])
			}
			return call(strings.ToUpper(args[0]), args[1], body)
		},
	}
}

// migrateCommand is "caddy gatehouse migrate": the one subcommand that
// opens the stores itself instead of calling the admin API.
func migrateCommand() *cobra.Command {
	var from, to string
	var resume bool
	c := &cobra.Command{
		Use:   "migrate --from <location> --to <location>",
		Short: "Copies all Gatehouse state between Badger and Redis stores (offline, not through the admin API)",
		Long: `
Copies every record of one Gatehouse store to another, each with its
remaining lifetime, e.g. from the embedded Badger database to a Redis
server or back. Unlike the other subcommands it does not use the admin API
(--address is ignored): it opens both stores itself.

A location is badger:<dir> or redis://[user:password@]host:port/db
(rediss:// for TLS). For badger, <dir> may be Gatehouse's data_dir or its
Badger directory: if <dir>/badger exists it is used, otherwise <dir> itself
is the Badger directory. A Badger destination is created in a missing or
empty directory only; for a data_dir without a database yet, name
<data_dir>/badger.

Caddy must be stopped while a Badger store is migrated: Badger locks its
directory. Records whose expiry has passed are skipped; records without
expiry stay without expiry. The destination must be empty: a copy deletes
nothing, so records the destination held and the source lacks (a key or
user deleted since, a token revoked) would come back. To move data back to
where it came from, migrate into a new directory (or an emptied Redis
database) and move the old one aside. --resume continues an interrupted
copy into the destination it was filling; records already there are
overwritten by the source's. Progress and a summary go to stderr; the
password of a Redis URL is never printed.

Example:
  caddy gatehouse migrate --from badger:/var/lib/caddy/gatehouse --to redis://:secret@10.0.0.5:6379/0`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			into := migrate.IntoEmpty
			if resume {
				into = migrate.IntoPartial
			}
			return runMigrate(c.ErrOrStderr(), withEnvPassword(from), withEnvPassword(to), into)
		},
	}
	c.Flags().StringVar(&from, "from", "", "source store: "+migrate.LocationHelp)
	c.Flags().StringVar(&to, "to", "", "destination store: "+migrate.LocationHelp)
	c.Flags().BoolVar(&resume, "resume", false, "continue an interrupted copy into the destination it was filling")
	c.MarkFlagRequired("from")
	c.MarkFlagRequired("to")
	return c
}

// runMigrate copies the store at from to the store at to, printing
// progress at most once a second and a summary line to out.
func runMigrate(out io.Writer, from, to string, into migrate.Into) error {
	src, err := migrate.ParseLocation(from)
	if err != nil {
		return fmt.Errorf("--from: %v", err)
	}
	dst, err := migrate.ParseLocation(to)
	if err != nil {
		return fmt.Errorf("--to: %v", err)
	}
	if src.String() == dst.String() {
		return fmt.Errorf("--from and --to are the same store (%s)", src)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := caddy.Log().Named("gatehouse.migrate")
	srcStore, err := src.Open(ctx, migrate.Source, log)
	if err != nil {
		return fmt.Errorf("opening --from store: %w", err)
	}
	defer srcStore.Close()
	dstStore, err := dst.Open(ctx, migrate.Destination, log)
	if err != nil {
		return fmt.Errorf("opening --to store: %w", err)
	}
	defer dstStore.Close()

	res, err := migrate.Copy(ctx, srcStore, dstStore, into, progress(out, "migrate: %d records copied\n"))
	switch {
	case errors.Is(err, migrate.ErrNotEmpty):
		return fmt.Errorf("migrate: nothing copied: %s already holds records. A copy deletes nothing, so what it holds and %s lacks "+
			"(a key or user deleted since, a token revoked) would come back: migrate into a new directory or an emptied Redis database "+
			"and move the old one aside. --resume continues an interrupted copy into it", dst, src)
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("migrate: interrupted after %d records copied from %s to %s (run it again with --resume to finish)", res.Copied, src, dst)
	case err != nil:
		return fmt.Errorf("migrate: after %d records copied from %s to %s (run it again with --resume to finish): %w", res.Copied, src, dst, err)
	}
	if err := dstStore.Close(); err != nil {
		return fmt.Errorf("migrate: closing %s: %w", dst, err)
	}
	fmt.Fprintf(out, "migrate: copied %d records (%d expired skipped) from %s to %s\n", res.Copied, res.Expired, src, dst)
	return nil
}

// tagRecordsCommand is "caddy gatehouse tag-records": the upgrade step
// from a version before record tags, run once by the operator.
func tagRecordsCommand() *cobra.Command {
	var store, keystorePath string
	var resume bool
	c := &cobra.Command{
		Use:   "tag-records --store <location> --keystore <file>",
		Short: "Tags every record of a store written by a version before record tags (offline, once)",
		Long: `
Gatehouse checks a tag (an HMAC under a key derived from the keystore) on
every record it reads, so that whoever can write to the store without the
keystore cannot forge a record. A store written by a version before tags
is refused at start-up until this command has tagged it; it never tags
records by itself, since records written without the keystore look just
the same as an older version's.

Run it once per store, with every Gatehouse instance using the store
stopped, with the store's keystore file. A location is as for 'migrate'.
If a run was interrupted, run it again with --resume. Without --resume it
refuses a store of which some records are tagged already, since records
written beside them without the keystore look the same: in that case find
out what wrote the untagged records first. Once a keystore has been used
with a tagged store (a file <keystore>.tagged says so), it refuses
untagged records altogether: restore the store from a backup instead.

Example:
  caddy gatehouse tag-records --store badger:/var/lib/caddy/gatehouse --keystore /var/lib/caddy/gatehouse/keystore.key`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runTagRecords(c.ErrOrStderr(), withEnvPassword(store), keystorePath, resume)
		},
	}
	c.Flags().StringVar(&store, "store", "", "the store: "+migrate.LocationHelp)
	c.Flags().StringVar(&keystorePath, "keystore", "", "the keystore file the store's secrets are sealed with")
	c.Flags().BoolVar(&resume, "resume", false, "continue an interrupted run (records tagged already are kept)")
	c.MarkFlagRequired("store")
	c.MarkFlagRequired("keystore")
	return c
}

// runTagRecords tags the untagged records of the store at location with
// the keystore at keystorePath, printing progress at most once a second
// and a summary line to out.
func runTagRecords(out io.Writer, location, keystorePath string, resume bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	loc, ks, st, err := openOffline(ctx, "tag-records", location, keystorePath)
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := tagged.Upgrade(ctx, st, ks, resume, progress(out, "tag-records: %d records tagged\n"))
	if err != nil {
		return fmt.Errorf("tag-records: %s, after %d records tagged: %w", loc, n, err)
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("tag-records: closing %s: %w", loc, err)
	}
	if err := ks.NoteTaggedStore(); err != nil {
		fmt.Fprintf(out, "tag-records: warning: %v\n", err)
	}
	fmt.Fprintf(out, "tag-records: tagged %d records of %s; Gatehouse can start on it\n", n, loc)
	return nil
}

// rotateSigningKeyCommand is "caddy gatehouse rotate-signing-key": the
// signing key of the identity assertions replaced, offline.
func rotateSigningKeyCommand() *cobra.Command {
	var store, keystorePath string
	c := &cobra.Command{
		Use:   "rotate-signing-key --store <location> --keystore <file>",
		Short: "Replaces the identity assertions' signing key (offline)",
		Long: `
Replaces the signing key of the identity assertions (X-Gatehouse-Assertion)
in the store with a new one, sealed with the store's keystore. Every
instance started afterwards signs with the new key, and the JWKS
(/.well-known/gatehouse/jwks.json) lists only it, so assertions signed
with the old one no longer verify. Use it when the key may have leaked, or
on a schedule. Upstreams that cache the JWKS fetch it again when an
assertion names a key they do not know (docs/upstreams.md).

Stop every Gatehouse instance that uses the store first (Badger's
directory is locked while Caddy runs anyway): a running instance keeps
signing with the key it loaded, and publishing it, until it restarts. The
keystore must be the store's: the old key is opened with it before
anything is written. A location is as for 'migrate'.

Example:
  caddy gatehouse rotate-signing-key --store badger:/var/lib/caddy/gatehouse --keystore /var/lib/caddy/gatehouse/keystore.key`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runRotateSigningKey(c.ErrOrStderr(), withEnvPassword(store), keystorePath)
		},
	}
	c.Flags().StringVar(&store, "store", "", "the store: "+migrate.LocationHelp)
	c.Flags().StringVar(&keystorePath, "keystore", "", "the keystore file the store's secrets are sealed with")
	c.MarkFlagRequired("store")
	c.MarkFlagRequired("keystore")
	return c
}

// runRotateSigningKey replaces the assertion signing key of the store at
// location, sealed with the keystore at keystorePath, and says so on out.
func runRotateSigningKey(out io.Writer, location, keystorePath string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	loc, ks, st, err := openOffline(ctx, "rotate-signing-key", location, keystorePath)
	if err != nil {
		return err
	}
	defer st.Close()
	records, err := tagged.Open(ctx, st, ks, tagged.Options{})
	var oldKID, newKID string
	if err == nil {
		oldKID, newKID, err = assertion.RotateKey(ctx, records, ks)
	}
	if err != nil {
		return fmt.Errorf("rotate-signing-key: %s: nothing changed: %w", loc, err)
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("rotate-signing-key: closing %s: %w", loc, err)
	}
	fmt.Fprintf(out, "rotate-signing-key: %s signs with key %s now (was %s); start Gatehouse (an instance still running "+
		"signs with the old key and publishes only it until it restarts: restart every instance of the store now)\n", loc, newKID, oldKID)
	return nil
}

// openOffline opens the store at location (which must exist) and the
// keystore at keystorePath for the offline subcommand name; the caller
// closes the store.
func openOffline(ctx context.Context, name, location, keystorePath string) (migrate.Location, *keystore.Keystore, storage.Store, error) {
	loc, err := migrate.ParseLocation(location)
	if err != nil {
		return loc, nil, nil, fmt.Errorf("--store: %v", err)
	}
	ks, err := keystore.Open(keystorePath, false)
	if err != nil {
		return loc, nil, nil, fmt.Errorf("--keystore: %w", err)
	}
	st, err := loc.Open(ctx, migrate.Source, caddy.Log().Named("gatehouse."+name))
	if err != nil {
		return loc, nil, nil, fmt.Errorf("opening --store: %w", err)
	}
	return loc, ks, st, nil
}

// redisPasswordEnv names the environment variable the offline commands
// take the password of a redis:// location from when the URL has none, so
// that it stays off the command line (ps, the shell's history).
const redisPasswordEnv = "GATEHOUSE_REDIS_PASSWORD"

// withEnvPassword is location with the password of redisPasswordEnv when
// it is a Redis URL without one and the variable is set.
func withEnvPassword(location string) string {
	pw := os.Getenv(redisPasswordEnv)
	if pw == "" || !strings.HasPrefix(location, "redis://") && !strings.HasPrefix(location, "rediss://") {
		return location
	}
	u, err := url.Parse(location)
	if err != nil {
		return location // ParseLocation says what is wrong with it
	}
	if given, _ := u.User.Password(); given != "" {
		return location
	}
	u.User = url.UserPassword(u.User.Username(), pw)
	return u.String()
}

// progress returns a callback printing format with the count so far to
// out, at most once a second, for the offline commands' long runs.
func progress(out io.Writer, format string) func(n int) {
	last := time.Now()
	return func(n int) {
		if time.Since(last) >= time.Second {
			last = time.Now()
			fmt.Fprintf(out, format, n)
		}
	}
}

func simple(use, short string, nargs int, run func([]string) error) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(nargs),
		RunE: func(_ *cobra.Command, args []string) error { return run(args) }}
}

func userPath(username string) string { return "/gatehouse/users/" + url.PathEscape(username) }

func rolePath(name string) string { return "/gatehouse/roles/" + url.PathEscape(name) }

func readSecretLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("reading password from stdin: %v", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// adminCall sends one admin API request and prints the answer; an error
// answer (4xx/5xx) is returned by AdminAPIRequest with the server's message.
func adminCall(out io.Writer, address, method, path string, body any) error {
	route, _, _ := strings.Cut(path, "?")
	for seg := range strings.SplitSeq(route, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("%q cannot be named in an admin API path (the server would read it as a directory of the path)", seg)
		}
	}
	var reader io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		reader = bytes.NewReader(raw)
	}
	resp, err := caddycmd.AdminAPIRequest(address, method, path, http.Header{"Content-Type": {"application/json"}}, reader)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if strings.HasPrefix(route, "/gatehouse/") && resp.StatusCode != http.StatusNoContent && !gatehouseAnswer(resp.Header.Get("Content-Type")) {
		return fmt.Errorf("%s answered %s with Content-Type %q, which Gatehouse's admin API never does; is --address the admin endpoint of the Caddy with Gatehouse?",
			address, resp.Status, resp.Header.Get("Content-Type"))
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if len(raw) > 0 {
		var pretty bytes.Buffer
		if json.Indent(&pretty, raw, "", "  ") == nil {
			raw = append(pretty.Bytes(), '\n')
		}
		if _, err := out.Write(raw); err != nil {
			return err
		}
	}
	return nil
}

// gatehouseAnswer reports whether contentType is one Gatehouse's admin API
// answers with: JSON, or a connector's package (a ZIP file). (Caddy's own
// admin endpoints answer others, or none.)
func gatehouseAnswer(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "application/json" || mt == "application/zip"
}
