package cookie

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Defaults that the zero values of Options fields (and of maxChunks) stand
// for, after Hydrogen's createCookieSessionStorage.
const (
	DefaultName      = "__session"
	DefaultPath      = "/"
	DefaultMaxAge    = 30 * 24 * time.Hour
	DefaultMaxChunks = 4
)

// Bounds on attributes, so that whatever the configuration, a chunk keeps
// most of its MaxLine bytes for data.
const (
	maxNameLen   = 256
	maxPathLen   = 1024
	maxDomainLen = 253
)

// SecureMode says when a cookie gets the Secure attribute.
type SecureMode int

// Secure modes.
const (
	SecureAuto SecureMode = iota // when the request came over TLS
	SecureOn
	SecureOff
)

// Options are a session cookie's attributes, after Hydrogen's Cookie.
//
// An empty Name or Path and a zero (or http.SameSiteDefaultMode) SameSite
// stand for their defaults in every method, so that no Set-Cookie goes out
// without Path or an explicit SameSite. HTTPOnly cannot default to true in
// a Go bool: callers set it.
type Options struct {
	Name     string        // default "__session"
	Path     string        // default "/"
	Domain   string        // default none (host-only)
	MaxAge   time.Duration // default 30 days; also the session's absolute life
	Expires  time.Time     // optional fixed end; zero for none
	Secure   SecureMode
	HTTPOnly bool
	SameSite http.SameSite // Lax, Strict or None; None forces Secure

	// Partitioned adds the Partitioned attribute (CHIPS): in a third-party
	// context, browsers keep the cookie per top-level site. It forces
	// Secure, which browsers require of it; SecureOff with it is invalid.
	Partitioned bool

	// Priority is the Priority attribute (Chrome's eviction order when a
	// site has too many cookies); PriorityNone writes none.
	Priority Priority
}

// Priority is a cookie's Priority attribute. Browsers that do not know it
// ignore it; Chrome evicts Low cookies of a site first, then Medium (what
// a cookie without the attribute counts as), then High.
type Priority int

// Priorities.
const (
	PriorityNone Priority = iota // no attribute
	PriorityLow
	PriorityMedium
	PriorityHigh
)

// String returns the attribute's value as written in a Set-Cookie line
// ("Low", "Medium", "High"), or "" for PriorityNone and unknown values.
func (p Priority) String() string {
	switch p {
	case PriorityLow:
		return "Low"
	case PriorityMedium:
		return "Medium"
	case PriorityHigh:
		return "High"
	}
	return ""
}

// WithDefaults returns o with its zero Name, Path, MaxAge and SameSite
// replaced by their defaults, for callers that show or store the effective
// configuration.
func (o Options) WithDefaults() Options {
	o.Name = o.name()
	o.Path = o.path()
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	o.SameSite = o.sameSite()
	return o
}

func (o Options) name() string {
	if o.Name == "" {
		return DefaultName
	}
	return o.Name
}

func (o Options) path() string {
	if o.Path == "" {
		return DefaultPath
	}
	return o.Path
}

// sameSite maps "unset" to Lax: Go writes no attribute for the zero and
// default modes, and browsers disagree on what a missing one means.
func (o Options) sameSite() http.SameSite {
	switch o.SameSite {
	case http.SameSiteLaxMode, http.SameSiteStrictMode, http.SameSiteNoneMode:
		return o.SameSite
	}
	return http.SameSiteLaxMode
}

// hasPrefixFold reports whether s starts with prefix in any case: browsers
// match cookie name prefixes case-insensitively (RFC 6265bis), so
// "__host-x" gets the same treatment as "__Host-x".
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// forcesSecure reports whether browsers drop this cookie unless it is
// Secure: a __Host- or __Secure- name, SameSite=None, or Partitioned.
func (o Options) forcesSecure() bool {
	n := o.name()
	return o.sameSite() == http.SameSiteNoneMode || o.Partitioned ||
		hasPrefixFold(n, "__Host-") || hasPrefixFold(n, "__Secure-")
}

// Validate checks o: a name that is a valid cookie name, a __Host- name
// with Secure not off, Path "/" and no Domain; a __Secure- name with Secure
// not off; SameSite None with Secure not off; Partitioned with Secure not
// off; a known Priority.
//
// It also checks what would otherwise make net/http drop parts of the
// Set-Cookie line at run time (a Path with control characters or ';', a
// malformed Domain), and a negative MaxAge.
func (o Options) Validate() error {
	name := o.name()
	if err := checkName(name); err != nil {
		return err
	}
	path := o.path()
	if path[0] != '/' {
		return fmt.Errorf("cookie path %q must start with \"/\"", path)
	}
	if len(path) > maxPathLen {
		return fmt.Errorf("cookie path is %d bytes; at most %d leave room for the value", len(path), maxPathLen)
	}
	for i := 0; i < len(path); i++ {
		if b := path[i]; b < 0x20 || b >= 0x7f || b == ';' {
			return fmt.Errorf("cookie path %q contains %q, which a cookie path cannot hold: use printable ASCII without ';' (percent-encode the rest)", path, b)
		}
	}
	if o.Domain != "" && !validDomain(o.Domain) {
		return fmt.Errorf("cookie domain %q is not a domain name: give a bare host name such as \"example.com\" (no scheme, port, path or wildcard), or none for a host-only cookie", o.Domain)
	}
	if o.MaxAge < 0 {
		return fmt.Errorf("cookie max_age %s is negative: give a positive duration such as 720h", o.MaxAge)
	}
	switch o.Secure {
	case SecureAuto, SecureOn, SecureOff:
	default:
		return fmt.Errorf("cookie secure mode %d is unknown: use auto, on or off", o.Secure)
	}
	switch o.SameSite {
	case 0, http.SameSiteDefaultMode, http.SameSiteLaxMode, http.SameSiteStrictMode, http.SameSiteNoneMode:
	default:
		return fmt.Errorf("cookie same_site mode %d is unknown: use lax, strict or none", o.SameSite)
	}
	if hasPrefixFold(name, "__Host-") {
		if o.Secure == SecureOff {
			return fmt.Errorf("cookie %q: browsers accept a __Host- cookie only when it is Secure: set secure to on or auto, not off", name)
		}
		if path != "/" {
			return fmt.Errorf("cookie %q: browsers accept a __Host- cookie only with path \"/\", not %q: set path to / or drop the __Host- prefix", name, path)
		}
		if o.Domain != "" {
			return fmt.Errorf("cookie %q: browsers accept a __Host- cookie only without a domain: remove domain %q or drop the __Host- prefix", name, o.Domain)
		}
	}
	if hasPrefixFold(name, "__Secure-") && o.Secure == SecureOff {
		return fmt.Errorf("cookie %q: browsers accept a __Secure- cookie only when it is Secure: set secure to on or auto, not off", name)
	}
	if o.sameSite() == http.SameSiteNoneMode && o.Secure == SecureOff {
		return fmt.Errorf("cookie %q: browsers reject SameSite=None without Secure: set secure to on or auto, or same_site to lax or strict", name)
	}
	if o.Partitioned && o.Secure == SecureOff {
		return fmt.Errorf("cookie %q: browsers reject a Partitioned cookie without Secure: set secure to on or auto (partitioned makes it Secure on every request), or remove partitioned", name)
	}
	switch o.Priority {
	case PriorityNone, PriorityLow, PriorityMedium, PriorityHigh:
	default:
		return fmt.Errorf("cookie priority %d is unknown: use low, medium or high", o.Priority)
	}
	return nil
}

// checkName reports why name cannot be a cookie name, if it cannot.
func checkName(name string) error {
	if len(name) > maxNameLen {
		return fmt.Errorf("cookie name is %d bytes; use at most %d", len(name), maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if !isTokenByte(name[i]) {
			return fmt.Errorf("cookie name %q contains %q, which a cookie name cannot hold: use letters, digits and !#$%%&'*+-.^_`|~", name, name[i])
		}
	}
	return nil
}

// isTokenByte reports whether b may appear in an RFC 7230 token, which is
// what RFC 6265 requires of a cookie name.
func isTokenByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

// validDomain mirrors net/http's check on Cookie.Domain, which otherwise
// drops the attribute at run time with only a log line (the cookie would
// silently become host-only).
func validDomain(d string) bool {
	if len(d) > maxDomainLen+1 {
		return false
	}
	if ip := net.ParseIP(d); ip != nil {
		return !strings.Contains(d, ":")
	}
	d = strings.TrimPrefix(d, ".")
	if d == "" {
		return false
	}
	letter := false
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			switch c := label[i]; {
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
				letter = true
			case '0' <= c && c <= '9', c == '-':
			default:
				return false
			}
		}
	}
	return letter
}

// IsSecure tells whether a cookie sent in answer to a request that tls
// says came over TLS gets the Secure attribute.
//
// A __Host- or __Secure- name, SameSite=None and Partitioned are always
// Secure: browsers reject them otherwise, so leaving Secure off could only break
// them (and Secure cookies still work on http://localhost).
func (o Options) IsSecure(tls bool) bool {
	if o.forcesSecure() {
		return true
	}
	switch o.Secure {
	case SecureOn:
		return true
	case SecureOff:
		return false
	}
	return tls
}

// ChunkName returns the name of chunk i: Name for 0, Name.i after.
func (o Options) ChunkName(i int) string {
	if i <= 0 {
		return o.name()
	}
	return o.name() + "." + strconv.Itoa(i)
}

// Line returns the Set-Cookie header value of c, a cookie that Chunks or
// Expire built from o: c.String() plus the attributes net/http does not
// write (Priority). Every Set-Cookie of the session goes through it, so
// that setting and deleting carry the same attributes.
func (o Options) Line(c *http.Cookie) string {
	line := c.String()
	if p := o.Priority.String(); p != "" && line != "" {
		line += "; Priority=" + p
	}
	return line
}
