package caddymodule

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/gatehouse-auth/gatehouse/adminapi"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "gatehouse",
		Usage: "<users|roles|sessions|directory|otp|appkeys|connectors|tokens|api-credentials|audit|api|migrate|tag-records|rotate-signing-key> …",
		Short: "Manages Gatehouse users, roles and credentials through the admin API",
		Long: `
Manages a running Gatehouse through Caddy's admin endpoint (--address,
default $CADDY_ADMIN, else localhost:2019). Every subcommand but
'migrate', 'tag-records' and 'rotate-signing-key' is a thin wrapper of an
admin API call and prints its JSON answer; 'api' makes any call of the
admin API. 'migrate' copies the state between stores offline,
'tag-records' tags the records of a store written by a version before
record tags, and 'rotate-signing-key' retires the identity assertions'
signing key, all three without the admin API.`,
		CobraFunc: buildCLI,
	})
}

func buildCLI(cmd *cobra.Command) {
	asGroup(cmd)
	a := &adminClient{out: cmd.OutOrStdout()}
	cmd.PersistentFlags().StringVar(&a.address, "address", caddy.DefaultAdminListen, "Caddy admin endpoint: host:port, or unix//path for a socket (default: $CADDY_ADMIN, else localhost:2019)")
	cmd.AddCommand(usersCommand(a), rolesCommand(a), sessionsCommand(a), directoryCommand(a), otpCommand(a),
		appKeysCommand(a), connectorsCommand(a), tokensCommand(a), apiCredentialsCommand(a), auditCommand(a), apiCommand(a),
		migrateCommand(), tagRecordsCommand(), rotateSigningKeyCommand(), rekeyCommand())
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
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 1 { // help <subcommand>…
			sub, rest, err := c.Find(args[1:])
			if err != nil || len(rest) > 0 {
				return fmt.Errorf("unknown command %q for %q", strings.Join(args[1:], " "), c.CommandPath())
			}
			return sub.Help()
		}
		return c.Help()
	}
	return cmd
}

// adminClient makes the admin API calls of the subcommands.
type adminClient struct {
	// address is the admin endpoint (--address).
	address string
	// out is where answers are printed.
	out io.Writer
	// checked is set once the endpoint was found to be Gatehouse's
	// (checkEndpoint).
	checked bool
}

// apiCommand is "caddy gatehouse api": any admin API call.
func apiCommand(a *adminClient) *cobra.Command {
	return &cobra.Command{
		Use: "api <METHOD> <path> [json-body | -]", Short: "Call any admin endpoint (- reads the body from stdin)", Args: cobra.RangeArgs(2, 3),
		RunE: func(c *cobra.Command, args []string) error {
			var body any
			if len(args) == 3 {
				raw := []byte(args[2])
				if args[2] == "-" {
					// From stdin: a body with a secret stays off the command line.
					var err error
					if raw, err = readStdin(c.InOrStdin(), "the body"); err != nil {
						return err
					}
				}
				if !json.Valid(raw) {
					return fmt.Errorf("api: the body is not one JSON value: %v", json.Unmarshal(raw, new(any)))
				}
				body = json.RawMessage(raw)
			}
			return a.call(strings.ToUpper(args[0]), args[1], body)
		},
	}
}

func simple(use, short string, nargs int, run func([]string) error) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(nargs),
		RunE: func(_ *cobra.Command, args []string) error { return run(args) }}
}

func userPath(username string) string { return "/gatehouse/users/" + url.PathEscape(username) }

func rolePath(name string) string { return "/gatehouse/roles/" + url.PathEscape(name) }

// readSecret reads a secret (what names it, e.g. "password") from c's
// stdin: its first line, or, when stdin is a terminal, typed without
// echo after a prompt on stderr, twice when confirm is set.
func readSecret(c *cobra.Command, what string, confirm bool) (string, error) {
	if f, ok := c.InOrStdin().(*os.File); ok && term.IsTerminal(int(f.Fd())) { //nolint:gosec // G115: a file descriptor fits an int
		return promptSecret(int(f.Fd()), c.ErrOrStderr(), what, confirm) //nolint:gosec // G115: as above
	}
	// Bounded: a first line longer than any request the admin API takes is
	// no secret (a file named by mistake, a stream without an end).
	line, err := bufio.NewReader(io.LimitReader(c.InOrStdin(), adminapi.MaxBodyBytes+1)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("reading the %s from stdin: %v", what, err)
	}
	if len(line) > adminapi.MaxBodyBytes {
		return "", fmt.Errorf("the first line of stdin is over %d bytes: not a %s", adminapi.MaxBodyBytes, what)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// promptSecret is readSecret from the terminal fd. The terminal's echo,
// which term.ReadPassword turns off while the secret is typed, is turned
// on again when the command is interrupted at the prompt (Ctrl-C), where
// the shell would otherwise be left not echoing what is typed.
func promptSecret(fd int, prompt io.Writer, what string, confirm bool) (string, error) {
	state, err := term.GetState(fd)
	if err != nil {
		return "", fmt.Errorf("reading the %s from the terminal: %v", what, err)
	}
	stop := onInterrupt(func() {
		_ = term.Restore(fd, state)
		fmt.Fprintln(prompt)
	})
	defer stop()
	fmt.Fprintf(prompt, "%s: ", what)
	first, err := term.ReadPassword(fd)
	fmt.Fprintln(prompt)
	if err != nil || !confirm {
		return string(first), err
	}
	fmt.Fprintf(prompt, "%s again: ", what)
	again, err := term.ReadPassword(fd)
	fmt.Fprintln(prompt)
	if err == nil && string(again) != string(first) {
		err = fmt.Errorf("the two %ss differ", what)
	}
	return string(first), err
}

// onInterrupt runs cleanup and exits with status 128 plus the signal's
// number, as a shell reports a command a signal ended (130 for SIGINT,
// Ctrl-C; 143 for SIGTERM), when the command is interrupted before stop
// is called.
func onInterrupt(cleanup func()) (stop func()) {
	interrupted := make(chan os.Signal, 1)
	signal.Notify(interrupted, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-interrupted:
			cleanup()
			os.Exit(128 + int(sig.(syscall.Signal)))
		case <-done:
		}
	}()
	return func() {
		signal.Stop(interrupted)
		close(done)
	}
}

// readStdin reads what (e.g. "the body") from in, whole, refusing more
// than the admin API takes in a request (adminapi.MaxBodyBytes) rather
// than reading without bound or sending it cut short.
func readStdin(in io.Reader, what string) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(in, adminapi.MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s from stdin: %v", what, err)
	}
	if len(raw) > adminapi.MaxBodyBytes {
		return nil, fmt.Errorf("%s on stdin is over %d bytes, more than the admin API takes", what, adminapi.MaxBodyBytes)
	}
	return raw, nil
}

// refuseEmpty is a cobra.Command.PreRunE refusing the flags named that
// are given with an empty value ("--username $U" with U unset), which the
// command would otherwise leave out, widening what it acts on.
func refuseEmpty(flags ...string) func(c *cobra.Command, _ []string) error {
	return func(c *cobra.Command, _ []string) error {
		for _, name := range flags {
			if f := c.Flags().Lookup(name); f != nil && f.Changed && strings.TrimSpace(f.Value.String()) == "" {
				return fmt.Errorf("--%s is empty", name)
			}
		}
		return nil
	}
}

// maxAnswerBytes bounds the answer call reads (an audit page of 10 000
// events is a few MiB).
const maxAnswerBytes = 64 << 20

// call makes one admin API call and prints its answer (indented when it
// is JSON); an error answer (4xx/5xx) is returned with the server's
// message. An answer cut short (the connection lost, Caddy stopped) or
// over maxAnswerBytes is an error and nothing is printed: a script saving
// the output must not take part of it for the whole.
func (a *adminClient) call(method, path string, body any) error {
	_, err := a.callFor(method, path, body)
	return err
}

// callFor is call, returning the answer as it came (before indenting).
func (a *adminClient) callFor(method, path string, body any) ([]byte, error) {
	raw, _, err := a.fetch(method, path, body)
	if err != nil {
		return nil, err
	}
	return raw, a.print(raw)
}

// fetch makes one admin API call and returns its whole answer, with its
// header, printing nothing.
func (a *adminClient) fetch(method, path string, body any) ([]byte, http.Header, error) {
	resp, err := a.send(method, path, body)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	switch {
	case err != nil:
		return nil, nil, fmt.Errorf("%s %s: the answer was cut short after %d bytes (the call may have taken effect): %v", method, shorten(path), len(raw), err)
	case len(raw) > maxAnswerBytes:
		return nil, nil, fmt.Errorf("%s %s: the answer is over %d bytes; narrow the query", method, shorten(path), maxAnswerBytes)
	}
	return raw, resp.Header, nil
}

// listPage is how many entries each call of list asks for (a variable
// for tests).
var listPage = 5000

// maxListBytes and maxListPages bound what list reads of one listing: the
// JSON of its entries and the pages it follows (variables for tests). A
// next link that moves the listing on (advances) can still be offered
// for ever by a hostile or broken admin endpoint, each page held in
// memory; past either bound list stops with an error, printing nothing.
// A real listing stays far below them: 1 GiB is millions of users or
// keys, 100 000 pages of listPage half a billion entries.
var (
	maxListBytes = 1 << 30
	maxListPages = 100_000
)

// list prints the whole listing path (a GET of a paged listing:
// adminapi.ReadPage) as one JSON array, read a page of listPage entries
// at a time, following each answer's Link rel="next" until there is
// none: the server holds one page at a time, not every entry, and no
// answer nears maxAnswerBytes. Nothing is printed unless every page
// arrived, and nothing past maxListBytes or maxListPages is read. A
// server from before pages (400 naming limit) is asked for the whole
// listing instead.
func (a *adminClient) list(path string) error { return a.listSorted(path, nil) }

// listSorted is list, the entries of every page put in order by sort
// (nil: as they came) before they are printed: a listing whose pages
// come in another order than its whole answer (GET /gatehouse/tokens:
// pages in connector and ID order, the whole list newest first) prints
// what the whole answer would.
func (a *adminClient) listSorted(path string, sort func([]json.RawMessage) error) error {
	all, err := a.readPages(path)
	if errors.Is(err, errNoPages) {
		return a.call(http.MethodGet, path, nil)
	}
	if err != nil {
		return err
	}
	if sort != nil {
		if err := sort(all); err != nil {
			return err
		}
	}
	// Joined as they came: json.Marshal would escape the HTML characters
	// the server leaves as they are (a home_url's "&"); ended by a newline
	// as a single answer is, so that the output is the same either way.
	joined := append([]byte("["), bytes.Join(rawBytes(all), []byte(","))...)
	return a.print(append(joined, ']', '\n'))
}

// errNoPages is readPages' error for a server from before pages: its
// first answer refused the limit parameter.
var errNoPages = errors.New("the admin API does not read pages")

// readPages reads the whole listing path, a page of listPage entries at
// a time, following each answer's Link rel="next" until there is none,
// and returns the entries of every page in the order they came. A next
// link that does not move the listing on is an error (advances), and so
// is a listing past maxListPages pages or maxListBytes bytes.
func (a *adminClient) readPages(path string) ([]json.RawMessage, error) {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	next := path + sep + "limit=" + fmt.Sprint(listPage)
	var all []json.RawMessage
	after, read := "", 0
	for pages := 1; ; pages++ {
		if pages > maxListPages {
			return nil, fmt.Errorf("GET %s: the listing goes on past %d pages; narrow it (or is --address the admin endpoint of the Caddy with Gatehouse?)", shorten(path), maxListPages)
		}
		raw, header, err := a.fetch(http.MethodGet, next, nil)
		if err != nil && all == nil && isErrorAnswer(err) && strings.Contains(err.Error(), "unknown query parameter") && strings.Contains(err.Error(), "limit") {
			return nil, errNoPages
		}
		if err != nil {
			return nil, err
		}
		page, cost, err := decodePage(raw, maxListBytes-read)
		if errors.Is(err, errOverBudget) {
			return nil, fmt.Errorf("GET %s: the listing is over %d bytes; narrow it (or is --address the admin endpoint of the Caddy with Gatehouse?)", shorten(path), maxListBytes)
		}
		if err != nil {
			return nil, fmt.Errorf("GET %s: the answer is no JSON array: %v", shorten(next), err)
		}
		read += cost
		all = append(all, page...)
		asked := next
		if next, err = nextLink(header); err != nil {
			return nil, err
		}
		if next == "" {
			return all, nil
		}
		if len(page) == 0 {
			return nil, fmt.Errorf("GET %s: an empty page offers a next one (%s); the listing would not end", shorten(asked), shorten(next))
		}
		if after, err = advances(asked, next, after); err != nil {
			return nil, err
		}
	}
}

// entryCost is what an entry of a listing costs in memory beside its
// bytes: its json.RawMessage (a slice header) and its allocation.
const entryCost = 32

// errOverBudget is decodePage's error for a page past its budget.
var errOverBudget = errors.New("over the listing's bounds")

// decodePage decodes raw, a page of a listing (a JSON array), entry by
// entry, and returns its entries and what they cost in memory (their
// bytes and entryCost each); errOverBudget as soon as that passes budget.
// A page of tiny entries ([0,0,…] of an answer up to maxAnswerBytes) cost
// over ten times its bytes, held before maxListBytes, which counted the
// bytes alone, was checked.
func decodePage(raw []byte, budget int) ([]json.RawMessage, int, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		if err == nil {
			err = fmt.Errorf("it starts with %v", tok)
		}
		return nil, 0, err
	}
	var page []json.RawMessage
	cost := 0
	for dec.More() {
		var entry json.RawMessage
		if err := dec.Decode(&entry); err != nil {
			return nil, 0, err
		}
		if cost += len(entry) + entryCost; cost > budget {
			return nil, 0, errOverBudget
		}
		page = append(page, entry)
	}
	if _, err := dec.Token(); err != nil { // the closing ]
		return nil, 0, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, 0, errors.New("something follows the array")
	}
	return page, cost, nil
}

// rawBytes is values as byte slices.
func rawBytes(values []json.RawMessage) [][]byte {
	out := make([][]byte, len(values))
	for i, v := range values {
		out[i] = v
	}
	return out
}

// nextLink is the target of the Link header's rel="next" ("" when there
// is none): a path on the admin endpoint. The rel parameter may be
// quoted or not (RFC 8288); a link naming rel next that cannot be read is
// an error, not the listing's end, which would print a part of it as if
// it were the whole.
func nextLink(h http.Header) (string, error) {
	for _, value := range h.Values("Link") {
		for link := range strings.SplitSeq(value, ",") {
			target, params, _ := strings.Cut(link, ";")
			if !relNext(params) {
				continue
			}
			target = strings.TrimSpace(target)
			if !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
				return "", fmt.Errorf("cannot read the next page's link %q", shorten(link))
			}
			next := strings.TrimSuffix(strings.TrimPrefix(target, "<"), ">")
			if !strings.HasPrefix(next, "/gatehouse/") {
				return "", fmt.Errorf("the next page's link %q is not on the admin API", shorten(next))
			}
			return next, nil
		}
	}
	return "", nil
}

// relNext reports whether the parameters of a link (after its target)
// name the relation next.
func relNext(params string) bool {
	for p := range strings.SplitSeq(params, ";") {
		name, value, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "rel") {
			continue
		}
		for rel := range strings.FieldsSeq(strings.Trim(strings.TrimSpace(value), `"`)) {
			if strings.EqualFold(rel, "next") {
				return true
			}
		}
	}
	return false
}

// advances checks that next, the link of the page after asked, is the
// same listing (its path, and its query but for after) from an after
// past prev (the after of asked's own link; "" for the first page), and
// returns next's after. A server that offered the same page again, or an
// earlier one, was followed for ever, the pages held in memory.
func advances(asked, next, prev string) (string, error) {
	a, errA := url.Parse(asked)
	n, errN := url.Parse(next)
	if errA != nil || errN != nil {
		return "", fmt.Errorf("cannot read the next page's link %q", shorten(next))
	}
	aq, nq := a.Query(), n.Query()
	after := nq.Get("after")
	aq.Del("after")
	nq.Del("after")
	if a.Path != n.Path || aq.Encode() != nq.Encode() {
		return "", fmt.Errorf("the link %q offered after GET %s is not the next page of the same listing", shorten(next), shorten(asked))
	}
	if after <= prev {
		return "", fmt.Errorf("the link %q offered after GET %s does not move the listing on (after %q, not past %q)", shorten(next), shorten(asked), shorten(after), shorten(prev))
	}
	return after, nil
}

// shorten is s cut to 200 bytes, for an error message.
func shorten(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// print writes an answer raw, indented when it is JSON.
func (a *adminClient) print(raw []byte) error {
	if len(raw) > 0 {
		printed := raw
		var pretty bytes.Buffer
		if json.Indent(&pretty, raw, "", "  ") == nil {
			printed = append(pretty.Bytes(), '\n')
		}
		if _, err := a.out.Write(printed); err != nil {
			return err
		}
	}
	return nil
}

// send makes one admin API call with body as JSON (none when nil) and
// returns the answer, which the caller closes. An error answer (4xx/5xx)
// is an error with the server's message (caddycmd.AdminAPIRequest), and so
// is an answer to a /gatehouse/ call that Gatehouse would never give (a
// wrong --address).
func (a *adminClient) send(method, path string, body any) (*http.Response, error) {
	route, _, _ := strings.Cut(path, "?")
	if err := checkRoute(route); err != nil {
		return nil, err
	}
	if strings.Contains(a.address, "://") && !strings.HasPrefix(a.address, "unix/") {
		return nil, fmt.Errorf("--address %q: want host:port (or unix//path), not a URL", a.address)
	}
	if body != nil || strings.HasPrefix(route, "/gatehouse/") {
		if err := a.checkEndpoint(); err != nil {
			return nil, err
		}
	}
	var reader io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		reader = bytes.NewReader(raw)
	}
	resp, err := caddycmd.AdminAPIRequest(a.address, method, path, http.Header{"Content-Type": {"application/json"}}, reader)
	if err != nil {
		return nil, a.explain(err)
	}
	if strings.HasPrefix(route, "/gatehouse/") {
		if err := a.gatehouseAnswered(resp); err != nil {
			resp.Body.Close()
			return nil, err
		}
	}
	return resp, nil
}

// checkEndpoint asks the admin endpoint for the admin API's OpenAPI
// document, once, before the first call with a body or to a /gatehouse/
// path: a body may hold a secret (a password, a package's password),
// which must not go to whatever else answers at a wrong --address, and
// an error answer of whatever else (a 404 of another web server) must
// not read as Gatehouse's (a script deprovisioning users takes a 404 for
// "already deleted").
func (a *adminClient) checkEndpoint() error {
	if a.checked {
		return nil
	}
	resp, err := caddycmd.AdminAPIRequest(a.address, http.MethodHead, AdminOpenAPIPath, nil, nil)
	switch {
	case err != nil && isErrorAnswer(err):
		// Gatehouse answers every HEAD of the document; the status is left
		// out, so that the error does not pass for an admin API answer.
		return fmt.Errorf("%s answered HEAD %s with an error, where Gatehouse answers the document: is --address the admin endpoint of the Caddy with Gatehouse?",
			a.address, AdminOpenAPIPath)
	case err != nil:
		return a.explain(err)
	}
	resp.Body.Close()
	if err := a.gatehouseAnswered(resp); err != nil {
		return err
	}
	a.checked = true
	return nil
}

// explain adds to an error of AdminAPIRequest that reached no admin
// endpoint (a refused connection, a malformed --address) what to check;
// an error answer of the endpoint (4xx/5xx, with the server's message)
// stays as it is.
func (a *adminClient) explain(err error) error {
	if isErrorAnswer(err) {
		return err
	}
	return fmt.Errorf("%v; is Caddy running, and --address %q its admin endpoint (host:port or unix//path; default localhost:2019)?", err, a.address)
}

// isErrorAnswer reports whether err, an error of AdminAPIRequest, is an
// error answer (4xx/5xx) of the endpoint, not a call that reached none.
func isErrorAnswer(err error) bool {
	return strings.HasPrefix(err.Error(), "caddy responded with error")
}

// gatehouseAnswered refuses an answer without Gatehouse's AnswerHeader.
func (a *adminClient) gatehouseAnswered(resp *http.Response) error {
	if resp.Header.Get(AnswerHeader) != "1" {
		return fmt.Errorf("%s answered %s without Gatehouse's %s header; is --address the admin endpoint of the Caddy with Gatehouse?",
			a.address, resp.Status, AnswerHeader)
	}
	return nil
}

// checkRoute refuses an admin API path that is not clean: an empty, "."
// or ".." segment. Caddy's admin endpoint would redirect it to the clean
// path, and the redirect is followed with the method and body: an empty
// name ("users end-sessions ”") would act on another resource
// (/gatehouse/users/sessions, the user named "sessions").
func checkRoute(route string) error {
	if !strings.HasPrefix(route, "/") {
		return fmt.Errorf("the admin API path %q must start with /", route)
	}
	segments := strings.Split(route, "/")
	for i, seg := range segments {
		switch {
		case i == 0 && seg == "":
			// before the leading "/"
		case seg == "" && i == len(segments)-1 && i > 1:
			// a trailing "/"
		case seg == "":
			return fmt.Errorf("an empty name in the admin API path %q", route)
		case seg == "." || seg == "..":
			return fmt.Errorf("%q cannot be named in an admin API path (the server would read it as a directory of the path)", seg)
		}
	}
	return nil
}

// withQuery is path with the query of the name/value pairs whose value is
// not empty.
func withQuery(path string, pairs ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			q.Set(pairs[i], pairs[i+1])
		}
	}
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}
