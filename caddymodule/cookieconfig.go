package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-session/caddy-session/cookie"
)

// CookieConfig is the session cookie's name and attributes, after the
// options of Hydrogen's Cookie.
type CookieConfig struct {
	// The cookie's name. Default: __session. A name starting with __Host-
	// requires secure on or auto, path / and no domain.
	Name string `json:"name,omitempty"`

	// The cookie's Path. Default: /.
	Path string `json:"path,omitempty"`

	// The cookie's Domain. Default: none (the cookie goes back only to the
	// host that set it).
	Domain string `json:"domain,omitempty"`

	// The cookie's Max-Age, which is also the session's absolute life: no
	// activity extends a session past it. Default: 30 days.
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	// A fixed end for every session, in RFC 3339 (2027-01-02T15:04:05Z).
	// A time that has passed is a load error. Default: none.
	Expires string `json:"expires,omitempty"`

	// When the cookie gets the Secure attribute: "auto" (when the request
	// came over TLS, as seen by Caddy or told by a trusted proxy), "on" or
	// "off". Default: auto.
	Secure string `json:"secure,omitempty"`

	// Whether the cookie is hidden from JavaScript. Default: true.
	HTTPOnly *bool `json:"http_only,omitempty"`

	// The cookie's SameSite attribute: "lax", "strict" or "none" (which
	// forces Secure). Default: lax.
	SameSite string `json:"same_site,omitempty"`

	// Adds the Partitioned attribute (CHIPS): embedded in another site,
	// the cookie is kept per top-level site. Browsers require Secure with
	// it, so it makes the cookie Secure on every request (as same_site
	// none does); with secure off it is a load error. Default: false.
	Partitioned bool `json:"partitioned,omitempty"`

	// The cookie's Priority attribute: "low", "medium" or "high" (any
	// case). Chrome evicts a site's Low cookies first when it holds too
	// many; other browsers ignore it. Default: none (Chrome reads Medium).
	Priority string `json:"priority,omitempty"`
}

// The values of secure and same_site. Both are taken in any case, and
// secure also takes true and false for on and off (Hydrogen's spellings).
var (
	secureModes   = []string{"auto", "on", "off"}
	sameSiteModes = []string{"lax", "strict", "none"}
	priorities    = []string{"low", "medium", "high"}
)

// options turns the configuration into cookie.Options, with defaults.
func (c *CookieConfig) options() (cookie.Options, error) {
	if c == nil {
		c = new(CookieConfig)
	}
	o := cookie.Options{
		Name:        c.Name,
		Path:        c.Path,
		Domain:      c.Domain,
		MaxAge:      time.Duration(c.MaxAge),
		HTTPOnly:    c.HTTPOnly == nil || *c.HTTPOnly,
		Partitioned: c.Partitioned,
	}
	if o.Name == "" {
		o.Name = cookie.DefaultName
	}
	if o.Path == "" {
		o.Path = cookie.DefaultPath
	}
	if o.MaxAge == 0 {
		o.MaxAge = cookie.DefaultMaxAge
	}
	if o.MaxAge < time.Second {
		return o, fmt.Errorf("cookie max_age %s is too short; use at least 1s", o.MaxAge)
	}
	if c.Expires != "" {
		t, err := checkExpires(c.Expires, time.Now())
		if err != nil {
			return o, err
		}
		o.Expires = t
	}
	switch strings.ToLower(c.Secure) {
	case "", "auto":
		o.Secure = cookie.SecureAuto
	case "on", "true":
		o.Secure = cookie.SecureOn
	case "off", "false":
		o.Secure = cookie.SecureOff
	default:
		return o, fmt.Errorf("cookie secure %q: use %s", c.Secure, orList(secureModes))
	}
	switch strings.ToLower(c.SameSite) {
	case "", "lax":
		o.SameSite = http.SameSiteLaxMode
	case "strict":
		o.SameSite = http.SameSiteStrictMode
	case "none":
		o.SameSite = http.SameSiteNoneMode
	default:
		return o, fmt.Errorf("cookie same_site %q: use %s", c.SameSite, orList(sameSiteModes))
	}
	switch strings.ToLower(c.Priority) {
	case "":
	case "low":
		o.Priority = cookie.PriorityLow
	case "medium":
		o.Priority = cookie.PriorityMedium
	case "high":
		o.Priority = cookie.PriorityHigh
	default:
		return o, fmt.Errorf("cookie priority %q: use %s", c.Priority, orList(priorities))
	}
	if err := o.Validate(); err != nil {
		return o, err
	}
	return o, nil
}
