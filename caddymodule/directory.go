package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/audit"
	"github.com/gatehouse-auth/gatehouse/directory"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/failure"
)

// startDirectory connects the configured directory (none: nothing to do)
// to the accounts: its failed binds and status changes go to the audit
// log, its operations to the metrics; the records an older version made
// are indexed by directory entry first (account.IndexDirectoryEntries).
func startDirectory(e *engine.Engine, a *App) (adminapi.Provider, error) {
	if a.Directory == nil {
		return nil, nil
	}
	registry := a.ctx.GetMetricsRegistry()
	metrics, err := directory.NewMetrics(registry)
	if err != nil {
		return nil, err
	}
	notify := func(ev directory.Event) {
		outcome := audit.OutcomeSuccess
		if ev.Failure {
			outcome = audit.OutcomeFailure
		}
		e.Audit.Record(audit.Event{Kind: audit.KindDirectory, Username: ev.Username, Outcome: outcome, Reason: ev.What})
	}
	cfg := *a.Directory
	// Not "bind_password is required" of a config that has one: the
	// variable is missing where Caddy runs.
	if cfg.BindPassword, err = expandSecret("directory: bind_password", cfg.BindPassword); err != nil {
		metrics.Unregister(registry)
		return nil, err
	}
	d, err := directory.New(cfg, metrics.Observe, notify)
	if err != nil {
		metrics.Unregister(registry)
		return nil, err
	}
	d.SetLogger(a.logger.Named("directory"))
	e.Accounts.SetDirectory(d)
	if err := e.Accounts.IndexDirectoryEntries(a.ctx, a.logger); err != nil {
		d.Close()
		metrics.Unregister(registry)
		return nil, fmt.Errorf("indexing the directory accounts' records: %w", err)
	}
	warnOfUnknownRoles(a.ctx, func(ctx context.Context, name string) error { _, err := e.Accounts.Role(ctx, name); return err },
		a.logger.Named("directory"), cfg.GroupRoles)
	// The directory is dialled on first use (Caddy starts while it is
	// down), so default_password_policy is checked beside the start: a
	// wrong DN, or one the service account may not read, is logged now,
	// not first found in refused sign-ins.
	go checkDefaultPolicy(d, a.logger.Named("directory"), cfg.DefaultPasswordPolicy)
	return directoryFeature{d: d, stop: func() { metrics.Unregister(registry) }}, nil
}

// checkDefaultPolicy reads the default password policy entry once and
// logs what it found (policyOf logs an unreadable entry itself).
func checkDefaultPolicy(d *directory.Directory, log *zap.Logger, dn string) {
	switch err := d.CheckDefaultPolicy(); {
	case dn == "":
	case errors.Is(err, directory.ErrUnavailable):
		log.Warn("directory: default_password_policy could not be checked at start (the directory does not answer); it is read at each account's lookup",
			zap.String("policy", dn), zap.Error(err))
	case err != nil:
		// Logged by the read itself (Directory.policyOf), once per
		// status_ttl: not twice at start.
	default:
		log.Info("directory: default_password_policy read", zap.String("policy", dn))
	}
}

// warnOfUnknownRoles warns of each group_role whose role role finds
// missing (failure.ErrNotFound): its group's members get nothing from it
// until the role is created (roles are the store's, made at any time, so
// this is no error). Another error (a store not answering yet) says
// nothing.
func warnOfUnknownRoles(ctx context.Context, role func(context.Context, string) error, log *zap.Logger, mappings []directory.GroupRole) {
	for _, m := range mappings {
		if err := role(ctx, m.Role); errors.Is(err, failure.ErrNotFound) {
			log.Warn("directory: group_role maps a group to a role that does not exist: its members hold nothing from it until the role is created (PUT /gatehouse/roles/{name})",
				zap.String("group", m.Group), zap.String("role", m.Role))
		}
	}
}

// directoryFeature closes the directory's connections when the app
// stops.
type directoryFeature struct {
	d    *directory.Directory
	stop func()
}

// AdminRoutes implements adminapi.Provider: the directory's routes are
// the core ones (POST /gatehouse/directory/refresh/{username}).
func (directoryFeature) AdminRoutes() []adminapi.Route { return nil }

// Close implements io.Closer.
func (x directoryFeature) Close() error { x.stop(); return x.d.Close() }

// parseDirectory parses the directory sub-option of the gatehouse global
// option:
//
//	directory ldap {
//		url           <ldaps://host:port>...
//		ca_file       <pem file>
//		starttls
//		bind_dn       <dn>
//		bind_password <password>
//		base_dn       <dn>
//		user_filter   <filter with {username}>
//		name_attribute <attribute>|none
//		group_base_dn <dn>
//		group_filter  <filter with {dn}>
//		group_role    <group dn> <role>
//		status_ttl    <duration>
//		timeout       <duration>
//		failed_binds  <n> [<window>] | off
//		flavor        active_directory|openldap
//		default_password_policy <dn>
//	}
func (a *App) parseDirectory(d *caddyfile.Dispenser) error {
	if !d.NextArg() || d.Val() != "ldap" {
		return d.Err("directory: the only kind is ldap: directory ldap { … }")
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	cfg := new(directory.Config)
	once := onceEach{repeatable: []string{"url", "group_role"}}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := once.check(d); err != nil {
			return err
		}
		var err error
		switch opt := d.Val(); opt {
		case "url":
			cfg.URLs = append(cfg.URLs, d.RemainingArgs()...)
			if len(cfg.URLs) == 0 {
				err = d.ArgErr()
			}
		case "ca_file":
			err = oneString(d, &cfg.CAFile)
		case "starttls":
			cfg.StartTLS = true
			if d.NextArg() {
				cfg.StartTLS, err = onOff(d, "starttls")
			}
		case "bind_dn":
			err = oneString(d, &cfg.BindDN)
		case "bind_password":
			err = oneString(d, &cfg.BindPassword)
		case "base_dn":
			err = oneString(d, &cfg.BaseDN)
		case "user_filter":
			err = oneString(d, &cfg.UserFilter)
		case "name_attribute":
			err = oneString(d, &cfg.NameAttribute)
		case "group_base_dn":
			err = oneString(d, &cfg.GroupBaseDN)
		case "group_filter":
			err = oneString(d, &cfg.GroupFilter)
		case "group_role":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("group_role <group DN> <role>")
			}
			cfg.GroupRoles = append(cfg.GroupRoles, directory.GroupRole{Group: args[0], Role: args[1]})
		case "status_ttl":
			err = oneDuration(d, &cfg.StatusTTL)
		case "timeout":
			err = oneDuration(d, &cfg.Timeout)
		case "failed_binds":
			err = parseFailedBinds(d, cfg)
		case "default_password_policy":
			err = oneString(d, &cfg.DefaultPasswordPolicy)
		case "flavor":
			var f string
			err = oneString(d, &f)
			cfg.Flavor = directory.Flavor(f)
		default:
			return d.Errf("unknown directory option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	a.Directory = cfg
	return nil
}

// parseFailedBinds reads failed_binds <n> [<window>] | off.
func parseFailedBinds(d *caddyfile.Dispenser, cfg *directory.Config) error {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && args[0] == "off":
		cfg.FailedBinds = -1
		return nil
	case len(args) < 1 || len(args) > 2:
		return d.Errf("failed_binds <n> [<window>] | off")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return d.Errf("failed_binds: %q is not a positive number (off turns the bound off)", args[0])
	}
	cfg.FailedBinds = n
	if len(args) == 2 {
		w, err := caddy.ParseDuration(args[1])
		if err != nil || w <= 0 {
			return d.Errf("failed_binds: %q is not a positive duration", args[1])
		}
		cfg.FailedBindsWindow = caddy.Duration(w)
	}
	return nil
}
