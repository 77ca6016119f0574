package caddymodule

import (
	"errors"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-session/caddy-session/cookie"
)

func init() {
	caddy.RegisterModule(CookieStore{})
}

// CookieStore keeps the session in the browser: the whole session, signed
// and encrypted, is the cookie, split into <name>, <name>.1, … when it does
// not fit in one. It needs no server state, so any number of Caddy
// instances that share the secret share the sessions. Two tabs writing at
// once: the last write wins. A copied cookie stays valid until it expires
// (there is no server record to delete): use a server store where a logout
// must revoke every copy.
type CookieStore struct {
	// The most cookies a session may span. A write that needs more is
	// refused with 413. Default: 4.
	MaxChunks int `json:"max_chunks,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (CookieStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.session.stores.cookie",
		New: func() caddy.Module { return new(CookieStore) },
	}
}

// Provision sets defaults.
func (s *CookieStore) Provision(caddy.Context) error {
	if s.MaxChunks == 0 {
		s.MaxChunks = cookie.DefaultMaxChunks
	}
	if s.MaxChunks < 1 {
		return errors.New("max_chunks must be at least 1")
	}
	return nil
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	store cookie {
//		max_chunks <n>
//	}
func (s *CookieStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // store name
	if d.NextArg() {
		return d.ArgErr()
	}
	return parseBlock(d, "subdirective %q of store cookie", subdirectives{
		"max_chunks": setInt(&s.MaxChunks, 1, 32),
	})
}

// Interface guards
var (
	_ caddy.Provisioner     = (*CookieStore)(nil)
	_ caddyfile.Unmarshaler = (*CookieStore)(nil)
)
