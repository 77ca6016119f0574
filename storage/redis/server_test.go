package redis

import (
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-session/caddy-session/internal/testkit"
)

// The tests run real redis-server processes through the test kit, on spare
// loopback ports, never a mock and never the machine's own Redis on 6379.
// Without redis-server they skip, or fail when CI is set.

// server is one redis-server process (data node or Sentinel).
type server struct {
	*testkit.Redis
	t testing.TB
}

// startServer starts redis-server with args after the standard ones that
// keep it on loopback, in a temp dir, without persistence.
func startServer(t testing.TB, args ...string) *server {
	t.Helper()
	return &server{testkit.StartRedis(t, args...), t}
}

// standalone starts one redis-server.
func standalone(t testing.TB) *server {
	t.Helper()
	return startServer(t)
}

// Client returns a plain go-redis client to s, for test set-up and
// inspection (not the store under test).
func (s *server) Client() *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr(), DialTimeout: time.Second, ReadTimeout: 15 * time.Second})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// cluster starts three masters joined into a Redis Cluster, every node
// reporting cluster_state:ok.
func cluster(t testing.TB) []*server {
	t.Helper()
	var nodes []*server
	for _, n := range testkit.StartRedisCluster(t, 3) {
		nodes = append(nodes, &server{n, t})
	}
	return nodes
}

// sentinelSet is a master, one replica and one Sentinel watching them.
type sentinelSet struct {
	Master, Replica, Sentinel *server
	Name                      string
}

// sentinel starts a master, a replica of it and a Sentinel monitoring the
// master as "mymaster" with quorum 1, all in sync.
func sentinel(t testing.TB) *sentinelSet {
	t.Helper()
	set := testkit.StartRedisSentinel(t)
	return &sentinelSet{
		Master:   &server{set.Master, t},
		Replica:  &server{set.Replica, t},
		Sentinel: &server{set.Sentinel, t},
		Name:     set.Name,
	}
}
