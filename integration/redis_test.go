package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-session/caddy-session/storage"
)

// The Redis store end to end: real Caddy processes, real redis-server
// processes started by the tests on spare loopback ports (see
// redis_helpers_test.go). Wall-clock bounds are generous (redisFaultBound)
// so that a loaded machine passes; the measured times are logged (-v).

// TestRedisTwoInstances: two Caddy instances on different ports with the
// same secret and the same Redis share their sessions: written through A,
// read and changed through B, seen through A, destroyed through B, after
// which the replayed cookie is no session anywhere.
func TestRedisTwoInstances(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	ctl := srv.Client()
	session := redisPatientSession(srv.URL(), "client_writable theme")
	cs := StartCaddies(t, CaddyOpts{Session: session}, CaddyOpts{Session: session})
	a, b := cs[0], cs[1]
	// One browser behind a load balancer: one jar, either instance.
	jar := NewJar()
	viaA, viaB := &Browser{C: a, Jar: jar}, &Browser{C: b, Jar: jar}

	// Written through A.
	r := viaA.API(t, "POST", `{"theme":"dark"}`)
	wantObject(t, r, http.StatusOK, `{"theme":"dark"}`)
	if len(redisIssuedValues(t, r)) != 1 {
		t.Fatalf("the write that creates the session must set its cookie; got %q", r.SetCookies())
	}

	// Read through B: its upstream gets the session, and so does the API.
	viaB.Get(t, "/page")
	wantSessionHeaders(t, b.Up.Last(t), map[string]string{"X-Session-Theme": "dark"})
	if n := a.Up.Count(); n != 0 {
		t.Fatalf("instance A's upstream got %d requests; the read went through B", n)
	}
	wantObject(t, viaB.API(t, "GET", ""), http.StatusOK, `{"theme":"dark"}`)

	// Changed through B, by its upstream (X-Session-Set): merged, not
	// replaced.
	r = viaB.Seed(t, `{"customerId":"c_42","theme":"light"}`)
	for name := range r.Header {
		if sessionName(name) {
			t.Fatalf("the client saw the upstream's %s header:\n%s", name, r)
		}
	}

	// Seen through A.
	viaA.Get(t, "/page")
	wantSessionHeaders(t, a.Up.Last(t), map[string]string{"X-Session-Theme": "light", "X-Session-Customerid": "c_42"})
	wantObject(t, viaA.API(t, "GET", ""), http.StatusOK, `{"theme":"light"}`)

	// And the other way: an API write through A, seen by B's upstream.
	wantObject(t, viaA.API(t, "POST", `{"theme":"blue"}`), http.StatusOK, `{"theme":"blue"}`)
	viaB.Get(t, "/page")
	wantSessionHeaders(t, b.Up.Last(t), map[string]string{"X-Session-Theme": "blue", "X-Session-Customerid": "c_42"})

	// Rotated through B (sign-in): the old ID is dead on A at once, the
	// new one works there.
	beforeRotate := jar.Header()
	r = viaB.Get(t, "/login", "X-Test-Resp: X-Session-Rotate: 1")
	if len(redisIssuedValues(t, r)) != 1 || jar.Header() == beforeRotate {
		t.Fatalf("X-Session-Rotate must issue a new cookie; Set-Cookie %q", r.SetCookies())
	}
	wantObject(t, a.Do(t, Req{Path: "/__session", Cookie: beforeRotate}), http.StatusOK, `{}`)
	a.Do(t, Req{Path: "/page", Cookie: beforeRotate})
	noSessionHeaders(t, a.Up.Last(t))
	viaA.Get(t, "/page")
	wantSessionHeaders(t, a.Up.Last(t), map[string]string{"X-Session-Theme": "blue", "X-Session-Customerid": "c_42"})

	// Destroyed through B: 204, the cookie expired, the record gone from
	// Redis.
	old := jar.Header()
	if old == "" {
		t.Fatal("the jar lost the session cookie")
	}
	r = viaB.API(t, "DELETE", "")
	if r.Status != http.StatusNoContent {
		t.Fatalf("DELETE through B:\n%s", r)
	}
	lines := setCookieFor(r, "__session")
	if len(lines) != 1 || !isExpiry(t, lines[0]) {
		t.Fatalf("DELETE must expire the session cookie; Set-Cookie %q", r.SetCookies())
	}
	// What remains is at most the rotation's tombstone of the old ID (a
	// hash marked "rotated", kept storage.RotationGrace; see storage/redis).
	for _, e := range redisDump(t, ctl) {
		if !slices.Contains(e.Strings, "rotated") || e.PTTL > storage.RotationGrace {
			t.Fatalf("after DELETE Redis still holds %s %q (TTL %s), want no session", e.Type, e.Key, e.PTTL)
		}
	}

	// The replayed cookie is no session on A (nor on B).
	for name, c := range map[string]*Caddy{"A": a, "B": b} {
		wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: old}), http.StatusOK, `{}`)
		r = c.Do(t, Req{Path: "/page", Cookie: old})
		redisWantUpstream200(t, r, "/page")
		noSessionHeaders(t, c.Up.Last(t))
		if lines := setCookieFor(r, "__session"); len(lines) > 0 && !isExpiry(t, lines[0]) {
			t.Fatalf("instance %s issued a session cookie on a read with a destroyed session's cookie: %q", name, lines)
		}
	}
	// A write with it through A starts a fresh session: the destroyed ID
	// is never adopted.
	r = a.Do(t, Req{Method: "POST", Path: "/__session", Body: `{"theme":"new"}`, CT: "application/json", Cookie: old})
	wantObject(t, r, http.StatusOK, `{"theme":"new"}`)
	fresh := redisIssuedValues(t, r)
	if len(fresh) != 1 || "__session="+fresh[0] == old {
		t.Fatalf("a write with a destroyed session's cookie must issue a fresh ID; Set-Cookie %q", r.SetCookies())
	}
	wantObject(t, b.Do(t, Req{Path: "/__session", Cookie: old}), http.StatusOK, `{}`)
	wantObject(t, b.Do(t, Req{Path: "/__session", Cookie: "__session=" + fresh[0]}), http.StatusOK, `{"theme":"new"}`)
}

// TestRedisTwoInstancesConcurrentWrites: upstream writes of different
// keys to one session, sent at once through two instances, all survive
// (each write is an atomic merge in Redis, whichever instance sends it).
func TestRedisTwoInstancesConcurrentWrites(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	session := redisPatientSession(srv.URL(), "client_writable theme")
	cs := StartCaddies(t, CaddyOpts{Session: session}, CaddyOpts{Session: session})
	b := cs[0].NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
	cookie := b.Jar.Header()

	const writes = 24
	var wg sync.WaitGroup
	errs := make(chan error, writes)
	for i := range writes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := cs[i%2].DoErr(Req{Path: "/w", Cookie: cookie,
				Header: []string{fmt.Sprintf(`X-Test-Resp: X-Session-Set: {"k%d":%d}`, i, i)}})
			switch {
			case err != nil:
				errs <- err
			case r.Status != http.StatusOK || len(setCookieFor(r, "__session")) > 0:
				errs <- fmt.Errorf("write %d: want 200 and no new cookie, got:\n%s", i, r)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	want := map[string]string{"X-Session-Theme": "dark"}
	for i := range writes {
		want[fmt.Sprintf("X-Session-K%d", i)] = fmt.Sprint(i)
	}
	for _, c := range cs {
		c.Do(t, Req{Path: "/page", Cookie: cookie})
		wantSessionHeaders(t, c.Up.Last(t), want)
	}
}

// redisWantUpstream200 checks that r is the echo upstream's 200 for path.
func redisWantUpstream200(t testing.TB, r *Resp, path string) {
	t.Helper()
	if r.Status != http.StatusOK || r.Header.Get("X-Upstream") != "1" || !strings.Contains(string(r.Body), path) {
		t.Fatalf("want the upstream's 200 for %s, got:\n%s", path, r)
	}
}

// redisFlowKinds are the requests a flow worker sends, by kind: a page
// (a session read), a page whose upstream writes the session
// (X-Session-Set), and an API write.
var redisFlowKinds = map[string]func(i int, cookie string) Req{
	"read": func(_ int, cookie string) Req { return Req{Path: "/flow", Cookie: cookie} },
	"upstream write": func(i int, cookie string) Req {
		return Req{Path: "/flow", Cookie: cookie, Header: []string{fmt.Sprintf(`X-Test-Resp: X-Session-Set: {"n":%d}`, i)}}
	},
	"API write": func(_ int, cookie string) Req {
		return Req{Method: "POST", Path: "/__session", Body: `{"theme":"dark"}`, CT: "application/json", Cookie: cookie}
	},
}

// redisFlowResult is one request of a flow.
type redisFlowResult struct {
	Kind string
	redisTimed
}

// redisFlow sends requests to c with cookie, one worker per kind of
// request (each one after another), until stop closes, and returns a
// function that waits for the workers and returns what each request got.
func redisFlow(c *Caddy, cookie string, kinds []string, stop <-chan struct{}) func() []redisFlowResult {
	var mu sync.Mutex
	var out []redisFlowResult
	var wg sync.WaitGroup
	for _, kind := range kinds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				res := redisDo(c, redisFlowKinds[kind](i, cookie))
				mu.Lock()
				out = append(out, redisFlowResult{kind, res})
				mu.Unlock()
				time.Sleep(15 * time.Millisecond)
			}
		}()
	}
	return func() []redisFlowResult {
		wg.Wait()
		return out
	}
}

// redisCarries reports whether the upstream saw the session of the outage
// tests (its theme key; the upstream writers add a key n).
func redisCarries(r *Resp) bool {
	return r.Status == http.StatusOK && strings.Contains(r.Header.Get(redisSawHeader), "X-Session-Theme=dark")
}

// TestRedisOutage: Redis killed while requests (reads, upstream writes,
// API writes) flow through a fail_open and a fail_closed instance, then
// restarted on the same port.
//
// The restart keeps the data: this test's Redis writes an append-only file
// (appendfsync always) in its temp dir, so SIGKILL loses nothing and the
// session created before the kill must be carried again after the restart.
// That checks recovery of the very cookie the client holds, which a Redis
// without persistence could not (its sessions die with it);
// TestRedisDownAtStart covers a Redis that comes up empty.
//
// Not parallel: it measures latencies.
func TestRedisOutage(t *testing.T) {
	srv := startRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	cs := StartCaddies(t,
		CaddyOpts{Session: redisSession(srv.URL(), "client_writable theme", "on_store_error fail_open")},
		CaddyOpts{Session: redisSession(srv.URL(), "client_writable theme", "on_store_error fail_closed")},
	)
	open, closed := cs[0], cs[1]
	for _, c := range cs {
		redisReportSession(c.Up, "/flow")
	}

	b := open.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
	cookie := b.Jar.Header()
	for _, c := range cs {
		if r := c.Do(t, Req{Path: "/flow", Cookie: cookie}); !redisCarries(r) {
			t.Fatalf("before the outage the session must be carried; got:\n%s", r)
		}
	}

	// Requests flow through both instances for the whole test.
	stop := make(chan struct{})
	kinds := []string{"read", "read", "upstream write", "API write"}
	flows := map[string]func() []redisFlowResult{
		"fail_open":   redisFlow(open, cookie, kinds, stop),
		"fail_closed": redisFlow(closed, cookie, kinds, stop),
	}
	stopped := false
	stopFlows := func() {
		if !stopped {
			stopped = true
			close(stop)
		}
	}
	defer stopFlows()
	time.Sleep(500 * time.Millisecond)

	killAt := time.Now()
	srv.Kill()
	killed := time.Now()
	t.Logf("redis-server killed (SIGKILL) at +0s")
	time.Sleep(200 * time.Millisecond)

	// During the outage, one request of each kind, timed.
	var outage redisDurations
	check := func(what string, c *Caddy, q Req) *Resp {
		t.Helper()
		res := redisDo(c, q)
		if res.Err != nil {
			t.Fatalf("%s during the outage: %v", what, res.Err)
		}
		outage = append(outage, res.Took)
		t.Logf("outage: %-48s %d in %s", what, res.Resp.Status, res.Took.Round(time.Millisecond))
		if res.Took > redisFaultBound {
			t.Errorf("%s took %s with Redis down, want under %s", what, res.Took, redisFaultBound)
		}
		if q.Method == http.MethodDelete {
			// A sign-out always reaches the browser (S44): the cookie
			// is expired, store or no store.
			if lines := setCookieFor(res.Resp, "__session"); len(lines) != 1 || !strings.Contains(lines[0], "Max-Age=0") {
				t.Errorf("%s: the session cookie is not expired during the outage: %q", what, lines)
			}
			return res.Resp
		}
		redisNoClearedCookie(t, what, res.Resp)
		return res.Resp
	}
	for _, name := range []string{"fail_open", "fail_closed"} {
		c := map[string]*Caddy{"fail_open": open, "fail_closed": closed}[name]
		wantError(t, check(name+": API GET", c, Req{Path: "/__session", Cookie: cookie}), http.StatusServiceUnavailable)
		wantError(t, check(name+": API POST", c, Req{Method: "POST", Path: "/__session", Body: `{"theme":"x"}`, CT: "application/json", Cookie: cookie}), http.StatusServiceUnavailable)
		wantError(t, check(name+": API POST without a cookie", c, Req{Method: "POST", Path: "/__session", Body: `{"theme":"x"}`, CT: "application/json"}), http.StatusServiceUnavailable)
		wantError(t, check(name+": API DELETE", c, Req{Method: "DELETE", Path: "/__session", Cookie: cookie}), http.StatusServiceUnavailable)
		// No cookie, or one that does not verify: no store needed, both
		// serve, as with no session.
		redisWantUpstream200(t, check(name+": page without a cookie", c, Req{Path: "/anon"}), "/anon")
		noSessionHeaders(t, c.Up.Last(t))
		redisWantUpstream200(t, check(name+": page with a forged cookie", c, Req{Path: "/forged", Cookie: "__session=forged-value"}), "/forged")
		noSessionHeaders(t, c.Up.Last(t))
		wantObject(t, check(name+": API GET without a cookie", c, Req{Path: "/__session"}), http.StatusOK, `{}`)
	}
	// fail_open: served, without session headers, even those the client
	// sends; an upstream write is dropped, the response still goes out.
	r := check("fail_open: page", open, Req{Path: "/open-page", Cookie: cookie, Header: []string{"X-Session-Theme: spoofed"}})
	redisWantUpstream200(t, r, "/open-page")
	for _, rec := range open.Up.Requests() {
		if rec.Path == "/open-page" {
			noSessionHeaders(t, rec)
		}
	}
	r = check("fail_open: page with an upstream X-Session-Set", open, Req{Path: "/open-write", Cookie: cookie,
		Header: []string{`X-Test-Resp: X-Session-Set: {"theme":"lost"}`}})
	redisWantUpstream200(t, r, "/open-write")
	if r.Header.Get("X-Session-Set") != "" {
		t.Errorf("the client saw the upstream's X-Session-Set:\n%s", r)
	}
	// fail_closed: 503, and the upstream never sees the request.
	r = check("fail_closed: page", closed, Req{Path: "/closed-page", Cookie: cookie})
	if r.Status != http.StatusServiceUnavailable {
		t.Errorf("fail_closed with Redis down: status %d, want 503:\n%s", r.Status, r)
	}
	for _, rec := range closed.Up.Requests() {
		if rec.Path == "/closed-page" {
			t.Errorf("fail_closed forwarded a request to the upstream with Redis down")
		}
	}
	if d := time.Until(killAt.Add(time.Second)); d > 0 {
		time.Sleep(d)
	}

	// Restart on the same port, with the same data.
	restartAt := time.Now()
	srv.Restart()
	restarted := time.Now()
	t.Logf("redis-server restarted at +%s (took %s to answer PING)", restarted.Sub(killAt).Round(time.Millisecond), restarted.Sub(restartAt).Round(time.Millisecond))

	// Recovery: both instances carry the session again within 5 s.
	for _, name := range []string{"fail_open", "fail_closed"} {
		c := map[string]*Caddy{"fail_open": open, "fail_closed": closed}[name]
		deadline := restarted.Add(5 * time.Second)
		for {
			res := redisDo(c, Req{Path: "/flow", Cookie: cookie})
			if res.Err == nil && redisCarries(res.Resp) {
				t.Logf("%s: session carried again %s after Redis answered", name, res.End.Sub(restarted).Round(time.Millisecond))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the session is not carried 5 s after Redis came back: %v %v", name, res.Err, res.Resp)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(300 * time.Millisecond)
	stopFlows()

	// Every request of the flows: answered, within the bound, the cookie
	// left alone; while Redis was down, fail_open served without session,
	// fail_closed answered 503, the API 503 with a JSON error.
	for _, name := range []string{"fail_open", "fail_closed"} {
		results := flows[name]()
		phases := map[string]redisDurations{}
		for i, res := range results {
			what := fmt.Sprintf("%s flow: %s %d (started at +%s)", name, res.Kind, i, res.Start.Sub(killAt).Round(time.Millisecond))
			if res.Err != nil {
				t.Errorf("%s: %v", what, res.Err)
				continue
			}
			if res.Took > redisFaultBound {
				t.Errorf("%s took %s, want under %s", what, res.Took.Round(time.Millisecond), redisFaultBound)
			}
			redisNoClearedCookie(t, what, res.Resp)
			saw, reached := res.Resp.Header[http.CanonicalHeaderKey(redisSawHeader)]
			api := res.Kind == "API write"
			switch {
			case res.End.Before(killAt):
				phases["before the kill"] = append(phases["before the kill"], res.Took)
				if api && res.Resp.Status != http.StatusOK || !api && !redisCarries(res.Resp) {
					t.Errorf("%s, before the kill: want 200 with the session, got %d %q", what, res.Resp.Status, saw)
				}
			case res.Start.After(killed) && res.End.Before(restartAt):
				phases["Redis down"] = append(phases["Redis down"], res.Took)
				switch {
				case api:
					if res.Resp.Status != http.StatusServiceUnavailable || !strings.Contains(string(res.Resp.Body), `"error"`) {
						t.Errorf("%s, Redis down: want 503 with a JSON error, got:\n%s", what, res.Resp)
					}
				case name == "fail_open":
					if res.Resp.Status != http.StatusOK || !reached || saw[0] != "" {
						t.Errorf("%s, Redis down: fail_open wants 200 with no session headers, got %d %q", what, res.Resp.Status, saw)
					}
				default:
					if res.Resp.Status != http.StatusServiceUnavailable || reached {
						t.Errorf("%s, Redis down: fail_closed wants 503 without reaching the upstream, got %d %q", what, res.Resp.Status, saw)
					}
				}
			case res.Start.After(restarted):
				phases["after restart"] = append(phases["after restart"], res.Took)
			}
		}
		for _, phase := range []string{"before the kill", "Redis down", "after restart"} {
			t.Logf("%s flow: %-16s %s", name, phase, phases[phase])
		}
		if len(phases["Redis down"]) == 0 {
			t.Errorf("%s: no flow request ran entirely while Redis was down", name)
		}
	}
	t.Logf("single requests during the outage: %s", outage)

	// Writes work again too, and the session kept its data.
	wantObject(t, b.API(t, "POST", `{"theme":"back"}`), http.StatusOK, `{"theme":"back"}`)
	r = closed.Do(t, Req{Path: "/flow", Cookie: b.Jar.Header()})
	if !strings.Contains(r.Header.Get(redisSawHeader), "X-Session-Theme=back") {
		t.Fatalf("after recovery, a write through fail_open is not seen through fail_closed:\n%s", r)
	}

	// The store errors were logged, without the cookie or the session ID.
	value := b.Jar.Get("__session")
	needles := append(redisChunks(value), redisChunks(redisSessionID(t, value))...)
	for _, name := range []string{"fail_open", "fail_closed"} {
		logs := map[string]*Caddy{"fail_open": open, "fail_closed": closed}[name].FinalLogs()
		if !strings.Contains(logs, `"level":"error"`) {
			t.Errorf("%s: no store error was logged during the outage", name)
		}
		for _, n := range needles {
			if strings.Contains(logs, n) {
				t.Fatalf("%s: Caddy's log holds a piece of the session cookie or ID (%q)", name, n)
			}
		}
	}
}

// TestRedisStall: Redis alive but not answering, for 4 s each time: DEBUG
// SLEEP, CLIENT PAUSE, and the process frozen (SIGSTOP, as in a VM pause).
// Requests sent in the first 1.5 s of a stall, by 6 workers at once
// through a pool of 3 connections, must come back within the configured
// timeouts plus a margin (redisFaultBound, 2 s; read_timeout is 200ms); a
// request that waited for Redis would take at least 2.5 s.
//
// Not parallel: it measures latencies.
func TestRedisStall(t *testing.T) {
	srv := startRedis(t, "--enable-debug-command", "yes")
	ctl := srv.Client()
	// A small pool: more concurrent requests than connections, so some
	// wait for one during the stall. The local read cache is off: this
	// test is about requests that meet the stall, and with the cache a
	// session read just before it is served from memory for up to about
	// 1.5 s, by design (that bound is tested in storage/redis,
	// TestCacheStopsServingWhenPongsStop).
	session := strings.Replace(redisSession(srv.URL(), "client_writable theme"), "\tdial_timeout 250ms", "\tdial_timeout 250ms\n\t\tpool_size 3\n\t\tlocal_cache off", 1)
	c := StartCaddy(t, CaddyOpts{Session: session})
	if !strings.Contains(c.caddyfile(), "pool_size 3") {
		t.Fatalf("pool_size not in the Caddyfile:\n%s", c.caddyfile())
	}
	redisReportSession(c.Up, "/flow")
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
	cookie := b.Jar.Header()
	const carried = "X-Session-Theme=dark"
	const stall = 4 * time.Second
	const window = 1500 * time.Millisecond
	const workers = 6

	waitCarried := func(t *testing.T, from time.Time, limit time.Duration) time.Duration {
		t.Helper()
		for {
			res := redisDo(c, Req{Path: "/flow", Cookie: cookie})
			if res.Err == nil && res.Resp.Status == http.StatusOK && res.Resp.Header.Get(redisSawHeader) == carried {
				return res.End.Sub(from)
			}
			if time.Since(from) > limit {
				t.Fatalf("the session is not carried %s after %s: %v %v", limit, from.Format(time.TimeOnly), res.Err, res.Resp)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	signal := srv.Signal

	for _, st := range []struct {
		name  string
		start func() error // returns once the stall is ordered
	}{
		{"DEBUG SLEEP 4", func() error {
			go func() { _ = ctl.Do(context.Background(), "DEBUG", "SLEEP", "4").Err() }()
			return nil
		}},
		{"CLIENT PAUSE 4000 ALL", func() error {
			return ctl.Do(context.Background(), "CLIENT", "PAUSE", "4000", "ALL").Err()
		}},
		{"SIGSTOP for 4s", func() error {
			if err := signal(syscall.SIGSTOP); err != nil {
				return err
			}
			cont := time.AfterFunc(stall, func() { _ = signal(syscall.SIGCONT) })
			t.Cleanup(func() { cont.Stop(); _ = signal(syscall.SIGCONT) })
			return nil
		}},
	} {
		t.Run(strings.ReplaceAll(st.name, " ", "_"), func(t *testing.T) {
			waitCarried(t, time.Now(), 10*time.Second)

			sent := time.Now()
			if err := st.start(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			// Wait until Redis stops answering, so every request below
			// meets the stall.
			for redisPing(srv.Addr(), 100*time.Millisecond) == nil {
				if time.Since(sent) > time.Second {
					t.Fatalf("%s: Redis still answers PING after 1 s", st.name)
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Logf("%s: Redis stopped answering %s after the command was sent", st.name, time.Since(sent).Round(time.Millisecond))

			var mu sync.Mutex
			var pages, apis redisDurations
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; time.Since(sent) < window; i++ {
						page := (w+i)%2 == 0
						var res redisTimed
						what := "API GET"
						if page {
							what = "page"
							res = redisDo(c, Req{Path: "/flow", Cookie: cookie})
						} else {
							res = redisDo(c, Req{Path: "/__session", Cookie: cookie})
						}
						what = fmt.Sprintf("%s: %s started at +%s", st.name, what, res.Start.Sub(sent).Round(time.Millisecond))
						if res.Err != nil {
							t.Errorf("%s: %v", what, res.Err)
							return
						}
						if res.Took > redisFaultBound {
							t.Errorf("%s took %s, want under %s (the stall lasts %s: the request waited for Redis)", what, res.Took.Round(time.Millisecond), redisFaultBound, stall)
						}
						redisNoClearedCookie(t, what, res.Resp)
						mu.Lock()
						if page {
							pages = append(pages, res.Took)
						} else {
							apis = append(apis, res.Took)
						}
						mu.Unlock()
						if page && (res.Resp.Status != http.StatusOK || res.Resp.Header.Get(redisSawHeader) != "") {
							t.Errorf("%s: fail_open wants 200 with no session headers, got %d %q", what, res.Resp.Status, res.Resp.Header.Get(redisSawHeader))
						}
						if !page && (res.Resp.Status != http.StatusServiceUnavailable || !strings.Contains(string(res.Resp.Body), `"error"`)) {
							t.Errorf("%s: want 503 with a JSON error, got:\n%s", what, res.Resp)
						}
					}
				}()
			}
			wg.Wait()
			t.Logf("%s: pages   %s", st.name, pages)
			t.Logf("%s: API GET %s", st.name, apis)
			if len(pages) == 0 || len(apis) == 0 {
				t.Fatalf("%s: no request completed within the stall window", st.name)
			}

			end := sent.Add(stall)
			if d := time.Until(end); d > 0 {
				time.Sleep(d)
			}
			t.Logf("%s: session carried again %s after the stall ended", st.name, waitCarried(t, end, 5*time.Second).Round(time.Millisecond))
		})
	}
}

// TestRedisDownAtStart: Caddy starts with Redis down, serves (fail_open),
// answers the API with 503, and uses Redis as soon as it comes up (empty:
// no persistence), within 5 s.
func TestRedisDownAtStart(t *testing.T) {
	t.Parallel()
	redisServerBin(t)
	port := freePort(t)
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	c := StartCaddy(t, CaddyOpts{Session: redisSession(url, "client_writable theme")})

	r := c.Do(t, Req{Path: "/page"})
	redisWantUpstream200(t, r, "/page")
	start := time.Now()
	r = c.Do(t, Req{Method: "POST", Path: "/__session", Body: `{"theme":"dark"}`, CT: "application/json"})
	took := time.Since(start)
	wantError(t, r, http.StatusServiceUnavailable)
	noSetCookie(t, r)
	t.Logf("API POST with Redis never up: 503 in %s", took.Round(time.Millisecond))
	if took > redisFaultBound {
		t.Errorf("API POST with Redis down took %s, want under %s", took, redisFaultBound)
	}

	startRedisOn(t, port)
	up := time.Now()
	for {
		r = c.Do(t, Req{Method: "POST", Path: "/__session", Body: `{"theme":"dark"}`, CT: "application/json"})
		if r.Status == http.StatusOK {
			t.Logf("first successful write %s after Redis answered", time.Since(up).Round(time.Millisecond))
			break
		}
		if time.Since(up) > 5*time.Second {
			t.Fatalf("writes still fail 5 s after Redis came up:\n%s", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	values := redisIssuedValues(t, r)
	if len(values) != 1 {
		t.Fatalf("the write that created the session set no cookie: %q", r.SetCookies())
	}
	c.Do(t, Req{Path: "/page", Cookie: "__session=" + values[0]})
	wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Theme": "dark"})
}

// TestRedisDump: after sessions are created, changed, rotated and destroyed
// through Caddy, a dump of the test Redis (SCAN) holds no issued cookie
// value or session ID, nor any 16-character piece of one, in any key, field
// or value; and every key has a TTL, no later than max_age.
func TestRedisDump(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	const maxAge = time.Hour
	c := StartCaddy(t, CaddyOpts{Session: redisSession(srv.URL(),
		"client_writable theme",
		"idle_timeout 20m",
		"cookie {",
		"\tmax_age 1h",
		"}",
	)})

	var issued []string
	keep := func(r *Resp) { issued = append(issued, redisIssuedValues(t, r)...) }
	live := 0
	for i := range 6 {
		b := c.NewBrowser()
		r := b.API(t, "POST", fmt.Sprintf(`{"theme":"t%d"}`, i))
		wantObject(t, r, http.StatusOK, fmt.Sprintf(`{"theme":"t%d"}`, i))
		keep(r)
		switch i % 3 {
		case 0:
			keep(b.Get(t, "/page"))
			live++
		case 1: // sign-in: an upstream write, then a new ID
			keep(b.Seed(t, fmt.Sprintf(`{"customerId":"c_%d"}`, i)))
			keep(b.Get(t, "/login", "X-Test-Resp: X-Session-Rotate: 1"))
			live++
		case 2:
			if r := b.API(t, "DELETE", ""); r.Status != http.StatusNoContent {
				t.Fatalf("DELETE:\n%s", r)
			}
		}
	}
	for i := range 3 { // created by the upstream
		b := c.NewBrowser()
		keep(b.Seed(t, fmt.Sprintf(`{"cart":"cart-%d"}`, i)))
		live++
	}
	if len(issued) < 9 {
		t.Fatalf("only %d cookie values issued", len(issued))
	}
	var needles []string
	for _, v := range issued {
		needles = append(needles, redisChunks(v)...)
		needles = append(needles, redisChunks(redisSessionID(t, v))...)
	}

	entries := redisDump(t, srv.Client())
	hashes := 0
	var maxTTL time.Duration
	for _, e := range entries {
		if !strings.HasPrefix(e.Key, "caddy-session:") {
			t.Errorf("key %q lacks the key prefix caddy-session:", e.Key)
		}
		if e.PTTL <= 0 {
			t.Errorf("key %q (%s) has no TTL (PTTL %d)", e.Key, e.Type, e.PTTL)
		} else if e.PTTL > maxAge {
			t.Errorf("key %q (%s) has TTL %s, past max_age %s", e.Key, e.Type, e.PTTL, maxAge)
		}
		maxTTL = max(maxTTL, e.PTTL)
		if e.Type == "hash" {
			hashes++
		}
		for _, s := range append([]string{e.Key}, e.Strings...) {
			for _, n := range needles {
				if strings.Contains(s, n) {
					t.Fatalf("key %q holds a piece of an issued cookie value or session ID (%q)", e.Key, n)
				}
			}
		}
	}
	// Nor does Caddy's log.
	logs := c.FinalLogs()
	for _, n := range needles {
		if strings.Contains(logs, n) {
			t.Fatalf("Caddy's log holds a piece of an issued cookie value or session ID (%q)", n)
		}
	}
	t.Logf("dump: %d keys (%d hashes) for %d live sessions, %d cookie values issued; longest TTL %s (max_age %s, idle_timeout 20m)",
		len(entries), hashes, live, len(issued), maxTTL.Round(time.Second), maxAge)
	if hashes < live {
		t.Errorf("the dump holds %d hashes for %d live sessions: is SCAN missing keys?", hashes, live)
	}
}

// TestRedisRoundTrips counts what Redis does per request, once the
// connection pool is warm and the scripts are loaded: the commands Caddy
// sends (round trips; MONITOR tells them apart from what scripts run
// inside Redis) and the commands Redis executes (INFO commandstats before
// and after, scripts' inner commands included). A read of a session that
// has not changed is served by the local read cache (no round trip, most
// of the time; never more than two); a write costs one round trip (API)
// or two (upstream: the session is loaded first), never more.
func TestRedisRoundTrips(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	ctl := srv.Client()
	c := StartCaddy(t, CaddyOpts{Session: redisPatientSession(srv.URL(), "client_writable theme")})
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
	cookie := b.Jar.Header()
	// Warm up: connections, scripts.
	for i := range 10 {
		b.Get(t, "/page")
		b.Get(t, "/page", fmt.Sprintf(`X-Test-Resp: X-Session-Set: {"n":%d}`, i))
		b.API(t, "POST", `{"theme":"dark"}`)
	}
	mon := redisWatch(t, srv)

	const n = 50
	measure := func(what string, send func(i int)) (roundTrips float64) {
		mon.Sync(t, ctl)
		mon.Reset()
		before := redisCommandStats(t, ctl)
		for i := range n {
			send(i)
		}
		sent, inScripts := mon.Sync(t, ctl)
		executed, total := redisCommandDelta(before, redisCommandStats(t, ctl))
		var trips int64
		for _, v := range sent {
			trips += v
		}
		t.Logf("%-36s %.2f round trips per request %v; %.2f commands executed %v (in scripts: %v)",
			what, float64(trips)/n, sent, float64(total)/n, executed, inScripts)
		return float64(trips) / n
	}
	read := measure("read (page with a session)", func(int) {
		r := c.Do(t, Req{Path: "/page", Cookie: cookie})
		redisWantUpstream200(t, r, "/page")
	})
	apiRead := measure("read (API GET)", func(int) {
		wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: cookie}), http.StatusOK, `{"theme":"dark"}`)
	})
	upWrite := measure("write (upstream X-Session-Set)", func(i int) {
		r := c.Do(t, Req{Path: "/page", Cookie: cookie, Header: []string{fmt.Sprintf(`X-Test-Resp: X-Session-Set: {"n":%d}`, i)}})
		redisWantUpstream200(t, r, "/page")
	})
	apiWrite := measure("write (API POST)", func(i int) {
		wantObject(t, c.Do(t, Req{Method: "POST", Path: "/__session", Body: `{"theme":"dark"}`, CT: "application/json", Cookie: cookie}), http.StatusOK, `{"theme":"dark"}`)
	})
	none := measure("no session (page without a cookie)", func(int) {
		c.Do(t, Req{Path: "/page"})
	})
	if read > 2 || apiRead > 2 {
		t.Errorf("a read request costs %.2f (page) and %.2f (API GET) round trips to Redis, want at most 2", read, apiRead)
	}
	// The same session read again: the local read cache serves it
	// (local_cache is on by default with one standalone server).
	if read > 0.5 || apiRead > 0.5 {
		t.Errorf("reads of an unchanged session cost %.2f (page) and %.2f (API GET) round trips to Redis; the local read cache should serve most of them", read, apiRead)
	}
	if upWrite > 2 || apiWrite > 2 {
		t.Errorf("a write request costs %.2f (upstream) and %.2f (API POST) round trips to Redis, want at most 2", upWrite, apiWrite)
	}
	if none != 0 {
		t.Errorf("a request without a session cookie costs %.2f round trips to Redis, want 0", none)
	}
}

// TestRedisValidateWithRedisDown: `caddy validate` passes with every form
// of store redis pointing at closed ports: provisioning never connects.
func TestRedisValidateWithRedisDown(t *testing.T) {
	t.Parallel()
	// No redis-server needed: nothing listens on these ports.
	p := func() int { return freePort(t) }
	for name, store := range map[string]string{
		"url":            fmt.Sprintf("store redis redis://127.0.0.1:%d/0", p()),
		"block":          fmt.Sprintf("store redis {\n\t\taddresses 127.0.0.1:%d\n\t\tpassword {env.REDIS_PASSWORD}\n\t\tkey_prefix test:\n\t}", p()),
		"cluster":        fmt.Sprintf("store redis {\n\t\taddresses 127.0.0.1:%d 127.0.0.1:%d 127.0.0.1:%d\n\t}", p(), p(), p()),
		"sentinel":       fmt.Sprintf("store redis {\n\t\tsentinel_master mymaster\n\t\taddresses 127.0.0.1:%d 127.0.0.1:%d\n\t}", p(), p()),
		"on_store_error": fmt.Sprintf("store redis redis://127.0.0.1:%d/0\n\ton_store_error fail_closed", p()),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			o := CaddyOpts{Session: "\tsecret " + secretA + "\n\t" + store}
			path := filepath.Join(dir, "Caddyfile")
			src := renderCaddyfile(o, p(), p(), filepath.Join(dir, "storage"), "127.0.0.1:9")
			if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			out, err := runCaddy(t, dir, []string{"REDIS_PASSWORD=pw"}, "validate", "--config", path, "--adapter", "caddyfile")
			took := time.Since(start)
			if err != nil || !strings.Contains(out, "Valid configuration") {
				t.Fatalf("caddy validate with Redis down: %v\n%s\nCaddyfile:\n%s", err, out, src)
			}
			t.Logf("caddy validate with Redis down: valid in %s", took.Round(time.Millisecond))
		})
	}
}

// TestRedisExampleTwoInstances keeps examples/redis-two-instances working:
// its Caddyfile adapts as is (and is formatted), and, on spare ports and a
// test Redis, its two gateways share a session as its README says.
func TestRedisExampleTwoInstances(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	shop := twoGatewayExample{
		dir: "redis-two-instances", gateA: 8081, gateB: 8082, shop: 9081,
		env:       []string{"SESSION_SECRET=" + secretB},
		replace:   []string{"redis://127.0.0.1:6379/0", srv.URL()},
		forbidden: "6379",
	}.run(t)
	a, b, body := shop.a, shop.b, func(r *Resp, want ...string) { t.Helper(); shop.page(t, r, want...) }

	jar := NewJar()
	viaA, viaB := &Browser{C: a, Jar: jar}, &Browser{C: b, Jar: jar}
	wantObject(t, viaA.API(t, "POST", `{"countryCode":"DE","cart":"c-1"}`), http.StatusOK, `{"countryCode":"DE","cart":"c-1"}`)
	body(viaB.Get(t, "/"), "served through gateway-b", "countryCode: DE", "cart: c-1", "customerId: \n")
	wantObject(t, viaB.API(t, "GET", ""), http.StatusOK, `{"countryCode":"DE","cart":"c-1"}`)
	body(viaB.Get(t, "/login"), "logged in as c_42 through gateway-b")
	body(viaA.Get(t, "/"), "served through gateway-a", "countryCode: DE", "customerId: c_42")
	old := jar.Header()
	if r := viaB.API(t, "DELETE", ""); r.Status != http.StatusNoContent {
		t.Fatalf("DELETE through gateway-b:\n%s", r)
	}
	wantObject(t, a.Do(t, Req{Path: "/__session", Cookie: old}), http.StatusOK, `{}`)
	body(a.Do(t, Req{Path: "/", Cookie: old}), "served through gateway-a", "countryCode: \n", "customerId: \n")
}

// TestRedisTLSAndAuth: the block form end to end against a Redis that
// speaks only TLS, wants a client certificate, and knows only an ACL user
// limited to the store's key prefix: url rediss://, username, password from
// {env.REDIS_PASSWORD} (resolved at provision), tls ca, cert, key and
// server_name (the server's certificate names redis.test, not 127.0.0.1).
// A wrong password fails fast, like any store error, and no password
// reaches the log.
func TestRedisTLSAndAuth(t *testing.T) {
	t.Parallel()
	const password, wrongPassword = "s3cret-pw-Kq81xZ", "wrong-pw-Jd93uV"
	pki := newRedisPKI(t, t.TempDir())
	srv := startRedisTLS(t, pki.Client,
		"--port", "0", "--tls-port", "{port}",
		"--tls-cert-file", pki.ServerCert, "--tls-key-file", pki.ServerKey,
		"--tls-ca-cert-file", pki.CA, "--tls-auth-clients", "yes",
		"--user", "default", "off",
		"--user", "app", "on", ">"+password, "~caddy-session:*", "+@all",
	)
	session := strings.Join([]string{
		"\tsecret " + secretA,
		"\tclient_writable theme",
		"\tstore redis {",
		fmt.Sprintf("\t\turl rediss://127.0.0.1:%d/0", srv.Port),
		"\t\tusername app",
		"\t\tpassword {env.REDIS_PASSWORD}",
		"\t\ttls {",
		"\t\t\tca " + pki.CA,
		"\t\t\tcert " + pki.ClientCert,
		"\t\t\tkey " + pki.ClientKey,
		"\t\t\tserver_name redis.test",
		"\t\t}",
		"\t}",
	}, "\n")
	cs := StartCaddies(t,
		CaddyOpts{Session: session, Env: []string{"REDIS_PASSWORD=" + password}},
		CaddyOpts{Session: session, Env: []string{"REDIS_PASSWORD=" + wrongPassword}},
	)
	good, bad := cs[0], cs[1]

	b := good.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
	b.Get(t, "/page")
	wantSessionHeaders(t, good.Up.Last(t), map[string]string{"X-Session-Theme": "dark"})

	ctl := redisTLSClient(t, srv, pki, password)
	if entries := redisDump(t, ctl); len(entries) != 1 || !strings.HasPrefix(entries[0].Key, "caddy-session:") {
		t.Fatalf("want the one session in the TLS Redis, got %v", entries)
	}

	// The wrong password: the session is unreadable, promptly.
	start := time.Now()
	r := bad.Do(t, Req{Path: "/__session", Cookie: b.Jar.Header()})
	took := time.Since(start)
	wantError(t, r, http.StatusServiceUnavailable)
	redisNoClearedCookie(t, "API GET with a wrong Redis password", r)
	t.Logf("API GET with a wrong Redis password: 503 in %s", took.Round(time.Millisecond))
	if took > redisFaultBound {
		t.Errorf("API GET with a wrong Redis password took %s, want under %s", took, redisFaultBound)
	}
	r = bad.Do(t, Req{Path: "/page", Cookie: b.Jar.Header()})
	redisWantUpstream200(t, r, "/page")
	noSessionHeaders(t, bad.Up.Last(t))

	for name, c := range map[string]*Caddy{"good": good, "bad": bad} {
		logs := c.FinalLogs()
		for _, secret := range []string{password, wrongPassword, secretA} {
			if strings.Contains(logs, secret) {
				t.Errorf("the %s instance's log holds a secret or password", name)
			}
		}
	}
}

// redisTLSClient reaches the TLS test server as the ACL user.
func redisTLSClient(t testing.TB, srv *redisServer, pki *redisPKI, password string) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), TLSConfig: pki.Client, Username: "app", Password: password,
		DialTimeout: time.Second, ReadTimeout: 5 * time.Second, ClientName: redisTestClientName})
	t.Cleanup(func() { c.Close() })
	return c
}

// redisCaddyConns returns the IDs of the connections to srv that are not
// the tests' own.
func redisCaddyConns(t testing.TB, ctl *goredis.Client) map[string]bool {
	t.Helper()
	list, err := ctl.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		var id, name string
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				id = v
			}
			if v, ok := strings.CutPrefix(f, "name="); ok {
				name = v
			}
		}
		if id != "" && name != redisTestClientName {
			out[id] = true
		}
	}
	return out
}

// TestRedisReloadKeepsClient: `caddy reload` with the same store config
// keeps the Redis client and its connections (one client per distinct
// config, kept across reloads); a reload to another config closes the old
// client's connections, so reloads leak none.
func TestRedisReloadKeepsClient(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	ctl := srv.Client()
	session := redisSession(srv.URL(), "client_writable theme")
	c := StartCaddy(t, CaddyOpts{Session: session})
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
	carried := func(what string) {
		t.Helper()
		b.Get(t, "/page")
		rec := c.Up.Last(t)
		if rec.Header.Get("X-Session-Theme") != "dark" {
			t.Fatalf("%s: the session is not carried: %v", what, rec.SessionHeaders())
		}
	}
	carried("before reloads")
	first := redisCaddyConns(t, ctl)
	if len(first) == 0 {
		t.Fatal("CLIENT LIST shows no connection from Caddy")
	}

	// A reload with the same store config (another handler setting
	// changes): the same client, the same connections.
	c.Reload(t, CaddyOpts{Session: session + "\n\tclient_readable *"})
	carried("after a reload with the same store config")
	same := redisCaddyConns(t, ctl)
	for id := range first {
		if !same[id] {
			t.Errorf("a reload with the same store config closed connection %s (before %v, after %v)", id, first, same)
		}
	}

	// Another store config: a new client; the old one closes.
	c.Reload(t, CaddyOpts{Session: strings.Replace(session, "read_timeout 200ms", "read_timeout 300ms", 1)})
	carried("after a reload with another store config")
	deadline := time.Now().Add(5 * time.Second)
	for {
		now := redisCaddyConns(t, ctl)
		left := 0
		for id := range first {
			if now[id] {
				left++
			}
		}
		if left == 0 {
			t.Logf("connections from Caddy: %d at start, %d after the same-config reload, %d after the new-config reload", len(first), len(same), len(now))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after a reload to another store config, %d of the old client's %d connections are still open", left, len(first))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
