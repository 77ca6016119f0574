package redis

import (
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
	"github.com/caddy-session/caddy-session/storage/storetest"
)

// newStore returns a Store for cfg, closed when the test ends.
func newStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// kit runs the conformance kit with a fresh client per subtest on the
// servers that cfg names (the kit uses fresh random keys throughout).
//
// The kit checks behaviour, not latency: it races twenty goroutines that
// each open a connection, which on a loaded two-core CI machine under -race
// can take longer than the production timeouts. The fault tests check
// those timeouts instead.
func kit(t *testing.T, cfg Config) {
	cfg.DialTimeout, cfg.ReadTimeout, cfg.WriteTimeout = 2*time.Second, 2*time.Second, 2*time.Second
	storetest.Run(t, func(t *testing.T) storage.Store { return newStore(t, cfg) })
}

// A standalone server gets the local read cache by default: the kit runs
// against it, and again with the cache off.
func TestConformanceStandalone(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := standalone(t)
	kit(t, Config{URL: "redis://" + srv.Addr() + "/3"})
}

func TestConformanceStandaloneNoCache(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := standalone(t)
	kit(t, Config{URL: "redis://" + srv.Addr() + "/3", LocalCache: -1})
}

func TestConformanceCluster(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	nodes := cluster(t)
	s := newStore(t, Config{Addresses: addrs(nodes)})
	if !s.split {
		t.Fatal("a Cluster store without a hash tag must rotate in two steps")
	}
	kit(t, Config{Addresses: addrs(nodes)})
}

// A prefix with a hash tag puts every session in one slot, where Rotate is
// again one atomic script.
func TestConformanceClusterHashTag(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	nodes := cluster(t)
	cfg := Config{Addresses: addrs(nodes), KeyPrefix: "{sessions}:"}
	if newStore(t, cfg).split {
		t.Fatal("a Cluster store with a hash-tagged prefix can rotate in one script")
	}
	kit(t, cfg)
}

func TestConformanceSentinel(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	set := sentinel(t)
	kit(t, Config{SentinelMaster: set.Name, Addresses: []string{set.Sentinel.Addr()}, DB: 2})
}

// addrs lists the servers' addresses.
func addrs(servers []*server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.Addr()
	}
	return out
}
