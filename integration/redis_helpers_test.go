package integration

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-session/caddy-session/cookie"
	"github.com/caddy-session/caddy-session/internal/testkit"
)

// The Redis tests run real redis-server processes, started through the
// test kit on spare loopback ports (never the machine's own Redis on
// 6379), without persistence unless a test asks for it, in the test's temp
// dir. Without redis-server they skip, or fail when CI is set.

// redisServerBin returns the path of redis-server, or skips the test (fails
// it when CI is set).
func redisServerBin(t testing.TB) string {
	t.Helper()
	return testkit.RedisServerPath(t)
}

// redisServer is one redis-server process of a test.
type redisServer struct {
	*testkit.Redis
	t testing.TB
}

// startRedis starts redis-server on a spare port, with args after the
// standard ones (loopback, temp dir, no persistence unless args say
// otherwise: later arguments win).
func startRedis(t testing.TB, args ...string) *redisServer {
	t.Helper()
	return &redisServer{testkit.StartRedis(t, args...), t}
}

// startRedisTLS is startRedis for a server that speaks only TLS (args set
// it up, with "{port}" for the port); tc is how the tests reach it.
func startRedisTLS(t testing.TB, tc *tls.Config, args ...string) *redisServer {
	t.Helper()
	return &redisServer{testkit.StartRedisWith(t, testkit.RedisOptions{Args: args, TLS: tc}), t}
}

// startRedisOn starts redis-server on port, which the test reserved with
// freePort, retrying for a few seconds.
func startRedisOn(t testing.TB, port int, args ...string) *redisServer {
	t.Helper()
	return &redisServer{testkit.StartRedisWith(t, testkit.RedisOptions{Args: args, Port: port}), t}
}

// Client is a plain go-redis client for set-up and inspection, patient
// enough for DEBUG SLEEP (it is not the store under test).
func (s *redisServer) Client() *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr(), DialTimeout: time.Second, ReadTimeout: 15 * time.Second, MaxRetries: -1,
		ClientName: redisTestClientName})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// redisTestClientName names the tests' own connections in CLIENT LIST.
const redisTestClientName = "integration-test"

// redisPing sends one PING over a fresh connection.
func redisPing(addr string, timeout time.Duration) error {
	return testkit.RedisPing(addr, nil, timeout)
}

// redisSession is a session block body with a Redis store at url, read
// timeout 200ms, and extra lines (each gets a tab).
func redisSession(url string, extra ...string) string {
	lines := []string{
		"secret " + secretA,
		"store redis {",
		"\turl " + url,
		"\tread_timeout 200ms",
		"\twrite_timeout 200ms",
		"\tdial_timeout 250ms",
		"}",
	}
	lines = append(lines, extra...)
	return "\t" + strings.Join(lines, "\n\t")
}

// redisPatientSession is redisSession with timeouts of seconds, for tests
// about sharing and atomicity rather than timeouts: on a loaded CI machine
// a 200ms read timeout would fail them for the wrong reason.
func redisPatientSession(url string, extra ...string) string {
	return strings.NewReplacer("read_timeout 200ms", "read_timeout 3s",
		"write_timeout 200ms", "write_timeout 3s", "dial_timeout 250ms", "dial_timeout 3s").Replace(redisSession(url, extra...))
}

// redisTimed is one request's outcome, as seen by a client.
type redisTimed struct {
	Start, End time.Time
	Took       time.Duration
	Resp       *Resp
	Err        error
}

// redisDo sends q and measures it.
func redisDo(c *Caddy, q Req) redisTimed {
	start := time.Now()
	r, err := c.DoErr(q)
	end := time.Now()
	return redisTimed{Start: start, End: end, Took: end.Sub(start), Resp: r, Err: err}
}

// redisFaultBound is the most any request may take while Redis is dead or
// stalled: the configured timeouts (dial 250ms, read 200ms, one retry) are
// well under it, and a request that waits out a stall takes longer. It is
// generous so that a loaded machine passes; the measured times are logged.
const redisFaultBound = 2 * time.Second

// redisNoClearedCookie fails when r sets or expires the session cookie.
func redisNoClearedCookie(t testing.TB, what string, r *Resp) {
	t.Helper()
	if lines := setCookieFor(r, "__session"); len(lines) > 0 {
		t.Errorf("%s: the response touched the session cookie during a store outage: %q", what, lines)
	}
}

// redisDurations summarizes measured durations for the log.
type redisDurations []time.Duration

func (d redisDurations) String() string {
	if len(d) == 0 {
		return "no requests"
	}
	s := append(redisDurations(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	var sum time.Duration
	for _, v := range s {
		sum += v
	}
	return fmt.Sprintf("n=%d min=%s median=%s p90=%s max=%s mean=%s", len(s),
		s[0].Round(time.Millisecond), s[len(s)/2].Round(time.Millisecond),
		s[len(s)*9/10].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond),
		(sum / time.Duration(len(s))).Round(time.Millisecond))
}

// redisCommandStats returns the calls per command from INFO commandstats.
func redisCommandStats(t testing.TB, c *goredis.Client) map[string]int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[strings.TrimPrefix(name, "cmdstat_")] = n
			}
		}
	}
	return out
}

// redisCommandDelta returns after-before per command, without the
// inspection client's own INFO calls, and the total.
func redisCommandDelta(before, after map[string]int64) (map[string]int64, int64) {
	out := map[string]int64{}
	var total int64
	for name, n := range after {
		if name == "info" || name == "echo" {
			continue
		}
		if d := n - before[name]; d > 0 {
			out[name] = d
			total += d
		}
	}
	return out, total
}

// redisEntry is one key of a dump: its type, TTL and every string in it.
type redisEntry struct {
	Key     string
	Type    string
	PTTL    time.Duration // -1: no TTL
	Strings []string      // fields, values, members
}

// redisDump lists every key of the server's database 0 with SCAN, and
// reads each.
func redisDump(t testing.TB, c *goredis.Client) []redisEntry {
	t.Helper()
	ctx := context.Background()
	var out []redisEntry
	iter := c.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		e := redisEntry{Key: key}
		var err error
		if e.Type, err = c.Type(ctx, key).Result(); err != nil {
			t.Fatalf("TYPE %q: %v", key, err)
		}
		pttl, err := c.Do(ctx, "PTTL", key).Int64()
		if err != nil {
			t.Fatalf("PTTL %q: %v", key, err)
		}
		if pttl < 0 {
			e.PTTL = time.Duration(pttl)
		} else {
			e.PTTL = time.Duration(pttl) * time.Millisecond
		}
		switch e.Type {
		case "hash":
			h, err := c.HGetAll(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			for f, v := range h {
				e.Strings = append(e.Strings, f, v)
			}
		case "string":
			v, err := c.Get(ctx, key).Result()
			if err != nil && err != goredis.Nil {
				t.Fatal(err)
			}
			e.Strings = append(e.Strings, v)
		case "zset":
			zs, err := c.ZRangeWithScores(ctx, key, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, z := range zs {
				e.Strings = append(e.Strings, fmt.Sprint(z.Member))
			}
		case "set":
			m, err := c.SMembers(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			e.Strings = append(e.Strings, m...)
		case "list":
			m, err := c.LRange(ctx, key, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			e.Strings = append(e.Strings, m...)
		case "none":
			continue // expired between SCAN and TYPE
		default:
			t.Errorf("key %q has unexpected type %s", key, e.Type)
		}
		out = append(out, e)
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	return out
}

// redisChunks returns s and every 16-character substring of it: anything
// that holds a 16+ character piece of s holds one of these.
func redisChunks(s string) []string {
	const n = 16
	out := []string{s}
	for i := 0; i+n <= len(s); i++ {
		out = append(out, s[i:i+n])
	}
	return out
}

// redisSessionID decodes the session ID inside a server-store cookie value
// issued under secretA, as the handler does.
func redisSessionID(t testing.TB, value string) string {
	t.Helper()
	codec, err := cookie.NewCodec([][]byte{[]byte(secretA)})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	if _, err := codec.Decode("__session", "127.0.0.1", value, &id); err != nil {
		t.Fatalf("decoding a session cookie issued by Caddy: %v", err)
	}
	if !cookie.ValidID(id) {
		t.Fatalf("the cookie holds %d characters that are not a valid session ID", len(id))
	}
	return id
}

// redisIssuedValues collects every session cookie value a response set
// (not expiries).
func redisIssuedValues(t testing.TB, r *Resp) []string {
	t.Helper()
	var out []string
	for _, line := range setCookieFor(r, "__session") {
		if !isExpiry(t, line) {
			out = append(out, parseSetCookie(t, line).Value)
		}
	}
	return out
}

// redisSawHeader is the response header through which the echo upstream
// reports what session headers a request carried (the gateway strips
// X-Session-* response headers, not this one).
const redisSawHeader = "X-Test-Saw"

// redisReportSession makes u answer every request to path with
// redisSawHeader: the request's X-Session-* headers, sorted, "" for none.
func redisReportSession(u *Upstream, path string) {
	u.Handle(path, func(rec *Recorded, h http.Header) int {
		var parts []string
		for k, v := range rec.SessionHeaders() {
			parts = append(parts, http.CanonicalHeaderKey(k)+"="+strings.Join(v, ","))
		}
		sort.Strings(parts)
		h.Set(redisSawHeader, strings.Join(parts, ";"))
		return 0
	})
}

// redisMonitor watches a server with MONITOR and counts the commands that
// clients send (each a round trip, since the store pipelines nothing on
// the request path) apart from those that scripts run inside Redis, which
// INFO commandstats counts alike.
type redisMonitor struct {
	conn net.Conn

	mu      sync.Mutex
	clients map[string]int64 // command name → calls sent by clients
	scripts map[string]int64 // command name → calls run by scripts
	markers map[string]bool
	err     error
}

// redisWatch starts MONITOR on a connection of its own, closed when the
// test ends.
func redisWatch(t testing.TB, s *redisServer) *redisMonitor {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	m := &redisMonitor{conn: conn, markers: map[string]bool{}}
	m.Reset()
	rd := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		t.Fatalf("MONITOR: %q %v", line, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	go m.read(rd)
	return m
}

// read parses lines such as
//
//	+1700000000.123456 [0 127.0.0.1:54321] "hgetall" "caddy-session:..."
//	+1700000000.123789 [0 lua] "hset" "caddy-session:..." ...
func (m *redisMonitor) read(rd *bufio.Reader) {
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			m.mu.Lock()
			m.err = err
			m.mu.Unlock()
			return
		}
		lb, rb := strings.IndexByte(line, '['), strings.IndexByte(line, ']')
		if lb < 0 || rb < lb {
			continue
		}
		source := line[lb+1 : rb]
		args := strings.Split(strings.TrimSpace(line[rb+1:]), `" "`)
		if len(args) == 0 {
			continue
		}
		cmd := strings.ToLower(strings.Trim(args[0], `"`))
		m.mu.Lock()
		switch {
		case cmd == "echo" && len(args) == 2:
			m.markers[strings.Trim(args[1], `"`)] = true
		case cmd == "info":
		case cmd == "ping":
			// The Redis store's local cache pings its tracking
			// connection every 500 ms, whatever the traffic: not a
			// request's round trip. No request path sends PING.
		case strings.HasSuffix(source, " lua"):
			m.scripts[cmd]++
		default:
			m.clients[cmd]++
		}
		m.mu.Unlock()
	}
}

// Reset zeroes the counts.
func (m *redisMonitor) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clients, m.scripts = map[string]int64{}, map[string]int64{}
}

// Sync waits until MONITOR has reported everything the server ran before
// now (an ECHO of a fresh marker sent through c), then returns the counts
// of commands sent by clients and run by scripts (ECHO, INFO and PING left
// out).
func (m *redisMonitor) Sync(t testing.TB, c *goredis.Client) (clients, scripts map[string]int64) {
	t.Helper()
	marker := fmt.Sprintf("sync-%d", time.Now().UnixNano())
	if err := c.Echo(context.Background(), marker).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		m.mu.Lock()
		seen, err := m.markers[marker], m.err
		if seen {
			clients, scripts = maps.Clone(m.clients), maps.Clone(m.scripts)
		}
		m.mu.Unlock()
		if seen {
			return clients, scripts
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("MONITOR did not report the marker within 5 s: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// redisPKI is a throwaway CA with a server certificate for the name
// redis.test only (no IP: the client must send server_name) and a client
// certificate, as PEM files in dir.
type redisPKI struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
	// Client is how a test client reaches the server: the CA, the server
	// name and the client certificate.
	Client *tls.Config
}

// newRedisPKI writes the CA and certificates under dir.
func newRedisPKI(t testing.TB, dir string) *redisPKI {
	t.Helper()
	now := time.Now()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, "PRIVATE KEY", der)
	}

	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "caddy-session test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, dns []string) ([]byte, *ecdsa.PrivateKey) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			DNSNames:     dns,
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	srvDER, srvKey := leaf(2, "redis.test", x509.ExtKeyUsageServerAuth, []string{"redis.test"})
	cliDER, cliKey := leaf(3, "caddy", x509.ExtKeyUsageClientAuth, nil)
	p := &redisPKI{
		CA:         write("ca.pem", "CERTIFICATE", caDER),
		ServerCert: write("server.pem", "CERTIFICATE", srvDER),
		ServerKey:  writeKey("server.key", srvKey),
		ClientCert: write("client.pem", "CERTIFICATE", cliDER),
		ClientKey:  writeKey("client.key", cliKey),
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	pair, err := tls.LoadX509KeyPair(p.ClientCert, p.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	p.Client = &tls.Config{RootCAs: pool, ServerName: "redis.test", Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	return p
}
