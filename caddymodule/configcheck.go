package caddymodule

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-session/caddy-session/cookie"
	"github.com/caddy-session/caddy-session/storage"
)

// The checks below run while the Caddyfile is read, so that `caddy adapt`
// and `caddy validate` report a mistake the Caddyfile itself holds with
// its file and line. What depends on a placeholder ({env.*}, {file.*}) is
// checked at provisioning instead.

// keyHint says what a session key may be.
const keyHint = "a key is 1 to 64 characters, a letter first, then letters, digits, '-' or '_'"

// ordinal writes n as "1st", "2nd", "3rd", "4th"...
func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return strconv.Itoa(n) + suffix
}

// literal reports whether a config value holds no placeholder, so that
// what it is at run time is what it is in the Caddyfile.
func literal(v string) bool { return !strings.Contains(v, "{") }

// addSecrets reads the arguments of a `secret` line into *p, after the
// secrets of earlier `secret` lines. A literal secret must be long enough;
// no secret may repeat another. Messages name a secret by its position
// (1-based, across every `secret` line), never by its value.
func addSecrets(p *[]string) func(*caddyfile.Dispenser) error {
	return func(d *caddyfile.Dispenser) error {
		args, err := allArgs(d, 1)
		if err != nil {
			return err
		}
		for _, s := range args {
			n := len(*p) + 1
			if literal(s) && len(s) < cookie.MinSecretLen {
				return d.Errf("secret #%d (the %s secret) is %d bytes; a secret must be at least %d bytes: make one with `caddy session secret`, put it in an environment variable and write {env.SESSION_SECRET}",
					n, ordinal(n), len(s), cookie.MinSecretLen)
			}
			for i, o := range *p {
				if o == s {
					return d.Errf("secret #%d repeats secret #%d: each secret must be different; remove the repeat (make a new one with `caddy session secret`)", n, i+1)
				}
			}
			*p = append(*p, s)
		}
		return nil
	}
}

// addKeys reads the arguments of a key list (client_writable, forward...)
// into *p, after the keys of earlier lines of the same subdirective. Each
// must be a valid key; no two may name the same header. With star, "*"
// alone stands for every key.
func addKeys(p *[]string, star bool) func(*caddyfile.Dispenser) error {
	return func(d *caddyfile.Dispenser) error {
		name := d.Val()
		args, err := allArgs(d, 1)
		if err != nil {
			return err
		}
		for _, k := range args {
			if star && (k == "*" || slices.Contains(*p, "*")) {
				if k == "*" && len(*p) == 0 && len(args) == 1 {
					*p = append(*p, k)
					continue
				}
				return d.Errf("%s: * stands for every key; list either * alone or keys", name)
			}
			if err := checkKey(d, name, k); err != nil {
				return err
			}
			for _, o := range *p {
				switch {
				case o == k:
					return d.Errf("%s: key %q listed twice; list it once", name, k)
				case storage.HeaderKey(o) == storage.HeaderKey(k):
					return d.Errf("%s: keys %q and %q name the same header (X-Session-%s); list one", name, o, k, headerCase(k))
				}
			}
			*p = append(*p, k)
		}
		return nil
	}
}

// headerCase writes a key as the canonical header name part it becomes.
func headerCase(k string) string {
	parts := strings.Split(storage.HeaderKey(k), "-")
	for i, s := range parts {
		if s != "" {
			parts[i] = strings.ToUpper(s[:1]) + s[1:]
		}
	}
	return strings.Join(parts, "-")
}

// checkKey refuses a session key that is not valid.
func checkKey(d *caddyfile.Dispenser, name, k string) error {
	if !storage.ValidKey(k) {
		return d.Errf("%s: invalid key %q: %s", name, k, keyHint)
	}
	return nil
}

// setKey reads exactly one session key into p.
func setKey(p *string) func(*caddyfile.Dispenser) error {
	return func(d *caddyfile.Dispenser) error {
		name := d.Val()
		k, err := oneArg(d)
		if err != nil {
			return err
		}
		if err := checkKey(d, name, k); err != nil {
			return err
		}
		*p = k
		return nil
	}
}

// addOrigins reads the arguments of a trusted_origins line into *p, after
// those of earlier lines.
func addOrigins(p *[]string) func(*caddyfile.Dispenser) error {
	return func(d *caddyfile.Dispenser) error {
		args, err := allArgs(d, 1)
		if err != nil {
			return err
		}
		for _, o := range args {
			if err := checkOrigin(d, o); err != nil {
				return err
			}
			for _, x := range *p {
				if strings.EqualFold(x, o) {
					return d.Errf("trusted_origins: origin %q listed twice; list it once", o)
				}
			}
			*p = append(*p, o)
		}
		return nil
	}
}

// storeNamespace is the namespace of the store modules.
const storeNamespace = "http.session.stores"

// checkStoreName refuses a store no module of this binary provides,
// listing those it has and suggesting the nearest.
func checkStoreName(d *caddyfile.Dispenser, name string) error {
	if _, err := caddy.GetModule(storeNamespace + "." + name); err == nil {
		return nil
	}
	var known []string
	for _, m := range caddy.GetModules(storeNamespace) {
		known = append(known, m.ID.Name())
	}
	sort.Strings(known)
	hint := "this binary has the stores " + strings.Join(known, ", ")
	if near := nearest(name, known); near != "" {
		hint = "did you mean " + near + "? " + hint
	}
	return d.Errf("unknown store %q: this binary has no module %s.%s; %s (another store is a Caddy module built in with xcaddy)",
		name, storeNamespace, name, hint)
}

// checkRedisURL refuses a Redis URL whose scheme the store does not take
// (storage/redis takes redis://, rediss:// and unix://). A scheme from a
// placeholder is checked at provisioning. The URL itself is
// never shown: it may hold a password.
func checkRedisURL(d *caddyfile.Dispenser, u string) error {
	scheme, _, ok := strings.Cut(u, "://")
	switch {
	case !literal(scheme):
		return nil // {env.REDIS_URL}
	case !ok && !literal(u):
		return nil // host{env.PORT}...: no scheme yet; checked at provisioning
	case !ok:
		return d.Err("redis url: write it as redis://[user:password@]host:port/db, or rediss://... for TLS")
	case scheme == "redis", scheme == "rediss", scheme == "unix":
		return nil
	}
	return d.Errf("redis url: scheme %q is not Redis's; write redis://[user:password@]host:port/db, or rediss://... for TLS (unix:///path/to/redis.sock for a socket)", scheme)
}

// parseMaxAge reads a cookie max_age: a duration (12h, 30d), or a plain
// number of seconds as Hydrogen's maxAge (2592000).
func parseMaxAge(p *caddy.Duration) func(*caddyfile.Dispenser) error {
	return func(d *caddyfile.Dispenser) error {
		name := d.Val()
		v, err := oneArg(d)
		if err != nil {
			return err
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			if n < 1 || n > int64(100*365*24*time.Hour/time.Second) {
				return d.Errf("%s %q: want a positive number of seconds (2592000 is 30 days) or a duration such as 12h or 30d", name, v)
			}
			*p = caddy.Duration(time.Duration(n) * time.Second)
			return nil
		}
		dur, err := caddy.ParseDuration(v)
		if err != nil || dur <= 0 {
			return d.Errf("%s %q: want a positive duration such as 12h or 30d, or a number of seconds such as 2592000", name, v)
		}
		*p = caddy.Duration(dur)
		return nil
	}
}

// setEnumFold reads one argument, one of values in any case, or an alias
// of one (aliases maps a lower-case spelling to its value), into p.
func setEnumFold(p *string, aliases map[string]string, values ...string) func(*caddyfile.Dispenser) error {
	return func(d *caddyfile.Dispenser) error {
		name := d.Val()
		v, err := oneArg(d)
		if err != nil {
			return err
		}
		low := strings.ToLower(v)
		if a, ok := aliases[low]; ok {
			low = a
		}
		for _, ok := range values {
			if low == ok {
				*p = ok
				return nil
			}
		}
		return d.Errf("%s %q: use %s", name, v, orList(values))
	}
}

// checkExpires refuses a fixed cookie end that is not a time, or has
// passed: every session would end at once.
func checkExpires(v string, now time.Time) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return t, fmt.Errorf("cookie expires %q: not an RFC 3339 time such as 2027-01-02T15:04:05Z", v)
	}
	if !t.After(now) {
		return t, fmt.Errorf("cookie expires %s has passed: every session would end at once; set a time in the future, or remove expires and let max_age bound each session", v)
	}
	return t, nil
}
