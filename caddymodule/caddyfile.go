package caddymodule

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/dustin/go-humanize"
	"go.uber.org/zap"
)

func init() {
	httpcaddyfile.RegisterDirective("session", parseCaddyfile)
	// Before every directive that can use its placeholders or forward its
	// headers: header, request_header, rewrite, respond, templates,
	// reverse_proxy all come after header in Caddy's order.
	httpcaddyfile.RegisterDirectiveOrder("session", httpcaddyfile.Before, "header")
}

// parseCaddyfile unmarshals a session directive into its route. It is
// RegisterHandlerDirective's work, plus a warning when the directive has a
// matcher: requests outside it keep the client's X-Session-* headers, and
// their responses get no write-back scrubbing.
func parseCaddyfile(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	file, line := h.File(), h.Line()
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	m := new(Handler)
	if err := m.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	if matcherSet != nil {
		caddy.Log().Named("caddyfile").Warn("the session directive has a matcher: requests outside it reach the upstream with the client's own X-Session-* headers, and an upstream's X-Session-Set in answer to them reaches the client; put session without a matcher (it costs nothing on requests without a session) and match inside the handlers after it",
			zap.String("file", file), zap.Int("line", line))
	}
	return h.NewRoute(matcherSet, m), nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	session [<matcher>] {
//		secret <current> [<older>...]
//		cookie [<name>] {
//			path      <path>
//			domain    <domain>
//			max_age   <duration>
//			expires   <RFC 3339 time>
//			secure    auto|on|off
//			http_only [on|off]
//			same_site lax|strict|none
//		}
//		store <module> [<args...>] {
//			<module options>
//		}
//		idle_timeout    <duration>
//		api_path        <path>|off
//		client_writable <key...>
//		client_readable <key...>|*
//		trusted_origins <origin...>
//		forward         <key...>
//		max_body        <size>
//		max_size        <size>
//		max_keys        <n>
//		on_store_error  fail_open|fail_closed
//		vary_cookie     on|off
//		sign_headers    <key>
//		migrate_from    hydrogen_v1 [<cookie name>]
//		index_key       <key>
//		admin_id        <id>
//		audience        <name>
//		new_session_ttl <duration>|off
//	}
//
// Every subdirective may appear once.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("session takes no arguments, only a block; got %q", d.Val())
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] {
			return d.Errf("duplicate subdirective %q; give it once", sub)
		}
		seen[sub] = true
		var err error
		switch sub {
		case "secret":
			h.Secrets, err = allArgs(d, 1)
		case "cookie":
			h.Cookie, err = parseCookie(d)
		case "store":
			err = h.parseStore(d)
		case "idle_timeout":
			var v string
			if v, err = oneArg(d); err == nil {
				h.IdleTimeout, err = parseDuration(d, sub, v)
			}
		case "api_path":
			var v string
			if v, err = oneArg(d); err == nil {
				if v == "off" {
					h.DisableAPI = true
				} else if !strings.HasPrefix(v, "/") {
					err = d.Errf("api_path %q must start with '/' (or be off)", v)
				} else {
					h.APIPath = v
				}
			}
		case "client_writable":
			h.ClientWritable, err = allArgs(d, 1)
		case "client_readable":
			h.ClientReadable, err = allArgs(d, 1)
		case "trusted_origins":
			h.TrustedOrigins, err = allArgs(d, 1)
			for _, o := range h.TrustedOrigins {
				if err == nil {
					err = checkOrigin(d, o)
				}
			}
		case "forward":
			h.Forward, err = allArgs(d, 1)
		case "max_body":
			h.MaxBody, err = parseSize(d)
		case "max_size":
			h.MaxSize, err = parseSize(d)
		case "max_keys":
			var v string
			if v, err = oneArg(d); err == nil {
				h.MaxKeys, err = strconv.Atoi(v)
				if err != nil || h.MaxKeys < 1 {
					err = d.Errf("max_keys %q: want a whole number of at least 1", v)
				}
			}
		case "on_store_error":
			var v string
			if v, err = oneArg(d); err == nil {
				if v != "fail_open" && v != "fail_closed" {
					err = d.Errf("on_store_error %q: use fail_open or fail_closed", v)
				}
				h.OnStoreError = v
			}
		case "migrate_from":
			var args []string
			if args, err = allArgs(d, 1); err == nil {
				if len(args) > 2 {
					err = d.ArgErr()
				} else if args[0] != MigrateHydrogenV1 {
					err = d.Errf("migrate_from %q: the only source known is %s", args[0], MigrateHydrogenV1)
				} else {
					h.MigrateFrom = args[0]
					if len(args) == 2 {
						h.MigrateCookie = args[1]
					}
				}
			}
		case "sign_headers":
			h.SignHeaders, err = oneArg(d)
		case "index_key":
			h.IndexKey, err = oneArg(d)
		case "admin_id":
			h.AdminID, err = oneArg(d)
		case "audience":
			h.Audience, err = oneArg(d)
		case "new_session_ttl":
			var v string
			if v, err = oneArg(d); err == nil {
				if v == "off" {
					h.NewSessionTTL = -1
				} else {
					h.NewSessionTTL, err = parseDuration(d, sub, v)
				}
			}
		case "vary_cookie":
			var b bool
			if b, err = parseSwitch(d); err == nil {
				h.VaryCookie = &b
			}
		default:
			return d.Errf("unknown subdirective %q of session; see the README for the syntax", sub)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseCookie reads `cookie [<name>] { ... }`.
func parseCookie(d *caddyfile.Dispenser) (*CookieConfig, error) {
	c := new(CookieConfig)
	if d.NextArg() {
		c.Name = d.Val()
		if _, err := c.options(); err != nil {
			return nil, d.Errf("%v", err)
		}
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] {
			return nil, d.Errf("duplicate cookie subdirective %q; give it once", sub)
		}
		seen[sub] = true
		var err error
		switch sub {
		case "name":
			if c.Name != "" {
				return nil, d.Err("cookie name given twice")
			}
			c.Name, err = oneArg(d)
		case "path":
			c.Path, err = oneArg(d)
			if err == nil && !strings.HasPrefix(c.Path, "/") {
				err = d.Errf("cookie path %q must start with '/'", c.Path)
			}
		case "domain":
			c.Domain, err = oneArg(d)
		case "max_age":
			var v string
			if v, err = oneArg(d); err == nil {
				c.MaxAge, err = parseDuration(d, "max_age", v)
			}
		case "expires":
			c.Expires, err = oneArg(d)
		case "secure":
			c.Secure, err = oneArg(d)
			if err == nil && c.Secure != "auto" && c.Secure != "on" && c.Secure != "off" {
				err = d.Errf("cookie secure %q: use auto, on or off", c.Secure)
			}
		case "http_only":
			var b bool
			if b, err = parseSwitch(d); err == nil {
				c.HTTPOnly = &b
			}
		case "same_site":
			c.SameSite, err = oneArg(d)
			if err == nil && c.SameSite != "lax" && c.SameSite != "strict" && c.SameSite != "none" {
				err = d.Errf("cookie same_site %q: use lax, strict or none", c.SameSite)
			}
		default:
			return nil, d.Errf("unknown cookie subdirective %q; known: path, domain, max_age, expires, secure, http_only, same_site", sub)
		}
		if err != nil {
			return nil, err
		}
		// Check the attributes as they come, so an error names the line
		// that made the cookie invalid (a __Host- name with a domain, say):
		// no later attribute can make an invalid cookie valid again.
		if _, err := c.options(); err != nil {
			return nil, d.Errf("%v", err)
		}
	}
	if _, err := c.options(); err != nil {
		return nil, d.Errf("%v", err)
	}
	return c, nil
}

// parseStore reads `store <module> ...`, letting the module parse its own
// arguments and block.
func (h *Handler) parseStore(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Errf("store needs a name: cookie, memory, file, redis, or a module in http.session.stores")
	}
	name := d.Val()
	unm, err := caddyfile.UnmarshalModule(d, "http.session.stores."+name)
	if err != nil {
		return err
	}
	h.StoreRaw = caddyconfig.JSONModuleObject(unm, "backend", name, nil)
	return nil
}

// oneArg reads exactly one argument.
func oneArg(d *caddyfile.Dispenser) (string, error) {
	var v string
	if !d.AllArgs(&v) {
		return "", d.ArgErr()
	}
	return v, nil
}

// allArgs reads the remaining arguments, at least min of them.
func allArgs(d *caddyfile.Dispenser, min int) ([]string, error) {
	args := d.RemainingArgs()
	if len(args) < min {
		return nil, d.ArgErr()
	}
	return args, nil
}

// parseDuration reads a duration such as 30m, 12h or 30d.
func parseDuration(d *caddyfile.Dispenser, name, v string) (caddy.Duration, error) {
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur <= 0 {
		return 0, d.Errf("%s %q: want a positive duration such as 30m, 12h or 30d", name, v)
	}
	return caddy.Duration(dur), nil
}

// parseSize reads a size such as 65536, 64KiB or 1MB.
func parseSize(d *caddyfile.Dispenser) (int64, error) {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n == 0 || n > 1<<30 {
		return 0, d.Errf("%s %q: want a size such as 65536, 64KiB or 1MB", name, v)
	}
	return int64(n), nil
}

// parseSwitch reads an optional on/off argument; no argument means on.
func parseSwitch(d *caddyfile.Dispenser) (bool, error) {
	name := d.Val()
	args := d.RemainingArgs()
	switch {
	case len(args) == 0:
		return true, nil
	case len(args) > 1:
		return false, d.ArgErr()
	}
	switch args[0] {
	case "on", "true":
		return true, nil
	case "off", "false":
		return false, nil
	}
	return false, d.Errf("%s %q: use on or off", name, args[0])
}

// checkOrigin refuses an origin that is not exactly scheme://host[:port].
func checkOrigin(d *caddyfile.Dispenser, o string) error {
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok || (scheme != "http" && scheme != "https") || rest == "" || strings.ContainsAny(rest, "/?#*@ ") {
		return d.Errf("trusted origin %q: write it as scheme://host[:port], such as https://shop.example.com, with no path and no wildcard", o)
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
