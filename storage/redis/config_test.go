package redis

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		want string // in the error
	}{
		{"nothing", Config{}, "no server configured"},
		{"url and addresses", Config{URL: "redis://h:1", Addresses: []string{"h:1"}}, "use one of them"},
		{"url and sentinel", Config{URL: "redis://h:1", SentinelMaster: "m"}, "Sentinels' addresses"},
		{"url and cluster", Config{URL: "redis://h:1", Cluster: true}, "seed nodes"},
		{"sentinel and cluster", Config{Addresses: []string{"h:1"}, SentinelMaster: "m", Cluster: true}, "exclude each other"},
		{"cluster db", Config{Addresses: []string{"h:1", "h:2"}, DB: 1}, "only database 0"},
		{"negative db", Config{Addresses: []string{"h:1"}, DB: -1}, "0 or more"},
		{"negative timeout", Config{Addresses: []string{"h:1"}, ReadTimeout: -time.Second}, "timeouts must be positive"},
		{"negative pool", Config{Addresses: []string{"h:1"}, PoolSize: -1}, "pool size"},
		{"bad address", Config{Addresses: []string{"localhost"}}, "host:port"},
		{"scheme", Config{URL: "http://h:1"}, "redis://, rediss://"},
		{"bad port", Config{URL: "redis://:s3cret-pw@h:port/0"}, "invalid URL"},
		{"bad db", Config{URL: "redis://h:1/x"}, "invalid URL"},
		{"credentials twice", Config{URL: "redis://u:p@h:1", Password: "q"}, "use one place"},
		{"db twice", Config{URL: "redis://h:1/2", DB: 3}, "use one place"},
		{"unknown query option", Config{URL: "redis://h:1?bogus=1"}, "bogus"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(c.cfg)
			if err == nil {
				s.Close()
				t.Fatalf("New accepted %+v", c.cfg)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
			// A URL's password must never reach a log through an error.
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error %q shows the password", err)
			}
		})
	}
}

func TestConfigURL(t *testing.T) {
	ourTLS := &tls.Config{ServerName: "redis.internal", MinVersion: tls.VersionTLS13}
	for _, c := range []struct {
		name  string
		cfg   Config
		check func(t *testing.T, o *goredis.Options)
	}{
		{"defaults", Config{URL: "redis://u:p@h:7000/4"}, func(t *testing.T, o *goredis.Options) {
			want := goredis.Options{Addr: "h:7000", Username: "u", Password: "p", DB: 4,
				DialTimeout: DefaultDialTimeout, ReadTimeout: DefaultReadTimeout, WriteTimeout: DefaultWriteTimeout,
				MaxRetries: 1, DialerRetries: 1, PoolTimeout: DefaultDialTimeout + DefaultReadTimeout}
			same(t, o, &want)
			if !o.ContextTimeoutEnabled {
				t.Error("the caller's context deadline must bound calls")
			}
			if o.TLSConfig != nil {
				t.Error("redis:// must not use TLS")
			}
		}},
		{"query options kept", Config{URL: "redis://h:1?dial_timeout=1s&read_timeout=2s&max_retries=2"}, func(t *testing.T, o *goredis.Options) {
			same(t, o, &goredis.Options{Addr: "h:1", DialTimeout: time.Second, ReadTimeout: 2 * time.Second,
				WriteTimeout: DefaultWriteTimeout, MaxRetries: 2, DialerRetries: 1, PoolTimeout: 3 * time.Second})
		}},
		{"fields win", Config{URL: "redis://h:1?read_timeout=2s", ReadTimeout: 50 * time.Millisecond, MaxRetries: -1,
			Username: "acl", Password: "pw", DB: 5, PoolSize: 7}, func(t *testing.T, o *goredis.Options) {
			same(t, o, &goredis.Options{Addr: "h:1", Username: "acl", Password: "pw", DB: 5, PoolSize: 7,
				DialTimeout: DefaultDialTimeout, ReadTimeout: 50 * time.Millisecond, WriteTimeout: DefaultWriteTimeout,
				MaxRetries: 0, DialerRetries: 1, PoolTimeout: DefaultDialTimeout + 50*time.Millisecond})
		}},
		{"rediss", Config{URL: "rediss://h:6380"}, func(t *testing.T, o *goredis.Options) {
			if o.TLSConfig == nil || o.TLSConfig.ServerName != "h" || o.TLSConfig.InsecureSkipVerify {
				t.Errorf("rediss:// TLS = %+v, want verification against h", o.TLSConfig)
			}
		}},
		{"own TLS", Config{URL: "rediss://h:6380", TLS: ourTLS}, func(t *testing.T, o *goredis.Options) {
			if o.TLSConfig != ourTLS {
				t.Errorf("TLS config not used")
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			c.check(t, s.client.(*goredis.Client).Options())
		})
	}
}

// same compares the options this package sets.
func same(t *testing.T, got, want *goredis.Options) {
	t.Helper()
	type view struct {
		Addr, Username, Password                            string
		DB, PoolSize, MaxRetries, DialerRetries             int
		DialTimeout, ReadTimeout, WriteTimeout, PoolTimeout time.Duration
	}
	g := view{got.Addr, got.Username, got.Password, got.DB, got.PoolSize, got.MaxRetries, got.DialerRetries,
		got.DialTimeout, got.ReadTimeout, got.WriteTimeout, got.PoolTimeout}
	w := view{want.Addr, want.Username, want.Password, want.DB, want.PoolSize, want.MaxRetries, want.DialerRetries,
		want.DialTimeout, want.ReadTimeout, want.WriteTimeout, want.PoolTimeout}
	if want.PoolSize == 0 {
		w.PoolSize = g.PoolSize // go-redis's default
	}
	if g != w {
		t.Errorf("options\n got %+v\nwant %+v", g, w)
	}
}

// Addresses choose the topology: one server, a Cluster, or Sentinels.
func TestConfigTopology(t *testing.T) {
	for _, c := range []struct {
		name  string
		cfg   Config
		check func(goredis.UniversalClient) bool
		split bool
	}{
		{"one address", Config{Addresses: []string{"h:1"}, DB: 2}, isClient, false},
		{"cluster", Config{Addresses: []string{"h:1", "h:2"}}, isCluster, true},
		{"cluster with one seed", Config{Addresses: []string{"h:1"}, Cluster: true}, isCluster, true},
		{"cluster with a hash tag", Config{Addresses: []string{"h:1", "h:2"}, KeyPrefix: "{s}:"}, isCluster, false},
		{"sentinel", Config{Addresses: []string{"h:1", "h:2"}, SentinelMaster: "m"}, isClient, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if !c.check(s.client) {
				t.Errorf("client is a %T", s.client)
			}
			if s.split != c.split {
				t.Errorf("split Rotate = %v, want %v", s.split, c.split)
			}
			if s.prefix != c.cfg.prefix() {
				t.Errorf("prefix %q", s.prefix)
			}
		})
	}
	s, err := New(Config{Addresses: []string{"h:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.prefix != DefaultKeyPrefix {
		t.Errorf("default prefix = %q", s.prefix)
	}
}

func isClient(c goredis.UniversalClient) bool  { _, ok := c.(*goredis.Client); return ok }
func isCluster(c goredis.UniversalClient) bool { _, ok := c.(*goredis.ClusterClient); return ok }

func TestHashTagAndGlob(t *testing.T) {
	for prefix, want := range map[string]bool{
		"caddy-session:": false, "{s}:": true, "a{b}c:": true, "{}:": false, "{}{x}:": false, "x{y": false, "x}{y}": true,
	} {
		if got := hasHashTag(prefix); got != want {
			t.Errorf("hasHashTag(%q) = %v, want %v", prefix, got, want)
		}
	}
	if got := escapeGlob(`a*b?[c]\d`); got != `a\*b\?\[c\]\\d` {
		t.Errorf("escapeGlob = %q", got)
	}
}
