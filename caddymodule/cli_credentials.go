package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// appKeysCommand is "caddy gatehouse appkeys": application keys.
func appKeysCommand(a *adminClient) *cobra.Command {
	keys := asGroup(&cobra.Command{Use: "appkeys", Short: "Manage application keys"})
	var owner string
	create := &cobra.Command{
		Use: "create <name> --username <username>", Args: cobra.ExactArgs(1),
		Short: "Create a key; its value is printed (and later by 'key')",
	}
	createFields := keyFieldFlags(create)
	create.RunE = func(_ *cobra.Command, args []string) error {
		body := map[string]any{"name": args[0], "username": owner}
		if err := createFields(body); err != nil {
			return err
		}
		return a.call(http.MethodPost, "/gatehouse/appkeys", body)
	}
	create.Flags().StringVar(&owner, "username", "", "the user the key runs as (required)")
	_ = create.MarkFlagRequired("username")
	create.PreRunE = refuseEmpty("username")

	update := &cobra.Command{
		Use: "update <name> [flags]", Args: cobra.ExactArgs(1),
		Short: "Change the fields given, leave the others (a new expiry or allowlist ends the key's sessions)",
	}
	updateFields := keyFieldFlags(update)
	update.RunE = func(_ *cobra.Command, args []string) error {
		body := map[string]any{}
		if err := updateFields(body); err != nil {
			return err
		}
		if len(body) == 0 {
			return errors.New("update: nothing to change; give the fields to change, e.g. --expires-in 720h or --allow-ip 10.0.0.0/8")
		}
		return a.call(http.MethodPatch, appKeyPath(args[0]), body)
	}

	var listUser, listPrefix string
	list := &cobra.Command{
		Use: "list", Short: "List keys (never their values; read a page at a time)", Args: cobra.NoArgs, PreRunE: refuseEmpty("username", "prefix"),
		RunE: func(*cobra.Command, []string) error {
			return a.list(withQuery("/gatehouse/appkeys", "username", listUser, "prefix", listPrefix))
		},
	}
	list.Flags().StringVar(&listUser, "username", "", "only this user's keys")
	list.Flags().StringVar(&listPrefix, "prefix", "", "only keys whose name starts with this")

	var deleteUser string
	deleteKey := &cobra.Command{
		Use: "delete <name>", Short: "Delete a key (it stops working at once)", Args: cobra.ExactArgs(1), PreRunE: refuseEmpty("username"),
		RunE: func(_ *cobra.Command, args []string) error {
			return a.call(http.MethodDelete, withQuery(appKeyPath(args[0]), "username", deleteUser), nil)
		},
	}
	deleteKey.Flags().StringVar(&deleteUser, "username", "", "delete it only while it is this user's key")

	var grace time.Duration
	rotate := &cobra.Command{
		Use: "rotate <name> [--grace 10m]", Short: "Give a key a new value, printed; the old one works for --grace more", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if grace < 0 || grace%time.Second != 0 {
				return fmt.Errorf("--grace %s: want whole seconds, not negative (e.g. 90s, 10m)", grace)
			}
			return a.call(http.MethodPost, appKeyPath(args[0])+"/rotate", map[string]int64{"grace_seconds": int64(grace / time.Second)})
		},
	}
	rotate.Flags().DurationVar(&grace, "grace", 0, "how long the previous value keeps working")

	keys.AddCommand(create, update, list, deleteKey, rotate,
		simple("get <name>", "Show a key (never its value)", 1, func(args []string) error {
			return a.call(http.MethodGet, appKeyPath(args[0]), nil)
		}),
		simple("key <name>", "Print a key's value (written to the audit log)", 1, func(args []string) error {
			return a.call(http.MethodGet, appKeyPath(args[0])+"/key", nil)
		}),
		simple("reset-expiration <name>", "Set a key's expiry to now plus the configured lifetime", 1, func(args []string) error {
			return a.call(http.MethodPost, appKeyPath(args[0])+"/reset-expiration", nil)
		}),
		simple("purge-expired", "Delete every expired key", 0, func([]string) error {
			return a.call(http.MethodPost, "/gatehouse/appkeys/purge-expired", nil)
		}),
	)
	return keys
}

// keyFieldFlags registers on c the flags of an application key's fields
// that both create and update take, and returns a function adding to a
// request body the fields of the flags given on the command line (and
// only those: an update leaves the others as they are).
func keyFieldFlags(c *cobra.Command) func(body map[string]any) error {
	f := c.Flags()
	texts := []struct{ flag, field, usage string }{
		{"description", "description", "what the key is for"},
		{"project", "project", "the project the key belongs to"},
		{"client-name", "client_name", "the client application using the key"},
		{"documentation", "documentation", "a link to the client's documentation"},
		{"home-url", "home_url", "the client's home page"},
	}
	for _, t := range texts {
		f.String(t.flag, "", t.usage)
	}
	f.StringSlice("allow-ip", nil, "client addresses or CIDR prefixes allowed to use the key (repeatable or comma-separated)")
	f.Bool("allow-any-ip", false, "allow the key from any address (an empty allowlist)")
	f.StringSlice("tag", nil, "tags (repeatable or comma-separated)")
	f.Bool("no-tags", false, "no tags")
	c.MarkFlagsMutuallyExclusive("allow-ip", "allow-any-ip")
	c.MarkFlagsMutuallyExclusive("tag", "no-tags")
	f.String("expires-at", "", "when the key stops working (RFC 3339, e.g. 2027-06-30T00:00:00Z)")
	f.Duration("expires-in", 0, "when the key stops working, from now (e.g. 720h)")
	c.MarkFlagsMutuallyExclusive("expires-at", "expires-in")
	return func(body map[string]any) error {
		for _, t := range texts {
			if f.Changed(t.flag) {
				body[t.field], _ = f.GetString(t.flag)
			}
		}
		lists := []struct{ flag, none, field string }{{"allow-ip", "allow-any-ip", "ip_allowlist"}, {"tag", "no-tags", "tags"}}
		for _, l := range lists {
			if f.Changed(l.flag) {
				values, _ := f.GetStringSlice(l.flag)
				// An empty value ("--allow-ip $IPS" with IPS unset) would
				// say "none", which for the allowlist means any address.
				if len(values) == 0 || slices.ContainsFunc(values, func(v string) bool { return strings.TrimSpace(v) == "" }) {
					return fmt.Errorf("--%s: an empty value (for none: --%s)", l.flag, l.none)
				}
				body[l.field] = values
			}
			if none, _ := f.GetBool(l.none); none {
				body[l.field] = []string{}
			}
		}
		if f.Changed("expires-at") {
			at, _ := f.GetString("expires-at")
			if _, err := time.Parse(time.RFC3339, at); err != nil {
				return fmt.Errorf("--expires-at %q: want an RFC 3339 time, e.g. 2027-06-30T00:00:00Z", at)
			}
			body["expires_at"] = at
		}
		if f.Changed("expires-in") {
			d, _ := f.GetDuration("expires-in")
			if d <= 0 {
				return fmt.Errorf("--expires-in %s: want a time ahead, e.g. 720h", d)
			}
			body["expires_at"] = time.Now().Add(d).UTC().Format(time.RFC3339)
		}
		return nil
	}
}

// connectorsCommand is "caddy gatehouse connectors": connectors and their
// client certificates.
func connectorsCommand(a *adminClient) *cobra.Command {
	connectors := asGroup(&cobra.Command{Use: "connectors", Short: "Manage connectors and their client certificates"})
	var owner, createCSR string
	create := &cobra.Command{
		Use: "create <name> --username <username> [--csr <file>]", Args: cobra.ExactArgs(1), PreRunE: refuseEmpty("username"),
		Short: "Create a connector and its first certificate (without --csr, with a private key printed once)",
		RunE: func(_ *cobra.Command, args []string) error {
			body := map[string]any{"name": args[0], "username": owner}
			if err := addCSR(body, createCSR); err != nil {
				return err
			}
			return a.call(http.MethodPost, "/gatehouse/connectors", body)
		},
	}
	create.Flags().StringVar(&owner, "username", "", "the user the connector acts for (required)")
	create.Flags().StringVar(&createCSR, "csr", "", "a PEM certificate request: the certificate is for its key, and no private key is printed")
	_ = create.MarkFlagRequired("username")

	var reissueCSR string
	reissue := &cobra.Command{
		Use: "reissue <name> [--csr <file>]", Args: cobra.ExactArgs(1),
		Short: "Issue a new certificate; the previous one and its tokens stop working at once",
		RunE: func(_ *cobra.Command, args []string) error {
			body := map[string]any{}
			if err := addCSR(body, reissueCSR); err != nil {
				return err
			}
			return a.call(http.MethodPost, connectorPath(args[0])+"/certificate", body)
		},
	}
	reissue.Flags().StringVar(&reissueCSR, "csr", "", "a PEM certificate request: the certificate is for its key, and no private key is printed")

	var output, format string
	pkg := &cobra.Command{
		Use: "package <name> --output <file.zip>", Args: cobra.ExactArgs(1),
		Short: "Issue a new certificate as a package for the client, encrypted with a password from stdin",
		Long: `
Issues the connector a new certificate and writes the package a client
installs (certificates.pfx, encrypted with the password, and
metadata.json) to --output, a new file only its owner may read ('-':
stdout, when it is not a terminal). The password is the first line of
stdin, or typed twice at a prompt when stdin is a terminal. The
connector's previous certificate, and every token issued with it, stop
working at once.`,
		RunE: func(c *cobra.Command, args []string) error {
			password, err := readSecret(c, "package password", true)
			if err != nil {
				return err
			}
			if password == "" {
				return errors.New("package: no password (it encrypts the package's certificates.pfx)")
			}
			return writePackage(a, args[0], password, format, output, c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	pkg.Flags().StringVarP(&output, "output", "o", "", "the file to write the package to, which must not exist ('-': stdout)")
	_ = pkg.MarkFlagRequired("output")
	pkg.Flags().StringVar(&format, "format", "", `how certificates.pfx is encrypted: "modern" (the default, AES-256) or "legacy" `+
		`(SHA-1 and 3DES, far cheaper to guess the password of: only for clients that cannot read the default, such as macOS Keychain and iOS)`)

	connectors.AddCommand(create, reissue, pkg,
		simple("list", "List connectors (read a page at a time)", 0, func([]string) error { return a.list("/gatehouse/connectors") }),
		simple("get <name>", "Show a connector", 1, func(args []string) error {
			return a.call(http.MethodGet, connectorPath(args[0]), nil)
		}),
		simple("delete <name>", "Revoke a connector and every token issued through it", 1, func(args []string) error {
			return a.call(http.MethodDelete, connectorPath(args[0]), nil)
		}),
	)
	return connectors
}

// addCSR sets body's csr_pem to the certificate request in the file
// named csrFile, when one is named.
func addCSR(body map[string]any, csrFile string) error {
	if csrFile == "" {
		return nil
	}
	f, err := os.Open(csrFile) //nolint:gosec // G304: the operator names the file
	if err != nil {
		return fmt.Errorf("--csr: %v", err)
	}
	defer f.Close()
	const limit = 64 << 10 // a certificate request is a few KiB
	raw, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return fmt.Errorf("--csr: %v", err)
	}
	if len(raw) > limit {
		return fmt.Errorf("--csr %s: over %d KiB, not a certificate request", csrFile, limit>>10)
	}
	body["csr_pem"] = string(raw)
	return nil
}

// writePackage asks for connector name's package, encrypted with password
// in format (the server's default when empty), and writes it to output ("-": stdout). The file is created, new and
// private, before the call, which replaces the connector's certificate:
// a package with nowhere to go is not issued. It is removed again when
// the call fails, or when the command is interrupted during the call.
func writePackage(a *adminClient, name, password, format, output string, stdout, stderr io.Writer) error {
	if output == "-" {
		if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) { //nolint:gosec // G115: a file descriptor fits an int
			return errors.New("package: stdout is a terminal; name a file with --output, or redirect stdout")
		}
		zipped, err := fetchPackage(a, name, password, format)
		if err != nil {
			return err
		}
		if _, err := stdout.Write(zipped); err != nil {
			return lostPackage(name, err)
		}
		return nil
	}
	f, err := os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) //nolint:gosec // G304: the operator names the file
	if err != nil {
		return fmt.Errorf("package: --output: %v (it must be a new file)", err)
	}
	stop := onInterrupt(func() {
		_ = os.Remove(output)
		fmt.Fprintf(stderr, "package: interrupted; %s removed. The certificate of connector %s may have been replaced already "+
			"('connectors get %s' shows its serial): run package again\n", output, name, name)
	})
	zipped, err := fetchPackage(a, name, password, format)
	stop()
	if err == nil {
		_, err = f.Write(zipped)
		if closeErr := f.Close(); err == nil {
			err = closeErr
		}
		if err != nil {
			err = lostPackage(name, err)
		}
	} else {
		_ = f.Close()
	}
	if err != nil {
		_ = os.Remove(output)
		return err
	}
	fmt.Fprintf(stderr, "package of connector %s written to %s; its previous certificate and tokens no longer work\n", name, output)
	return nil
}

// lostPackage is the error of a package issued but not written: the
// connector's certificate was replaced all the same.
func lostPackage(name string, err error) error {
	return fmt.Errorf("package: %v. The package was issued but not written: connector %s's previous certificate and its tokens "+
		"no longer work, and its new one is lost; run package again", err, name)
}

// maxPackageBytes bounds the package read into memory (a few KiB).
const maxPackageBytes = 1 << 20

// fetchPackage makes the package call for connector name (format as in
// writePackage) and returns the
// ZIP file answered, read whole before anything is written.
func fetchPackage(a *adminClient, name, password, format string) ([]byte, error) {
	body := map[string]string{"password": password}
	if format != "" {
		body["format"] = format
	}
	resp, err := a.send(http.MethodPost, connectorPath(name)+"/package", body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/zip" {
		return nil, fmt.Errorf("package: the answer is %q, not a package (application/zip)", resp.Header.Get("Content-Type"))
	}
	zipped, err := io.ReadAll(io.LimitReader(resp.Body, maxPackageBytes+1))
	switch {
	case err != nil:
		return nil, lostPackage(name, err)
	case len(zipped) > maxPackageBytes:
		return nil, lostPackage(name, fmt.Errorf("an answer over %d bytes", maxPackageBytes))
	}
	return zipped, nil
}

// newestFirst orders token pairs (JSON objects with issued_at) newest
// first, those issued at the same time kept in the order they came: the
// order of GET /gatehouse/tokens without a limit, for the pages read in
// connector and ID order.
func newestFirst(pairs []json.RawMessage) error {
	type pair struct {
		raw    json.RawMessage
		issued time.Time
	}
	read := make([]pair, len(pairs))
	for i, raw := range pairs {
		var v struct {
			IssuedAt time.Time `json:"issued_at"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("a token pair in the answer cannot be read: %v", err)
		}
		read[i] = pair{raw, v.IssuedAt}
	}
	slices.SortStableFunc(read, func(x, y pair) int { return y.issued.Compare(x.issued) })
	for i := range read {
		pairs[i] = read[i].raw
	}
	return nil
}

// tokensCommand is "caddy gatehouse tokens": connectors' bearer tokens.
func tokensCommand(a *adminClient) *cobra.Command {
	tokens := asGroup(&cobra.Command{Use: "tokens", Short: "List and revoke connectors' bearer tokens"})
	var username, connector string
	list := &cobra.Command{
		Use: "list", Short: "List tokens (never their values)", Args: cobra.NoArgs, PreRunE: refuseEmpty("username", "connector"),
		RunE: func(*cobra.Command, []string) error {
			return a.listSorted(withQuery("/gatehouse/tokens", "username", username, "connector", connector), newestFirst)
		},
	}
	list.Flags().StringVar(&username, "username", "", "only this user's tokens")
	list.Flags().StringVar(&connector, "connector", "", "only this connector's tokens")
	tokens.AddCommand(list,
		simple("revoke <id>", "Revoke a token and its refresh token", 1, func(args []string) error {
			return a.call(http.MethodDelete, "/gatehouse/tokens/"+url.PathEscape(args[0]), nil)
		}),
	)
	return tokens
}

// otpCommand is "caddy gatehouse otp": users' second factors.
func otpCommand(a *adminClient) *cobra.Command {
	otp := asGroup(&cobra.Command{Use: "otp", Short: "Manage users' second factors: authenticator app, SMS, hardware token"})
	var secretStdin bool
	var counter uint64
	add := &cobra.Command{
		Use: "add <username> <app|sms|hard-token>", Args: cobra.ExactArgs(2),
		Short: "Enrol a second factor, replacing the user's of that type (app: prints the otpauth:// URI for the authenticator, once)",
		RunE: func(c *cobra.Command, args []string) error {
			factor, err := factorType(args[1])
			if err != nil {
				return err
			}
			body := map[string]any{"type": factor}
			if factor == "HARD_TOKEN" && !secretStdin {
				return errors.New("otp add: a hard token's secret is needed: give --secret-stdin and its base32 secret on stdin's first line")
			}
			if secretStdin {
				secret, err := readSecret(c, "secret", false)
				if err != nil {
					return err
				}
				if secret == "" {
					return errors.New("otp add: no secret on the first line of stdin")
				}
				body["secret"] = secret
			}
			if c.Flags().Changed("counter") {
				body["counter"] = counter
			}
			return a.call(http.MethodPost, userPath(args[0])+"/otp", body)
		},
	}
	add.Flags().BoolVar(&secretStdin, "secret-stdin", false,
		"read the base32 secret from the first line of stdin, or typed at a prompt (hard-token: required; app: to import an authenticator's)")
	add.Flags().Uint64Var(&counter, "counter", 0, "a hard token's next counter value")
	var removeAll bool
	remove := &cobra.Command{
		Use: "remove <username> <app|sms|hard-token> | remove <username> --all", Args: cobra.RangeArgs(1, 2),
		Short: "Remove one second factor of a user (--all: every one)",
		RunE: func(_ *cobra.Command, args []string) error {
			switch {
			case len(args) == 1 && removeAll:
				return a.call(http.MethodDelete, userPath(args[0])+"/otp", nil)
			case len(args) == 1:
				return errors.New("otp remove: name the second factor to remove, or give --all to remove every one")
			case removeAll:
				return errors.New("otp remove: --all with a second factor named")
			}
			factor, err := factorType(args[1])
			if err != nil {
				return err
			}
			return a.call(http.MethodDelete, userPath(args[0])+"/otp/"+factor, nil)
		},
	}
	remove.Flags().BoolVar(&removeAll, "all", false, "remove every second factor of the user")
	otp.AddCommand(add, remove,
		simple("show <username>", "Show a user's second factors and lockout", 1, func(args []string) error {
			return a.call(http.MethodGet, userPath(args[0])+"/otp", nil)
		}),
		simple("unlock <username>", "Lift a user's lockout after failed codes", 1, func(args []string) error {
			return a.call(http.MethodPost, userPath(args[0])+"/unlock", nil)
		}),
	)
	return otp
}

// factorType is the admin API's name of the second factor the command
// line names: app, sms or hard-token, in any case, - or _.
func factorType(s string) (string, error) {
	switch t := strings.ToUpper(strings.ReplaceAll(s, "-", "_")); t {
	case "APP", "SMS", "HARD_TOKEN":
		return t, nil
	}
	return "", fmt.Errorf("%q: the second factor is app, sms or hard-token", s)
}

// apiCredentialsCommand is "caddy gatehouse api-credentials": the
// credentials of the ESA-compatible API's clients.
func apiCredentialsCommand(a *adminClient) *cobra.Command {
	creds := asGroup(&cobra.Command{Use: "api-credentials", Short: "Manage the credentials of the ESA-compatible API's clients"})
	var authAPI, userManagementAPI bool
	create := &cobra.Command{
		Use: "create <name> [--auth-api] [--user-management-api]", Args: cobra.ExactArgs(1),
		Short: "Create a credential; its username and password are printed, once",
		RunE: func(_ *cobra.Command, args []string) error {
			if !authAPI && !userManagementAPI {
				return errors.New("create: enable the credential for --auth-api, --user-management-api or both")
			}
			return a.call(http.MethodPost, "/gatehouse/api-credentials",
				map[string]any{"name": args[0], "auth_api": authAPI, "user_management_api": userManagementAPI})
		},
	}
	create.Flags().BoolVar(&authAPI, "auth-api", false, "the credential may call the authentication API")
	create.Flags().BoolVar(&userManagementAPI, "user-management-api", false, "the credential may call the user management API")
	creds.AddCommand(create,
		simple("list", "List credentials (never their passwords)", 0, func([]string) error {
			return a.call(http.MethodGet, "/gatehouse/api-credentials", nil)
		}),
		simple("delete <name>", "Delete a credential (its requests are refused at once)", 1, func(args []string) error {
			return a.call(http.MethodDelete, "/gatehouse/api-credentials/"+url.PathEscape(args[0]), nil)
		}),
	)
	return creds
}

func appKeyPath(name string) string { return "/gatehouse/appkeys/" + url.PathEscape(name) }

func connectorPath(name string) string { return "/gatehouse/connectors/" + url.PathEscape(name) }
