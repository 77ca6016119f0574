package caddymodule

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
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
//			max_age   <duration>|<seconds>
//			expires   <RFC 3339 time>
//			secure    auto|on|off|true|false
//			http_only [on|off|true|false]
//			same_site lax|strict|none (any case)
//			partitioned [on|off|true|false]
//			priority  low|medium|high (any case)
//		}
//		store <module> [<args...>] {
//			<module options>
//		}
//		previous_store <module> [<args...>] {
//			<module options>
//		}
//		idle_timeout    <duration>
//		api_path        <path>|off
//		client_script   on|off
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
//		max_age_limit   <duration>|<seconds>
//	}
//
// Every subdirective may appear once, except the lists (secret,
// client_writable, client_readable, trusted_origins, forward): their
// lines add up, and a value listed twice is an error.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("session takes no arguments, only a block; got %q", d.Val())
	}
	var prevAt *caddyfile.Dispenser
	err := parseBlock(d, "subdirective %q of session", subdirectives{
		"secret": addSecrets(&h.Secrets),
		"cookie": func(d *caddyfile.Dispenser) (err error) {
			if h.Cookie, err = parseCookie(d); err != nil {
				return err
			}
			return h.checkMaxAgeLimit(d)
		},
		"store": h.parseStore(&h.StoreRaw),
		"previous_store": func(d *caddyfile.Dispenser) error {
			at := *d // where to point a later error
			prevAt = &at
			return h.parseStore(&h.PreviousStoreRaw)(d)
		},
		"idle_timeout": setDuration(&h.IdleTimeout),
		"api_path": func(d *caddyfile.Dispenser) error {
			v, err := oneArg(d)
			switch {
			case err != nil:
				return err
			case v == "off":
				h.DisableAPI = true
			case !strings.HasPrefix(v, "/"):
				return d.Errf("api_path %q must start with '/' (or be off)", v)
			default:
				h.APIPath = v
			}
			return nil
		},
		"client_script": func(d *caddyfile.Dispenser) error {
			on, err := parseSwitch(d)
			h.DisableClientScript = !on
			return err
		},
		"client_writable": addKeys(&h.ClientWritable, false),
		"client_readable": addKeys(&h.ClientReadable, true),
		"trusted_origins": addOrigins(&h.TrustedOrigins),
		"forward":         addKeys(&h.Forward, false),
		"max_body":        setSize(&h.MaxBody),
		"max_size":        setSize(&h.MaxSize),
		"max_keys":        setInt(&h.MaxKeys, 1, 0),
		"on_store_error":  setEnum(&h.OnStoreError, storeErrorPolicies...),
		"migrate_from": func(d *caddyfile.Dispenser) error {
			args, err := allArgs(d, 1)
			switch {
			case err != nil:
				return err
			case len(args) > 2:
				return d.ArgErr()
			case args[0] != MigrateHydrogenV1:
				return d.Errf("migrate_from %q: the only source known is %s", args[0], MigrateHydrogenV1)
			}
			h.MigrateFrom = args[0]
			if len(args) == 2 {
				h.MigrateCookie = args[1]
			}
			return nil
		},
		"sign_headers": setString(&h.SignHeaders),
		"index_key":    setKey(&h.IndexKey),
		"admin_id":     setString(&h.AdminID),
		"audience":     setString(&h.Audience),
		"new_session_ttl": func(d *caddyfile.Dispenser) error {
			v, err := oneArg(d)
			switch {
			case err != nil:
				return err
			case v == "off":
				h.NewSessionTTL = -1
				return nil
			}
			h.NewSessionTTL, err = parseDuration(d, "new_session_ttl", v)
			return err
		},
		"vary_cookie": setSwitch(&h.VaryCookie),
		"max_age_limit": func(d *caddyfile.Dispenser) error {
			if err := parseMaxAge(&h.MaxAgeLimit)(d); err != nil {
				return err
			}
			return h.checkMaxAgeLimit(d)
		},
	}, listSubdirectives...)
	if err != nil || prevAt == nil {
		return err
	}
	return h.checkPreviousStore(prevAt)
}

// checkPreviousStore refuses a previous_store that cannot move anything:
// into the cookie store, or from the very store it names.
func (h *Handler) checkPreviousStore(d *caddyfile.Dispenser) error {
	var store, prev struct {
		Backend string `json:"backend"`
	}
	_ = json.Unmarshal(h.StoreRaw, &store)
	_ = json.Unmarshal(h.PreviousStoreRaw, &prev)
	switch {
	case store.Backend == "" || store.Backend == "cookie":
		return d.Errf("previous_store moves sessions into a server store, and store is cookie (the default): "+
			"add store memory, file, redis or postgres (previous_store %s then moves its sessions there)", prev.Backend)
	case bytes.Equal(h.StoreRaw, h.PreviousStoreRaw):
		return d.Errf("previous_store is the same as store: there is nothing to move; remove previous_store once every session has moved")
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
	subs := subdirectives{
		"name": func(d *caddyfile.Dispenser) (err error) {
			if c.Name != "" {
				return d.Err("cookie name given twice")
			}
			c.Name, err = oneArg(d)
			return err
		},
		"path": func(d *caddyfile.Dispenser) (err error) {
			c.Path, err = oneArg(d)
			if err == nil && !strings.HasPrefix(c.Path, "/") {
				err = d.Errf("cookie path %q must start with '/'", c.Path)
			}
			return err
		},
		"domain":    setString(&c.Domain),
		"max_age":   parseMaxAge(&c.MaxAge),
		"expires":   setString(&c.Expires),
		"secure":    setEnumFold(&c.Secure, map[string]string{"true": "on", "false": "off"}, secureModes...),
		"http_only": setSwitch(&c.HTTPOnly),
		"same_site": setEnumFold(&c.SameSite, nil, sameSiteModes...),
		"partitioned": func(d *caddyfile.Dispenser) (err error) {
			c.Partitioned, err = parseSwitch(d)
			return err
		},
		"priority": setEnumFold(&c.Priority, nil, priorities...),
	}
	// Check the attributes as they come, so an error names the line that
	// made the cookie invalid (a __Host- name with a domain, say): no later
	// attribute can make an invalid cookie valid again.
	for name, parse := range subs {
		subs[name] = func(d *caddyfile.Dispenser) error {
			if err := parse(d); err != nil {
				return err
			}
			if _, err := c.options(); err != nil {
				return d.Errf("%v", err)
			}
			return nil
		}
	}
	if err := parseBlock(d, "cookie subdirective %q", subs); err != nil {
		return nil, err
	}
	if _, err := c.options(); err != nil {
		return nil, d.Errf("%v", err)
	}
	return c, nil
}

// parseStore reads `store <module> ...` (or previous_store) into raw,
// letting the module parse its own arguments and block.
func (h *Handler) parseStore(raw *json.RawMessage) func(*caddyfile.Dispenser) error {
	return func(d *caddyfile.Dispenser) error {
		sub := d.Val()
		if !d.NextArg() {
			return d.Errf("%s needs a name: cookie, memory, file, redis, postgres, or a module in http.session.stores", sub)
		}
		name := d.Val()
		if err := checkStoreName(d, name); err != nil {
			return err
		}
		unm, err := caddyfile.UnmarshalModule(d, "http.session.stores."+name)
		if err != nil {
			return err
		}
		*raw = caddyconfig.JSONModuleObject(unm, "backend", name, nil)
		return nil
	}
}

// checkOrigin refuses an origin that is not exactly scheme://host[:port].
func checkOrigin(d *caddyfile.Dispenser, o string) error {
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok || (scheme != "http" && scheme != "https") || rest == "" || strings.ContainsAny(rest, "/?#*@ ") {
		return d.Errf("trusted origin %q: write it as scheme://host[:port], such as https://shop.example.com, with no path and no wildcard", o)
	}
	return nil
}

// listSubdirectives may be repeated; their values add up.
var listSubdirectives = []string{"secret", "client_writable", "client_readable", "trusted_origins", "forward"}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
