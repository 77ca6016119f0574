package redis

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Defaults for the zero values of Config. go-redis's own defaults (5 s to
// dial, 3 s to read, 3 retries, 5 dial attempts) would let a stalled Redis
// hold a request for many seconds; a session lookup sits on every request,
// so a store that does not answer quickly must fail quickly instead.
const (
	DefaultKeyPrefix    = "caddy-session:"
	DefaultDialTimeout  = 250 * time.Millisecond
	DefaultReadTimeout  = 200 * time.Millisecond
	DefaultWriteTimeout = 200 * time.Millisecond
	DefaultMaxRetries   = 1
)

// protocol is the RESP version spoken: RESP2, since the store needs nothing
// of RESP3, and go-redis checks every RESP3 connection for push
// notifications before each command, a cost on every request.
const protocol = 2

// maxRetryBackoff caps the pause before the one retry: a longer pause only
// makes a failing request slower.
const maxRetryBackoff = 100 * time.Millisecond

// Config says which Redis (or Valkey) to use and how patiently. Exactly one
// of URL and Addresses must be set:
//
//   - URL: one standalone server, "redis://[user:pass@]host:port/db",
//     "rediss://..." for TLS, or "unix:///path/to/redis.sock?db=N".
//   - Addresses with SentinelMaster: the Sentinels that know the master of
//     that name; the store follows failovers.
//   - Addresses with two or more entries, or with Cluster: the seed nodes of
//     a Redis Cluster.
//   - Addresses with one entry: one standalone server.
//
// The zero values of the other fields take the defaults above.
type Config struct {
	// URL of a standalone server, parsed with go-redis's ParseURL (its query
	// options, such as ?dial_timeout=1s, are honoured where the fields
	// below are left zero).
	URL string

	// Addresses are host:port pairs: one standalone server, the seed nodes
	// of a Cluster, or the Sentinels when SentinelMaster is set.
	Addresses []string

	// Cluster forces Cluster mode with a single address (a managed
	// service's configuration endpoint). Two or more Addresses without
	// SentinelMaster mean Cluster anyway.
	Cluster bool

	// SentinelMaster is the name the Sentinels monitor the master under.
	SentinelMaster string

	// SentinelUsername and SentinelPassword authenticate to the Sentinels
	// themselves, when they require it (they often use other credentials
	// than the data nodes).
	SentinelUsername string
	SentinelPassword string

	// Username and Password authenticate to Redis (ACL user, or only a
	// password for requirepass). They may also come from the URL, not
	// from both.
	Username string
	Password string

	// DB is the database number (standalone and Sentinel only: a Cluster
	// has only database 0). It may also come from the URL path.
	DB int

	// TLS, when set, encrypts connections with this configuration (a
	// rediss:// URL without it verifies the server against the system
	// roots).
	TLS *tls.Config

	// KeyPrefix starts every key the store writes (default
	// "caddy-session:"), so that the sessions can share a database with
	// other data and be listed with SCAN. A prefix holding a Cluster hash
	// tag ("{...}") puts every session in one slot, hence on one node.
	KeyPrefix string

	// DialTimeout bounds connecting to a server (default 250ms).
	DialTimeout time.Duration

	// ReadTimeout and WriteTimeout bound each command's reply and request
	// (default 200ms each). A stalled Redis costs a request about
	// (1 + MaxRetries) times these.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration

	// PoolSize bounds the connections per server (default: go-redis's, 10
	// per CPU).
	PoolSize int

	// MaxRetries is how often a failed command is tried again (default 1;
	// negative: never). More retries only make a failing request slower
	// and pile work onto a struggling server.
	MaxRetries int

	// LocalCache is how many sessions the in-process read cache holds
	// (see localCache): zero means DefaultLocalCache, a negative
	// value turns the cache off. Only a standalone server (URL or one
	// address) is cached; with Sentinel or Cluster the field is ignored
	// and every Load reads from Redis.
	LocalCache int

	// Log, when set, receives the store's rare messages for the operator,
	// such as the local cache staying off because Redis refused client
	// tracking. They never hold keys, values or session IDs.
	Log func(msg string)
}

// errNoAddress is returned when a Config names no server.
var errNoAddress = errors.New("redis store: no server configured: set a URL (redis://host:6379/0) or one or more addresses")

// prefix returns the key prefix in force.
func (c *Config) prefix() string {
	if c.KeyPrefix != "" {
		return c.KeyPrefix
	}
	return DefaultKeyPrefix
}

// localCacheSize returns the number of sessions to cache, or 0 for none:
// the cache needs the invalidations of one server, so Sentinel and Cluster
// get none, nor do TLS connections (see usesTLS and localCache).
func (c *Config) localCacheSize() int {
	switch {
	case c.LocalCache < 0, c.SentinelMaster != "", c.clusterMode(), c.usesTLS():
		return 0
	case c.LocalCache == 0:
		return DefaultLocalCache
	}
	return c.LocalCache
}

// usesTLS reports whether c's connections are encrypted. The local cache
// needs to see whether bytes wait on its tracking connection's socket, and
// TLS keeps decrypted bytes of its own, out of sight: no cache with TLS.
func (c *Config) usesTLS() bool {
	return c.TLS != nil || strings.HasPrefix(strings.ToLower(c.URL), "rediss://")
}

// clusterMode reports whether c describes a Redis Cluster.
func (c *Config) clusterMode() bool {
	return c.URL == "" && c.SentinelMaster == "" && (c.Cluster || len(c.Addresses) > 1)
}

// validate checks c without touching the network, so that a configuration
// mistake shows at `caddy validate` rather than on the first request.
func (c *Config) validate() error {
	switch {
	case c.URL == "" && len(c.Addresses) == 0:
		return errNoAddress
	case c.URL != "" && len(c.Addresses) > 0:
		return errors.New("redis store: both a URL and addresses are set: use one of them")
	case c.URL != "" && c.SentinelMaster != "":
		return errors.New("redis store: Sentinel needs the Sentinels' addresses, not a URL: list them as addresses")
	case c.URL != "" && c.Cluster:
		return errors.New("redis store: Cluster needs addresses, not a URL: list the seed nodes as addresses")
	case c.SentinelMaster != "" && c.Cluster:
		return errors.New("redis store: Sentinel and Cluster exclude each other: set one of them")
	case c.clusterMode() && c.DB != 0:
		return fmt.Errorf("redis store: database %d requested, but a Redis Cluster has only database 0: remove the database number", c.DB)
	case c.DB < 0:
		return fmt.Errorf("redis store: database %d: the number must be 0 or more", c.DB)
	case c.DialTimeout < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0:
		return errors.New("redis store: timeouts must be positive (or zero for the default)")
	case c.PoolSize < 0:
		return fmt.Errorf("redis store: pool size %d: it must be positive (or zero for the default)", c.PoolSize)
	}
	for _, a := range c.Addresses {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("redis store: address %q: write it as host:port (e.g. 127.0.0.1:6379)", a)
		}
	}
	return nil
}

// client builds the go-redis client that c describes. It does not dial:
// go-redis connects on the first command, so provisioning (and `caddy
// validate`) succeed while Redis is down.
func (c *Config) client() (goredis.UniversalClient, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if c.URL != "" {
		opts, err := c.parseURL()
		if err != nil {
			return nil, err
		}
		return goredis.NewClient(opts), nil
	}
	return goredis.NewUniversalClient(c.universalOptions()), nil
}

// standaloneOptions returns fresh options for a client of the one
// standalone server c names (a URL or a single address), for the
// connection the local cache's tracker opens. It assumes c is valid.
func (c *Config) standaloneOptions() (*goredis.Options, error) {
	if c.URL != "" {
		return c.parseURL()
	}
	return c.universalOptions().Simple(), nil
}

// universalOptions returns the options of a client of c's Addresses.
func (c *Config) universalOptions() *goredis.UniversalOptions {
	u := &goredis.UniversalOptions{
		Addrs:            slices.Clone(c.Addresses), // go-redis keeps it
		IsClusterMode:    c.Cluster,
		MasterName:       c.SentinelMaster,
		SentinelUsername: c.SentinelUsername,
		SentinelPassword: c.SentinelPassword,
		Username:         c.Username,
		Password:         c.Password,
		DB:               c.DB,
		TLSConfig:        c.TLS,
		PoolSize:         c.PoolSize,
	}
	t := c.timeouts(0, 0, 0, 0)
	u.DialTimeout, u.ReadTimeout, u.WriteTimeout = t.dial, t.read, t.write
	u.PoolTimeout = t.pool
	u.MaxRetries, u.MaxRetryBackoff = t.retries, maxRetryBackoff
	u.DialerRetries = 1
	u.ContextTimeoutEnabled = true
	u.Protocol = protocol
	return u
}

// parseURL turns c.URL into client options, with c's fields and our
// defaults applied over what the URL leaves unset.
func (c *Config) parseURL() (*goredis.Options, error) {
	scheme, _, _ := strings.Cut(c.URL, "://")
	switch scheme {
	case "redis", "rediss", "unix":
	default:
		return nil, errors.New("redis store: URL must start with redis://, rediss:// (TLS) or unix://")
	}
	opts, err := goredis.ParseURL(c.URL)
	if err != nil {
		// A *url.Error quotes the whole URL, password included; keep
		// only the reason.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("redis store: invalid URL (expected redis://[user:password@]host:port/db): %v", err)
	}
	if c.Username != "" || c.Password != "" {
		if opts.Username != "" || opts.Password != "" {
			return nil, errors.New("redis store: credentials are set both in the URL and as username/password: use one place")
		}
		opts.Username, opts.Password = c.Username, c.Password
	}
	if c.DB != 0 {
		if opts.DB != 0 && opts.DB != c.DB {
			return nil, fmt.Errorf("redis store: the URL selects database %d but the configuration selects %d: use one place", opts.DB, c.DB)
		}
		opts.DB = c.DB
	}
	if c.TLS != nil {
		opts.TLSConfig = c.TLS
	}
	if c.PoolSize != 0 {
		opts.PoolSize = c.PoolSize
	}
	t := c.timeouts(opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.MaxRetries)
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = t.dial, t.read, t.write
	if opts.PoolTimeout == 0 {
		opts.PoolTimeout = t.pool
	}
	opts.MaxRetries = t.retries
	if opts.MaxRetryBackoff == 0 {
		opts.MaxRetryBackoff = maxRetryBackoff
	}
	opts.DialerRetries = 1
	opts.ContextTimeoutEnabled = true
	if opts.Protocol == 0 {
		opts.Protocol = protocol
	}
	return opts, nil
}

// timeoutSet holds the resolved timeouts and retry count.
type timeoutSet struct {
	dial, read, write, pool time.Duration
	retries                 int
}

// timeouts resolves each setting: c's field if set, else the URL's (the
// arguments), else our default. retries is in go-redis's convention (-1:
// none).
func (c *Config) timeouts(urlDial, urlRead, urlWrite time.Duration, urlRetries int) timeoutSet {
	pick := func(field, fromURL, def time.Duration) time.Duration {
		switch {
		case field > 0:
			return field
		case fromURL > 0:
			return fromURL
		}
		return def
	}
	t := timeoutSet{
		dial:  pick(c.DialTimeout, urlDial, DefaultDialTimeout),
		read:  pick(c.ReadTimeout, urlRead, DefaultReadTimeout),
		write: pick(c.WriteTimeout, urlWrite, DefaultWriteTimeout),
	}
	// Waiting longer than one command's worth for a pooled connection
	// only queues requests behind a server that is not answering.
	t.pool = t.dial + t.read
	switch {
	case c.MaxRetries < 0:
		t.retries = -1
	case c.MaxRetries > 0:
		t.retries = c.MaxRetries
	case urlRetries != 0:
		t.retries = urlRetries
	default:
		t.retries = DefaultMaxRetries
	}
	return t
}
