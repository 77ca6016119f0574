package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// The tests run real redis-server processes on spare loopback ports, never
// a mock and never the machine's own Redis on 6379.

// redisBinary returns the path of redis-server, or skips the test when it
// is missing; under CI (CI set) a missing server fails instead, so that a
// broken CI image cannot pass by skipping everything.
func redisBinary(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err == nil {
		return path
	}
	msg := "redis-server is not in PATH: install Redis (Debian: apt-get install redis-server) to run the Redis store tests"
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI is set, so this is a failure, not a skip)")
	}
	t.Skip(msg)
	return ""
}

// freePort returns a loopback TCP port that was free a moment ago. Redis
// cannot listen on port 0 and report the port, so the caller starts the
// server on it and retries on a conflict.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// server is one redis-server process (data node or Sentinel).
type server struct {
	t    testing.TB
	bin  string
	dir  string
	Port int
	args []string // after the port

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
}

// Addr returns the server's host:port.
func (s *server) Addr() string {
	return "127.0.0.1:" + strconv.Itoa(s.Port)
}

// startServer starts redis-server with args (after the standard ones that
// keep it on loopback, in a temp dir, without persistence) on a fresh
// port, retrying with another port if the one chosen was taken meanwhile.
// pre, when set, runs before each attempt with the chosen port and returns
// extra arguments (a config file naming the port, say).
func startServer(t testing.TB, pre func(port int) []string, args ...string) *server {
	t.Helper()
	bin := redisBinary(t)
	var lastErr error
	for range 5 {
		s := &server{t: t, bin: bin, dir: t.TempDir(), Port: freePort(t)}
		s.args = args
		if pre != nil {
			s.args = append(pre(s.Port), args...)
		}
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Kill)
			return s
		}
	}
	t.Fatalf("starting redis-server: %v", lastErr)
	return nil
}

// start runs the process on s.Port and waits until it answers PING.
func (s *server) start() error {
	argv := s.args
	if len(argv) == 0 || !strings.HasSuffix(argv[0], ".conf") {
		// A config file must come first; plain options need a port.
		argv = append([]string{"--port", strconv.Itoa(s.Port)}, argv...)
	}
	argv = append(argv,
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--logfile", "",
	)
	cmd := exec.Command(s.bin, argv...)
	log := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = log, log
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done, s.log = cmd, done, log
	s.mu.Unlock()

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("redis-server exited at start (port %d taken?): %s", s.Port, lastLines(log.String()))
		default:
		}
		if ping(s.Addr()) == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Kill()
	return fmt.Errorf("redis-server on port %d did not answer PING within 10s: %s", s.Port, lastLines(log.String()))
}

// Kill stops the process at once (SIGKILL, as a crash would) and waits for
// it to exit. Killing a stopped server does nothing.
func (s *server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts the server again on the same port, with the same
// arguments (its data is gone: no persistence).
func (s *server) Restart() {
	s.t.Helper()
	s.Kill()
	var err error
	// The port was just released; another process taking it in between
	// is unlikely, but the kernel may need a moment.
	for range 20 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("restarting redis-server on port %d: %v", s.Port, err)
}

// Client returns a plain go-redis client to s, for test set-up and
// inspection (not the store under test).
func (s *server) Client() *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr(), DialTimeout: time.Second, ReadTimeout: 15 * time.Second})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// ping sends one PING over a fresh connection.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(buf[:n]), "+PONG") {
		// LOADING, or a Sentinel still starting.
		return errors.New(strings.TrimSpace(string(buf[:n])))
	}
	return nil
}

// lastLines keeps the end of a server log for an error message.
func lastLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

// standalone starts one redis-server.
func standalone(t testing.TB) *server {
	t.Helper()
	return startServer(t, nil)
}

// cluster starts three masters, joins them into a Redis Cluster with
// redis-cli and waits until every node reports cluster_state:ok.
func cluster(t testing.TB) []*server {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		redisBinary(t) // same skip-or-fail rule
		t.Fatal("redis-cli is not in PATH: it comes with redis-server (apt-get install redis-tools)")
	}
	nodes := make([]*server, 3)
	addrs := make([]string, 3)
	for i := range nodes {
		nodes[i] = startServer(t, func(int) []string {
			// The cluster bus defaults to port+10000, which may be
			// out of range or taken: pick it too.
			return []string{"--cluster-port", strconv.Itoa(freePort(t))}
		},
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000",
		)
		addrs[i] = nodes[i].Addr()
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v: %s", err, out)
	}
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range nodes {
		c := n.Client()
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not ready after 30s: %v %s", n.Addr(), err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nodes
}

// sentinelSet is a master, one replica and one Sentinel watching them.
type sentinelSet struct {
	Master, Replica, Sentinel *server
	Name                      string
}

// sentinel starts a master, a replica of it and a Sentinel monitoring the
// master as "mymaster" with quorum 1, and waits until the Sentinel knows
// the master and the replica is in sync.
func sentinel(t testing.TB) *sentinelSet {
	t.Helper()
	set := &sentinelSet{Name: "mymaster"}
	set.Master = startServer(t, nil)
	set.Replica = startServer(t, nil, "--replicaof", "127.0.0.1", strconv.Itoa(set.Master.Port))
	// A Sentinel needs a writable config file, which it rewrites.
	confDir := t.TempDir()
	set.Sentinel = startServer(t, func(port int) []string {
		conf := filepath.Join(confDir, fmt.Sprintf("sentinel-%d.conf", port))
		text := fmt.Sprintf("port %d\nsentinel monitor %s 127.0.0.1 %d 1\n"+
			"sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\n",
			port, set.Name, set.Master.Port, set.Name, set.Name)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return []string{conf, "--sentinel"}
	})

	ctx := context.Background()
	replica := set.Replica.Client()
	sc := goredis.NewSentinelClient(&goredis.Options{Addr: set.Sentinel.Addr(), DialTimeout: time.Second})
	t.Cleanup(func() { sc.Close() })
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
