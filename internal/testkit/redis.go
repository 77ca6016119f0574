package testkit

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// redisMissing says what to install when redis-server is missing.
const redisMissing = "redis-server is not in PATH: install Redis (Debian: apt-get install redis-server) to run the Redis tests"

// RedisServerPath returns the path of redis-server, or skips the test when
// it is missing (fails it when CI is set; see Missing).
func RedisServerPath(t testing.TB) string {
	t.Helper()
	return LookPath(t, "redis-server", redisMissing)
}

// RedisOptions describe a redis-server to start.
type RedisOptions struct {
	// Args come after the standard arguments (loopback, the port, no
	// persistence), so they win over them (--appendonly yes, --port 0
	// with --tls-port {port}). "{port}" in an argument is the port.
	Args []string
	// Config, when set, is called before each attempt with the port
	// chosen and returns arguments that go first (a config file, which
	// redis-server wants before any option, and what follows it).
	Config func(port int) []string
	// TLS, when set, is how the server is reached: it speaks only TLS.
	TLS *tls.Config
	// Port is a port the test reserved (FreePort) to start on, say after
	// Caddy was configured with it; zero picks one.
	Port int
}

// Redis is one redis-server process of a test (a data node or a
// Sentinel), on loopback, in a temp dir of the test, without persistence
// unless its arguments ask for it.
type Redis struct {
	// Port is the port it listens on (its TLS port for a TLS server).
	Port int
	// Dir is its working directory (--dir).
	Dir string

	t    testing.TB
	bin  string
	opts RedisOptions

	proc process
	mu   sync.Mutex
	logs *Buffer // the current process's
}

// StartRedis starts redis-server with args after the standard ones on a
// spare port, and stops it (SIGKILL) when the test ends.
func StartRedis(t testing.TB, args ...string) *Redis {
	t.Helper()
	return StartRedisWith(t, RedisOptions{Args: args})
}

// StartRedisWith starts redis-server as o says and waits until it answers
// PING. On a port it picks, it retries on another port when the one chosen
// was taken meanwhile; on o.Port, it retries for a few seconds.
func StartRedisWith(t testing.TB, o RedisOptions) *Redis {
	t.Helper()
	bin := RedisServerPath(t)
	if o.Port != 0 {
		s := &Redis{t: t, bin: bin, Dir: t.TempDir(), Port: o.Port, opts: o}
		var err error
		for range 20 {
			if err = s.start(); err == nil {
				t.Cleanup(s.Kill)
				return s
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("starting redis-server on port %d: %v", o.Port, err)
	}
	var err error
	for range 5 {
		s := &Redis{t: t, bin: bin, Dir: t.TempDir(), Port: FreePort(t), opts: o}
		if err = s.start(); err == nil {
			t.Cleanup(s.Kill)
			return s
		}
	}
	t.Fatalf("starting redis-server: %v", err)
	return nil
}

// Addr returns the server's host:port.
func (s *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL returns the server's redis:// URL, database 0.
func (s *Redis) URL() string { return "redis://" + s.Addr() + "/0" }

// Logs returns what the current process wrote.
func (s *Redis) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logs == nil {
		return ""
	}
	return s.logs.String()
}

// start runs the process on s.Port and waits until it answers PING.
func (s *Redis) start() error {
	port := strconv.Itoa(s.Port)
	var argv []string
	if s.opts.Config != nil {
		argv = append(argv, s.opts.Config(s.Port)...)
	}
	argv = append(argv, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	for _, a := range s.opts.Args {
		argv = append(argv, strings.ReplaceAll(a, "{port}", port))
	}
	argv = append(argv, "--dir", s.Dir, "--daemonize", "no", "--logfile", "")
	cmd := exec.Command(s.bin, argv...)
	cmd.Dir = s.Dir
	logs := new(Buffer)
	cmd.Stdout, cmd.Stderr = logs, logs
	s.mu.Lock()
	s.logs = logs
	s.mu.Unlock()
	if err := s.proc.start(cmd); err != nil {
		return err
	}
	err := s.proc.waitFor(10*time.Second, func() error { return RedisPing(s.Addr(), s.opts.TLS, 500*time.Millisecond) })
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errExited):
		return fmt.Errorf("redis-server exited at start (port %d taken?): %s", s.Port, LastLines(logs.String(), 5))
	default:
		return fmt.Errorf("redis-server on port %d: %w: %s", s.Port, err, LastLines(logs.String(), 5))
	}
}

// Kill stops the process with SIGKILL, as a crash would (a stopped one
// too), and waits for it. Killing a stopped server does nothing.
func (s *Redis) Kill() { s.proc.stop(nil, 0) }

// Signal sends sig to the process (SIGSTOP and SIGCONT stall and resume
// it).
func (s *Redis) Signal(sig syscall.Signal) error { return s.proc.signal(sig) }

// Start starts a killed server again on the same port, directory and
// arguments (so with its data only when its arguments persist it),
// retrying for a few seconds while the port is not free again.
func (s *Redis) Start() error {
	var err error
	for range 30 {
		if err = s.start(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("restarting redis-server on port %d: %w", s.Port, err)
}

// Restart kills the server and starts it again (see Start), failing the
// test when it cannot.
func (s *Redis) Restart() {
	s.t.Helper()
	s.Kill()
	if err := s.Start(); err != nil {
		s.t.Fatal(err)
	}
}

// RedisPing sends one PING over a fresh connection (over TLS when tc is
// set) and wants PONG; a server that wants authentication first (NOAUTH)
// is up too. LOADING, or a Sentinel still starting, is an error.
func RedisPing(addr string, tc *tls.Config, timeout time.Duration) error {
	var conn net.Conn
	var err error
	if tc != nil {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", addr, tc)
	} else {
		conn, err = net.DialTimeout("tcp", addr, timeout)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(buf[:n], []byte("+PONG")) && !bytes.HasPrefix(buf[:n], []byte("-NOAUTH")) {
		return errors.New(strings.TrimSpace(string(buf[:n])))
	}
	return nil
}

// StartRedisCluster starts n masters, joins them into a Redis Cluster with
// redis-cli (no replicas) and waits until every node reports
// cluster_state:ok.
func StartRedisCluster(t testing.TB, n int) []*Redis {
	t.Helper()
	RedisServerPath(t) // skip or fail first, with the same message
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal("redis-cli is not in PATH: it comes with redis-server (apt-get install redis-tools)")
	}
	nodes := make([]*Redis, n)
	addrs := make([]string, n)
	for i := range nodes {
		nodes[i] = StartRedisWith(t, RedisOptions{
			// The cluster bus defaults to port+10000, which may be out
			// of range or taken: pick it too, on each attempt.
			Config: func(int) []string { return []string{"--cluster-port", strconv.Itoa(FreePort(t))} },
			Args: []string{
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", "2000",
			},
		})
		addrs[i] = nodes[i].Addr()
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v: %s", err, out)
	}
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for _, node := range nodes {
		c := goredis.NewClient(&goredis.Options{Addr: node.Addr(), DialTimeout: time.Second})
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				t.Fatalf("cluster node %s not ready after 30s: %v %s", node.Addr(), err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
	}
	return nodes
}

// RedisSentinel is a master, one replica and one Sentinel watching them.
type RedisSentinel struct {
	Master, Replica, Sentinel *Redis
	// Name is the master's name for the Sentinel.
	Name string
}

// StartRedisSentinel starts a master, a replica of it and a Sentinel
// monitoring the master as "mymaster" with quorum 1 (down after 1 s,
// failover timeout 5 s), and waits until the Sentinel knows the master and
// the replica, and the replica is in sync.
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	set := &RedisSentinel{Name: "mymaster"}
	set.Master = StartRedis(t)
	set.Replica = StartRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(set.Master.Port))
	// A Sentinel needs a writable config file, which it rewrites.
	confDir := t.TempDir()
	set.Sentinel = StartRedisWith(t, RedisOptions{Config: func(port int) []string {
		conf := filepath.Join(confDir, fmt.Sprintf("sentinel-%d.conf", port))
		text := fmt.Sprintf("port %d\nsentinel monitor %s 127.0.0.1 %d 1\n"+
			"sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\n",
			port, set.Name, set.Master.Port, set.Name, set.Name)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return []string{conf, "--sentinel"}
	}})

	ctx := context.Background()
	replica := goredis.NewClient(&goredis.Options{Addr: set.Replica.Addr(), DialTimeout: time.Second})
	defer replica.Close()
	sc := goredis.NewSentinelClient(&goredis.Options{Addr: set.Sentinel.Addr(), DialTimeout: time.Second})
	defer sc.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		addr, err1 := sc.GetMasterAddrByName(ctx, set.Name).Result()
		info, err2 := replica.Info(ctx, "replication").Result()
		replicas, err3 := sc.Replicas(ctx, set.Name).Result()
		if err1 == nil && len(addr) == 2 && addr[1] == strconv.Itoa(set.Master.Port) &&
			err2 == nil && strings.Contains(info, "master_link_status:up") &&
			err3 == nil && len(replicas) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Sentinel set not ready after 30s: master %v %v; replica %v %q; sentinel's replicas %v %v",
				addr, err1, err2, info, replicas, err3)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return set
}
