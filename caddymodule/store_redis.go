package caddymodule

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-session/caddy-session/storage"
	"github.com/caddy-session/caddy-session/storage/redis"
)

func init() {
	caddy.RegisterModule(RedisStore{})
}

// redisClients holds one Redis client per distinct configuration, shared by
// the configs that use it and kept across reloads; the last user closes it.
var redisClients = caddy.NewUsagePool()

// RedisStore keeps sessions in Redis or Valkey (standalone, Sentinel or
// Cluster), so several Caddy instances share them. Every string field
// accepts placeholders such as {env.REDIS_PASSWORD}. Provisioning never
// connects: `caddy validate` passes with Redis down, and requests follow
// on_store_error until Redis answers.
type RedisStore struct {
	// A standalone server: redis://[user:password@]host:port/db, or
	// rediss://... for TLS. Use this or Addresses.
	URL string `json:"url,omitempty"`

	// host:port of one standalone server, of the seed nodes of a Cluster
	// (two or more), or of the Sentinels (with SentinelMaster).
	Addresses []string `json:"addresses,omitempty"`

	// Treats a single address as a Cluster's configuration endpoint.
	Cluster bool `json:"cluster,omitempty"`

	// The master name the Sentinels at Addresses monitor.
	SentinelMaster string `json:"sentinel_master,omitempty"`

	// Credentials of the Sentinels themselves, when they need them.
	SentinelUsername string `json:"sentinel_username,omitempty"`
	SentinelPassword string `json:"sentinel_password,omitempty"`

	// Credentials (ACL user and password, or only the password).
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`

	// Database number (standalone and Sentinel). Default: 0.
	DB int `json:"db,omitempty"`

	// TLS to Redis: CA, client certificate and server name.
	TLS *RedisTLS `json:"tls,omitempty"`

	// Prefix of every key. Default: caddy-session:.
	KeyPrefix string `json:"key_prefix,omitempty"`

	// Bounds on connecting and on each command; a stalled Redis costs a
	// request about twice the read timeout (one retry). Defaults: 250ms,
	// 200ms, 200ms.
	DialTimeout  caddy.Duration `json:"dial_timeout,omitempty"`
	ReadTimeout  caddy.Duration `json:"read_timeout,omitempty"`
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`

	// Connections per server. Default: go-redis's (10 per CPU).
	PoolSize int `json:"pool_size,omitempty"`

	// Sessions held in an in-process read cache, so that a session read
	// again costs no round trip to Redis. Redis (6 or later) tells the
	// cache of every change through client tracking, in the same breath as
	// it answers the writer, and a hit is served only while nothing unread
	// waits on that connection: a write answered to another instance is
	// seen by the next request here. If that channel fails unnoticed, the
	// cache stops serving within about 1.5 s. Standalone servers without
	// TLS only (url, or one address): Sentinel, Cluster and TLS read from
	// Redis every time. Default: 10000; -1 (Caddyfile: local_cache off)
	// turns it off.
	LocalCache int `json:"local_cache,omitempty"`

	// The open store, set by Provision: its methods (storage.Store and
	// the optional interfaces) are the module's.
	*redis.Store `json:"-"`

	poolKey string
}

// RedisTLS configures TLS to Redis.
type RedisTLS struct {
	// PEM file of the CAs that sign the server's certificate. Default: the
	// system's roots.
	CA string `json:"ca,omitempty"`

	// PEM files of a client certificate and its key, for mutual TLS.
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`

	// The name to verify the server's certificate against. Default: the
	// host of the address.
	ServerName string `json:"server_name,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (RedisStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.session.stores.redis",
		New: func() caddy.Module { return new(RedisStore) },
	}
}

// Provision resolves placeholders and finds or creates the client for this
// configuration. It does not connect.
func (s *RedisStore) Provision(ctx caddy.Context) error {
	useRedisLogger(ctx.Logger())
	repl := caddy.NewReplacer()
	r := func(v string) string { return repl.ReplaceAll(v, "") }
	cfg := redis.Config{
		URL:              r(s.URL),
		Cluster:          s.Cluster,
		SentinelMaster:   r(s.SentinelMaster),
		SentinelUsername: r(s.SentinelUsername),
		SentinelPassword: r(s.SentinelPassword),
		Username:         r(s.Username),
		Password:         r(s.Password),
		DB:               s.DB,
		KeyPrefix:        r(s.KeyPrefix),
		DialTimeout:      time.Duration(s.DialTimeout),
		ReadTimeout:      time.Duration(s.ReadTimeout),
		WriteTimeout:     time.Duration(s.WriteTimeout),
		PoolSize:         s.PoolSize,
		LocalCache:       s.LocalCache,
	}
	logger := ctx.Logger()
	cfg.Log = func(msg string) { logger.Warn(msg) }
	for _, a := range s.Addresses {
		cfg.Addresses = append(cfg.Addresses, r(a))
	}
	var tlsIdentity []string
	if s.TLS != nil {
		t := RedisTLS{CA: r(s.TLS.CA), Cert: r(s.TLS.Cert), Key: r(s.TLS.Key), ServerName: r(s.TLS.ServerName)}
		tc, err := t.config()
		if err != nil {
			return err
		}
		cfg.TLS = tc
		tlsIdentity = []string{t.CA, t.Cert, t.Key, t.ServerName}
	}

	// The pool key is a hash of the resolved configuration: the same
	// config shares one client across reloads; the password never sits in
	// memory as a map key.
	id, _ := json.Marshal([]any{cfg.URL, cfg.Addresses, cfg.Cluster, cfg.SentinelMaster, cfg.SentinelUsername,
		cfg.SentinelPassword, cfg.Username, cfg.Password, cfg.DB, cfg.KeyPrefix, cfg.DialTimeout, cfg.ReadTimeout,
		cfg.WriteTimeout, cfg.PoolSize, tlsIdentity, cfg.LocalCache})
	sum := sha256.Sum256(id)
	s.poolKey = hex.EncodeToString(sum[:])
	v, _, err := redisClients.LoadOrNew(s.poolKey, func() (caddy.Destructor, error) {
		st, err := redis.New(cfg)
		if err != nil {
			return nil, err
		}
		return redisClient{st}, nil
	})
	if err != nil {
		s.poolKey = ""
		return err
	}
	s.Store = v.(redisClient).Store
	return nil
}

// config builds the TLS configuration.
func (t RedisTLS) config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("redis tls ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis tls ca %s: no PEM certificate in it", t.CA)
		}
		tc.RootCAs = pool
	}
	if (t.Cert == "") != (t.Key == "") {
		return nil, fmt.Errorf("redis tls: give both cert and key for a client certificate, or neither")
	}
	if t.Cert != "" {
		pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("redis tls client certificate: %v", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// Cleanup releases this config's hold on the client; the last one closes
// it.
func (s *RedisStore) Cleanup() error {
	if s.poolKey == "" {
		return nil
	}
	_, err := redisClients.Delete(s.poolKey)
	return err
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	store redis <url>
//
//	store redis [<url>] {
//		url               <url>
//		addresses         <host:port...>
//		cluster
//		sentinel_master   <name>
//		sentinel_username <user>
//		sentinel_password <password>
//		username          <user>
//		password          <password>
//		db                <n>
//		tls {
//			ca          <pem file>
//			cert        <pem file>
//			key         <pem file>
//			server_name <name>
//		}
//		key_prefix    <prefix>
//		dial_timeout  <duration>
//		read_timeout  <duration>
//		write_timeout <duration>
//		pool_size     <n>
//		local_cache   off|<entries>
//	}
func (s *RedisStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // store name
	if d.NextArg() {
		s.URL = d.Val()
		if err := checkRedisURL(d, s.URL); err != nil {
			return err
		}
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	err := parseBlock(d, "subdirective %q of store redis", subdirectives{
		"url": func(d *caddyfile.Dispenser) (err error) {
			if s.URL != "" {
				return d.Err("redis url given twice")
			}
			if s.URL, err = oneArg(d); err != nil {
				return err
			}
			return checkRedisURL(d, s.URL)
		},
		"addresses": setStrings(&s.Addresses),
		"cluster": func(d *caddyfile.Dispenser) error {
			if d.NextArg() {
				return d.ArgErr()
			}
			s.Cluster = true
			return nil
		},
		"sentinel_master":   setString(&s.SentinelMaster),
		"sentinel_username": setString(&s.SentinelUsername),
		"sentinel_password": setString(&s.SentinelPassword),
		"username":          setString(&s.Username),
		"password":          setString(&s.Password),
		"db":                setInt(&s.DB, 0, 0),
		"tls": func(d *caddyfile.Dispenser) (err error) {
			s.TLS, err = parseRedisTLS(d)
			return err
		},
		"key_prefix":    setString(&s.KeyPrefix),
		"dial_timeout":  setDuration(&s.DialTimeout),
		"read_timeout":  setDuration(&s.ReadTimeout),
		"write_timeout": setDuration(&s.WriteTimeout),
		"pool_size":     setInt(&s.PoolSize, 1, 0),
		"local_cache": func(d *caddyfile.Dispenser) error {
			v, err := oneArg(d)
			switch {
			case err != nil:
				return err
			case v == "off":
				s.LocalCache = -1
				return nil
			}
			if s.LocalCache, err = strconv.Atoi(v); err != nil || s.LocalCache < 1 {
				return d.Errf("local_cache %q: want off or a number of sessions, at least 1", v)
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	if s.URL == "" && len(s.Addresses) == 0 {
		return d.Err("store redis needs a URL (redis://host:6379/0) or addresses")
	}
	return nil
}

// parseRedisTLS reads the tls block of store redis.
func parseRedisTLS(d *caddyfile.Dispenser) (*RedisTLS, error) {
	t := new(RedisTLS)
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	err := parseBlock(d, "tls subdirective %q of store redis", subdirectives{
		"ca":          setString(&t.CA),
		"cert":        setString(&t.Cert),
		"key":         setString(&t.Key),
		"server_name": setString(&t.ServerName),
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// go-redis logs through one logger for the whole process, to stderr by
// default, a line per failed dial. The store routes it to Caddy's log at
// debug (the handler logs store errors itself, at error level, once per
// failed request): goredis.SetLogger is called once, with a logger that
// writes through the logger of the latest provisioned RedisStore. That is
// the logger of the newest config (a reload provisions the new config
// before it cleans up the old), named http.session.stores.redis, so logs
// that include or exclude that name keep doing so; caddy.Log(), Caddy's
// default logger, would ignore them.
var (
	redisLogOnce sync.Once
	redisLog     atomic.Pointer[zap.Logger]
)

// useRedisLogger makes go-redis log through l from now on.
func useRedisLogger(l *zap.Logger) {
	redisLog.Store(l)
	redisLogOnce.Do(func() { goredis.SetLogger(redisLogger{}) })
}

// redisLogger sends go-redis's own messages to redisLog at debug.
type redisLogger struct{}

// Printf implements go-redis's logging interface.
func (redisLogger) Printf(_ context.Context, format string, v ...any) {
	if ce := redisLog.Load().Check(zap.DebugLevel, "go-redis"); ce != nil {
		ce.Write(zap.String("message", fmt.Sprintf(format, v...)))
	}
}

// redisClient lets the usage pool close a client when no config uses it.
type redisClient struct{ *redis.Store }

// Destruct closes the client's connections.
func (c redisClient) Destruct() error { return c.Close() }

// Interface guards
var (
	_ caddy.Provisioner     = (*RedisStore)(nil)
	_ caddy.CleanerUpper    = (*RedisStore)(nil)
	_ caddyfile.Unmarshaler = (*RedisStore)(nil)
	_ storage.Store         = (*RedisStore)(nil)
	_ storage.Confirmer     = (*RedisStore)(nil)
	_ storage.Counter       = (*RedisStore)(nil)
	_ storage.Indexer       = (*RedisStore)(nil)
)
