package caddystorage

import (
	"context"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-session/caddy-session/storage"
)

func init() {
	caddy.RegisterModule(Store{})
}

// CaddyModule returns the Caddy module information.
func (Store) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.session.stores.caddy_storage",
		New: func() caddy.Module { return new(Store) },
	}
}

// Provision takes Caddy's configured storage and starts the sweeper. It
// writes nothing: `caddy validate` runs it.
func (s *Store) Provision(ctx caddy.Context) error {
	prefix := caddy.NewReplacer().ReplaceAll(s.Prefix, "")
	if err := s.setup(ctx.Storage(), prefix, ctx.Logger()); err != nil {
		return err
	}
	sweepCtx, stop := context.WithCancel(ctx)
	s.stopSweep, s.swept = stop, make(chan struct{})
	go s.sweepEvery(sweepCtx, sweepInterval, s.swept)
	return nil
}

// Cleanup stops the sweeper and waits for it. The records stay: other
// instances, and the next config, use them.
func (s *Store) Cleanup() error {
	if s.stopSweep != nil {
		s.stopSweep()
		<-s.swept
		s.stopSweep = nil
	}
	return nil
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	store caddy_storage {
//		prefix <path>
//	}
func (s *Store) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // store name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] {
			return d.Errf("duplicate subdirective %q of store caddy_storage", sub)
		}
		seen[sub] = true
		switch sub {
		case "prefix":
			if !d.AllArgs(&s.Prefix) {
				return d.ArgErr()
			}
			if s.Prefix == "" {
				return d.Err("prefix needs a path, such as " + DefaultPrefix)
			}
			// Check now, for an error with a line number, unless a
			// placeholder leaves it to Provision.
			if !strings.Contains(s.Prefix, "{") {
				if _, err := cleanPrefix(s.Prefix); err != nil {
					return d.Errf("%v", err)
				}
			}
		default:
			return d.Errf("unknown subdirective %q of store caddy_storage; known: prefix", sub)
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner        = (*Store)(nil)
	_ caddy.CleanerUpper       = (*Store)(nil)
	_ caddyfile.Unmarshaler    = (*Store)(nil)
	_ storage.Store            = (*Store)(nil)
	_ storage.Confirmer        = (*Store)(nil)
	_ storage.VersionedDeleter = (*Store)(nil)
)
