// Package caddymodule is caddy-session's Caddy glue: the HTTP handler
// http.handlers.session, its Caddyfile directive, and the store modules in
// the http.session.stores namespace.
package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-session/caddy-session/cookie"
	"github.com/caddy-session/caddy-session/storage"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler gives the requests it sees a session: it reads and verifies the
// session cookie, loads the session from its store, forwards it to the
// next handlers as X-Session-* request headers (after removing every
// X-Session-* header the client sent), answers the reserved API path
// (/__session by default) itself, and applies the session changes the
// upstream asks for in its X-Session-Set, X-Session-Destroy,
// X-Session-Max-Age and X-Session-Rotate response headers.
//
// Placeholders it sets for the handlers after it:
//
// | Placeholder | Description |
// |-------------|-------------|
// | `{http.session.<key>}` | the value of a session key, encoded as its forwarded header (a string as is, other values as JSON text) |
// | `{http.session.exists}` | `true` when the request has a live session, else `false` |
// | `{http.session.ref}` | a stable, opaque reference to the session (a keyed hash of its ID, useless as a credential), empty without a session |
type Handler struct {
	// Secrets that sign and encrypt the session cookie, each at least 32
	// bytes. The first signs new cookies; every one verifies, so a secret
	// can be rotated by putting the new one first and removing the old one
	// once its cookies have expired. Placeholders such as
	// {env.SESSION_SECRET} are resolved at provisioning. When empty, a
	// secret is generated once and kept in Caddy's storage.
	Secrets []string `json:"secrets,omitempty"`

	// The session cookie's name and attributes.
	Cookie *CookieConfig `json:"cookie,omitempty"`

	// Where sessions live: a module in the http.session.stores namespace
	// (cookie, memory, file, redis, or your own). Default: cookie.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=http.session.stores inline_key=backend"`

	// Where sessions lived before store: a module of the same namespace,
	// the cookie store included. A request whose cookie names no session
	// in store but one here (or, for the cookie store, carries a
	// cookie-store session under the same cookie name and secrets) has it
	// moved into store, with its remaining lifetime, and deleted here;
	// exactly once when such requests run concurrently. New sessions and
	// writes go to store only. store must be a server store.
	PreviousStoreRaw json.RawMessage `json:"previous_store,omitempty" caddy:"namespace=http.session.stores inline_key=backend"`

	// Ends a session not used for this long. Each use extends it; the
	// extension is written at most every quarter of the timeout. Default:
	// none (only the cookie's max_age bounds a session).
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`

	// The path of the session API. Default: /__session.
	APIPath string `json:"api_path,omitempty"`

	// Turns the session API off: its path then goes to the next handler
	// like any other.
	DisableAPI bool `json:"disable_api,omitempty"`

	// Turns off the browser client, the ES module that the handler serves
	// at <api_path>/client.js (get, set, update, destroy, subscribe); that
	// path then answers 404 like every other path under the API path.
	// Default: served.
	DisableClientScript bool `json:"disable_client_script,omitempty"`

	// The keys a browser may write through the API. Default: none. Never
	// list a key the upstream trusts (a customer ID, a role).
	ClientWritable []string `json:"client_writable,omitempty"`

	// The keys the API returns on GET; "*" for all. Default: the
	// client-writable keys.
	ClientReadable []string `json:"client_readable,omitempty"`

	// Origins (scheme://host[:port]) allowed to write through the API from
	// another site. Default: none.
	TrustedOrigins []string `json:"trusted_origins,omitempty"`

	// The keys forwarded to the upstream as X-Session-* headers. Default:
	// all.
	Forward []string `json:"forward,omitempty"`

	// The largest API request body accepted, in bytes. Default: 65536.
	MaxBody int64 `json:"max_body,omitempty"`

	// The largest session, in bytes of its JSON encoding, that a server
	// store accepts. Default: 65536. The cookie store is bounded by its
	// chunks instead.
	MaxSize int64 `json:"max_size,omitempty"`

	// The most keys a session may hold. Default: 64.
	MaxKeys int `json:"max_keys,omitempty"`

	// What happens when the store cannot be reached: "fail_open" (the
	// request goes on with no session headers, and an error is logged) or
	// "fail_closed" (503). API calls answer 503 either way. Default:
	// fail_open.
	OnStoreError string `json:"on_store_error,omitempty"`

	// Whether responses get "Vary: Cookie", so shared caches never serve
	// one visitor's page to another (nor an anonymous page to a visitor
	// with a session). Default: true.
	VaryCookie *bool `json:"vary_cookie,omitempty"`

	// A key (at least 32 bytes; placeholders allowed) that turns on
	// X-Session-Signature: an HMAC over the forwarded X-Session-* headers,
	// the method, host, path and a timestamp, so an upstream reachable
	// around the gateway can tell forged headers from real ones. Give the
	// upstream this key, never the cookie secrets. Default: off.
	SignHeaders string `json:"sign_headers,omitempty"`

	// Imports sessions of another session layer, once, on a request that
	// has no valid session: "hydrogen_v1" reads Hydrogen 1.0's
	// CookieSessionStorage cookie (plain JSON), keeps only its
	// client_writable keys (it was never signed, so nothing in it is
	// trusted) and replaces it with a real session. Default: off.
	MigrateFrom string `json:"migrate_from,omitempty"`

	// The name of the cookie to import from. Default: the session cookie's
	// name.
	MigrateCookie string `json:"migrate_cookie,omitempty"`

	// A session key (such as customerId) by whose value the store indexes
	// sessions, so that the admin API can end every session that holds one
	// value ("log out everywhere") without scanning the store. Server
	// stores only. Default: none.
	IndexKey string `json:"index_key,omitempty"`

	// The site sessions belong to, bound into the cookie's signature: a
	// cookie presented under another audience is no session, exactly like
	// a tampered one. Default: the cookie's domain when one is set (that
	// cookie is meant for every subdomain), else the request's host name
	// (lowercase, without port). Name one explicitly for hosts that share
	// sessions on purpose; placeholders are allowed ({env.*} resolved at
	// provisioning, request placeholders per request).
	Audience string `json:"audience,omitempty"`

	// How long a new server-store session lives unless a later request
	// presents its cookie (which confirms it, once). Throwaway sessions
	// (an anonymous API write, an upstream that sets a key on a landing
	// page that crawlers hit) then cost little, and a full memory store
	// evicts them before any confirmed session. Negative turns it off.
	// Default: 1h. The cookie store keeps no server state and ignores it.
	NewSessionTTL caddy.Duration `json:"new_session_ttl,omitempty"`

	// The handler's name in the admin API (/session/<admin_id>/...) and in
	// its metrics (the id label): letters, digits, '.', '-', '_'. Default:
	// the cookie's name. Give each handler its own when several share a
	// cookie name but not a store or secrets.
	AdminID string `json:"admin_id,omitempty"`

	// The longest lifetime an upstream's X-Session-Max-Age may give a
	// session, from the moment it sends it; a longer one is cut to this.
	// It may not be below the cookie's max_age. Default: 400 days (what
	// browsers cap a cookie's Max-Age at), or max_age when that is longer.
	MaxAgeLimit caddy.Duration `json:"max_age_limit,omitempty"`

	opts          cookie.Options
	secrets       *secretSource
	mode          persistence // cookieMode or serverMode (mode*.go)
	maxChunks     int
	writable      map[string]bool
	readable      map[string]bool // nil: all
	forwardKeys   map[string]bool // nil: all
	cop           *http.CrossOriginProtection
	failClosed    bool
	vary          bool
	logger        *zap.Logger
	storeName     string
	apiBase       string // the API path's last segment
	cache         *cookieCache
	names         *headerNames
	signKey       []byte
	migrateCookie string         // "" when migration is off
	prev          *previousStore // previous_store, nil without one
	ops           opsState

	fixedAudience    string        // the audience of every request, when it does not depend on one
	domainAudience   string        // the cookie's domain as an audience, "" without one
	audienceTemplate string        // Audience with request placeholders, resolved per request
	newTTL           time.Duration // new_session_ttl, 0 when off (or the cookie store)
	maxAgeLimit      time.Duration // max_age_limit with its default (maxage.go)
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.session",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Defaults. The cookie's are the cookie package's; the names here are
// aliases kept for code that imports them.
const (
	// DefaultCookieName is an alias of cookie.DefaultName.
	DefaultCookieName = cookie.DefaultName
	// DefaultMaxAge is an alias of cookie.DefaultMaxAge.
	DefaultMaxAge = cookie.DefaultMaxAge
	// DefaultMaxChunks is an alias of cookie.DefaultMaxChunks.
	DefaultMaxChunks = cookie.DefaultMaxChunks

	// DefaultAPIPath is the session API's path.
	DefaultAPIPath = "/__session"
	// DefaultMaxBody is the largest API request body, in bytes.
	DefaultMaxBody = 64 << 10
	// DefaultNewSessionTTL is how long an unconfirmed session lives.
	DefaultNewSessionTTL = time.Hour
)

// The values of on_store_error.
const (
	failOpen   = "fail_open" // the default
	failClosed = "fail_closed"
)

var storeErrorPolicies = []string{failOpen, failClosed}

// Provision sets up the handler: defaults, secrets, store and policies.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()

	if h.APIPath == "" {
		h.APIPath = DefaultAPIPath
	}
	if h.MaxBody == 0 {
		h.MaxBody = DefaultMaxBody
	}
	if h.MaxSize == 0 {
		h.MaxSize = storage.DefaultMaxSize
	}
	if h.MaxKeys == 0 {
		h.MaxKeys = storage.DefaultMaxKeys
	}
	h.apiBase = path.Base(h.APIPath)
	h.cache = newCookieCache()
	h.names = new(headerNames)
	h.vary = h.VaryCookie == nil || *h.VaryCookie

	opts, err := h.Cookie.options()
	if err != nil {
		return err
	}
	h.opts = opts
	if err := h.provisionMaxAgeLimit(); err != nil {
		return err
	}
	if err := h.provisionAudience(); err != nil {
		return err
	}

	// Keys.
	h.writable = make(map[string]bool, len(h.ClientWritable))
	for _, k := range h.ClientWritable {
		h.writable[k] = true
	}
	switch {
	case len(h.ClientReadable) == 1 && h.ClientReadable[0] == "*":
		h.readable = nil
	case len(h.ClientReadable) > 0:
		h.readable = make(map[string]bool, len(h.ClientReadable))
		for _, k := range h.ClientReadable {
			h.readable[k] = true
		}
	default:
		h.readable = h.writable
	}
	if len(h.Forward) > 0 {
		h.forwardKeys = make(map[string]bool, len(h.Forward))
		for _, k := range h.Forward {
			h.forwardKeys[k] = true
		}
	}

	h.cop = http.NewCrossOriginProtection()
	for _, o := range h.TrustedOrigins {
		if err := h.cop.AddTrustedOrigin(o); err != nil {
			return fmt.Errorf("trusted_origins: %v; write an origin as scheme://host[:port]", err)
		}
	}

	switch h.OnStoreError {
	case "", failOpen:
	case failClosed:
		h.failClosed = true
	default:
		return fmt.Errorf("on_store_error: unknown policy %q; use %s", h.OnStoreError, orList(storeErrorPolicies))
	}

	// Store.
	if h.StoreRaw == nil {
		h.StoreRaw = json.RawMessage(`{"backend":"cookie"}`)
	}
	mod, err := ctx.LoadModule(h, "StoreRaw")
	if err != nil {
		return fmt.Errorf("loading session store: %v", err)
	}
	h.storeName = string(mod.(caddy.Module).CaddyModule().ID.Name())
	switch s := mod.(type) {
	case *CookieStore:
		h.maxChunks = s.MaxChunks
		h.mode = cookieMode{}
	case storage.Store:
		h.ops.raw = s // provisionOps gives the handler its instrumented copy
		switch ttl := time.Duration(h.NewSessionTTL); {
		case ttl == 0:
			h.newTTL = DefaultNewSessionTTL
		case ttl > 0:
			h.newTTL = ttl
		}
	default:
		return fmt.Errorf("session store %s does not implement storage.Store; see the README's \"Writing a store\"", h.storeName)
	}

	// Secrets: configured ones now; a generated one is loaded now if it
	// exists, and created on first use otherwise (never by caddy validate).
	repl := caddy.NewReplacer()
	h.warnLiteralSecrets()
	secrets := make([][]byte, len(h.Secrets))
	for i, s := range h.Secrets {
		v := repl.ReplaceAll(s, "")
		if v == "" {
			return fmt.Errorf("secret #%d is empty; if it is a placeholder such as {env.SESSION_SECRET}, set that variable", i+1)
		}
		secrets[i] = []byte(v)
	}
	h.secrets = &secretSource{logger: h.logger}
	if len(secrets) > 0 {
		c, err := cookie.NewCodec(secrets)
		if err != nil {
			return err
		}
		h.secrets.codec.Store(c)
	} else {
		h.secrets.storage = ctx.Storage()
		c, err := h.secrets.load(ctx)
		if err != nil {
			return err
		}
		if c != nil {
			h.secrets.codec.Store(c)
		}
	}

	if h.SignHeaders != "" {
		h.signKey = []byte(repl.ReplaceAll(h.SignHeaders, ""))
		if len(h.signKey) < cookie.MinSecretLen {
			return fmt.Errorf("sign_headers: the key is %d bytes; use at least %d (openssl rand -base64 48)", len(h.signKey), cookie.MinSecretLen)
		}
		for i, sec := range secrets {
			if string(sec) == string(h.signKey) {
				return fmt.Errorf("sign_headers: the key repeats secret #%d; the upstream gets this key, so it must not be a cookie secret", i+1)
			}
		}
	}

	switch h.MigrateFrom {
	case "":
	case MigrateHydrogenV1:
		h.migrateCookie = h.MigrateCookie
		if h.migrateCookie == "" {
			h.migrateCookie = h.opts.Name
		}
	default:
		return fmt.Errorf("migrate_from %q: the only source known is %s", h.MigrateFrom, MigrateHydrogenV1)
	}

	if h.opts.SameSite == http.SameSiteNoneMode {
		h.logger.Warn("same_site none sends the session cookie on cross-site requests; keep it only if another site must embed this one")
	}
	if err := h.provisionPrevious(ctx); err != nil {
		return err
	}
	return h.provisionOps(ctx) // metrics, index, admin API (ops.go)
}

// warnLiteralSecrets warns, at load, of secrets written into the config
// itself: Caddy shows the config to anyone who can read its admin
// endpoint's /config/ and writes it to its debug log.
func (h *Handler) warnLiteralSecrets() {
	for i, s := range h.Secrets {
		if s != "" && literal(s) {
			h.logger.Warn("session secret is written in the config: Caddy's admin endpoint (/config/) and its debug log show the config; put it in an environment variable or a file and write {env.SESSION_SECRET} or {file./path/to/secret}",
				zap.Int("secret", i+1))
		}
	}
	if h.SignHeaders != "" && literal(h.SignHeaders) {
		h.logger.Warn("sign_headers key is written in the config: Caddy's admin endpoint (/config/) and its debug log show the config; write {env.SESSION_SIGN_KEY} or {file./path/to/key} instead")
	}
}

// Validate checks the provisioned configuration; it changes nothing.
func (h *Handler) Validate() error {
	if !strings.HasPrefix(h.APIPath, "/") {
		return fmt.Errorf("api_path %q must start with '/'", h.APIPath)
	}
	for _, list := range []struct {
		name string
		keys []string
	}{{"client_writable", h.ClientWritable}, {"client_readable", h.ClientReadable}, {"forward", h.Forward}} {
		seen := make(map[string]string, len(list.keys))
		for _, k := range list.keys {
			if list.name == "client_readable" && k == "*" && len(list.keys) == 1 {
				continue
			}
			if !storage.ValidKey(k) {
				return fmt.Errorf("%s: invalid key %q: a key is 1 to 64 characters, a letter first, then letters, digits, '-' or '_'", list.name, k)
			}
			if o, ok := seen[storage.HeaderKey(k)]; ok {
				return fmt.Errorf("%s: keys %q and %q name the same header; list one", list.name, o, k)
			}
			seen[storage.HeaderKey(k)] = k
		}
	}
	if h.MaxBody < 0 || h.MaxSize < 0 || h.MaxKeys < 0 {
		return errors.New("max_body, max_size and max_keys must be positive")
	}
	if h.IdleTimeout < 0 {
		return errors.New("idle_timeout must be positive")
	}
	return nil
}

// Cleanup makes the handler unreachable from the admin API and ends its
// use of the store's index. It tolerates a Provision that stopped half-way.
func (h *Handler) Cleanup() error {
	if h.ops.registered {
		unregisterHandler(h)
		h.ops.registered = false
	}
	if h.ops.release != nil {
		h.ops.release()
		h.ops.release = nil
	}
	return nil
}

// limits are the bounds of a merged session.
func (h *Handler) limits() storage.Limits {
	return storage.Limits{MaxKeys: h.MaxKeys, MaxSize: h.mode.maxSize(h)}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
