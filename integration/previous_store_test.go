package integration

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/internal/testkit"
)

// previous_store (S50): sessions move from the previous store into the
// store, once, without signing anyone out, and a destroyed one never comes
// back.

// moveSecret signs the cookies of every config of these tests: a store
// move keeps the secrets.
const moveSecret = "previous-store-test-secret-0123456789abcdef"

// moveSite forwards the session's opaque reference, so that a test can
// tell one session from another upstream.
const moveSite = `session {
{{SESSION}}
}
reverse_proxy {{UPSTREAM}} {
	header_up X-Test-Ref {http.session.ref}
}`

// moveSession is the session block of these tests around store lines.
func moveSession(stores string) string {
	return fmt.Sprintf("secret %q\nclient_writable cart big note n first\nmax_size 256KiB\n%s", moveSecret, stores)
}

// metricValue scrapes one sample from Caddy's admin /metrics (-1 when
// it is not there).
func metricValue(t testing.TB, c *Caddy, sample string) float64 {
	t.Helper()
	resp, err := client.Get(fmt.Sprintf("http://localhost:%d/metrics", c.AdminPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`)
	m := re.FindSubmatch(b)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// retryDo sends q, again when the connection closed without an answer
// (as a reload closes idle keep-alive connections).
func retryDo(c *Caddy, q Req) (*Resp, error) {
	var err error
	for range 3 {
		var r *Resp
		if r, err = c.DoErr(q); err == nil {
			return r, nil
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			return nil, err
		}
	}
	return nil, err
}

// refOf sends one request with cookie through to the upstream and returns
// the session reference it saw ("" for none) and the response.
func refOf(c *Caddy, cookie, path string) (string, *Resp, error) {
	r, err := retryDo(c, Req{Path: path, Cookie: cookie})
	if err != nil {
		return "", nil, err
	}
	for _, rec := range c.Up.Requests() {
		if rec.Path == path {
			return rec.Header.Get("X-Test-Ref"), r, nil
		}
	}
	return "", r, fmt.Errorf("the upstream never saw %s: %s", path, r)
}

var moveSeq atomic.Int64

// uniquePath is a path no other request of the test uses.
func uniquePath(prefix string) string {
	return fmt.Sprintf("/%s/%d", prefix, moveSeq.Add(1))
}

// sessionCookie returns the value a response set for the session cookie
// itself ("" when it set none).
func sessionCookie(t testing.TB, r *Resp) string {
	t.Helper()
	for _, line := range setCookieFor(r, "__session") {
		if !isExpiry(t, line) {
			return parseSetCookie(t, line).Value
		}
	}
	return ""
}

// TestPreviousStoreCookieToMemory: sessions of the cookie store, one of
// them spread over chunks, are moved into a memory store by a reload with
// previous_store cookie; twenty concurrent requests with one old cookie
// move it once; a destroyed session's old cookie-store cookie brings
// nothing back.
func TestPreviousStoreCookieToMemory(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{
		Site:    moveSite,
		Session: moveSession("store cookie"),
		Global:  "servers {\n\t\tmetrics\n\t}",
	})

	small := c.NewBrowser()
	wantObject(t, small.API(t, "POST", `{"cart":[1,2,3]}`), 200, `{"cart":[1,2,3]}`)
	big := c.NewBrowser()
	bigValue := strings.Repeat("x", 6000)
	big.API(t, "POST", fmt.Sprintf(`{"big":%q}`, bigValue))
	if len(big.Jar.Names()) < 2 {
		t.Fatalf("the big session should span chunks in the cookie store; jar %v", big.Jar.Names())
	}
	racers := make([]*Browser, 3)
	for i := range racers {
		racers[i] = c.NewBrowser()
		wantObject(t, racers[i].API(t, "POST", fmt.Sprintf(`{"n":%d}`, i)), 200, fmt.Sprintf(`{"n":%d}`, i))
	}
	doomed := c.NewBrowser()
	doomed.API(t, "POST", `{"note":"sign me out"}`)
	oldDoomed := doomed.Jar.Header()

	c.Reload(t, CaddyOpts{
		Site:    moveSite,
		Session: moveSession("store memory {\n\tname prevtest-cookie\n}\nprevious_store cookie"),
		Global:  "servers {\n\t\tmetrics\n\t}",
	})

	// The small session: read, moved, its cookie replaced by the
	// memory store's; the next request presents that and nothing moves.
	r := small.API(t, "GET", "")
	wantObject(t, r, 200, `{"cart":[1,2,3]}`)
	if sessionCookie(t, r) == "" {
		t.Fatalf("moving a cookie-store session must re-issue its cookie:\n%s", r)
	}
	r = small.API(t, "GET", "")
	wantObject(t, r, 200, `{"cart":[1,2,3]}`)
	noSetCookie(t, r)
	wantObject(t, small.API(t, "POST", `{"note":"after"}`), 200, `{"cart":[1,2,3],"note":"after"}`)

	// The chunked one: every chunk but the first is expired.
	r = big.API(t, "GET", "")
	if got := jsonObject(t, r)["big"]; got != bigValue {
		t.Fatalf("the chunked session lost its value in the move: %.40q…", got)
	}
	if names := big.Jar.Names(); len(names) != 1 || names[0] != "__session" {
		t.Fatalf("after the move the browser should hold only __session; it holds %v\n%s", names, r)
	}
	wantObject(t, big.API(t, "POST", `{"big":null,"n":7}`), 200, `{"n":7}`)

	// Twenty concurrent requests with one old cookie: one session, moved
	// once, seen by all of them.
	for i, b := range racers {
		old := b.Jar.Header()
		refs := make([]string, 20)
		cookies := make([]string, 20)
		var wg sync.WaitGroup
		for j := range refs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ref, resp, err := refOf(c, old, uniquePath("race"))
				if err != nil {
					t.Error(err)
					return
				}
				refs[j] = ref
				for _, line := range resp.SetCookies() {
					if ck, err := http.ParseSetCookie(line); err == nil && ck.Name == "__session" && ck.MaxAge >= 0 {
						cookies[j] = ck.Value
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		for j := range refs {
			if refs[j] == "" || refs[j] != refs[0] {
				t.Fatalf("session %d: concurrent requests saw different sessions upstream: %q", i, refs)
			}
			if cookies[j] == "" {
				t.Fatalf("session %d: request %d with the cookie-store cookie got no store cookie", i, j)
			}
		}
		// Each re-issued cookie names the one session: a write through
		// one is read through another.
		w := c.Do(t, Req{Method: "POST", Path: "/__session", CT: "application/json",
			Cookie: "__session=" + cookies[3], Body: `{"note":"shared"}`})
		wantObject(t, w, 200, fmt.Sprintf(`{"n":%d,"note":"shared"}`, i))
		wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: "__session=" + cookies[17]}), 200,
			fmt.Sprintf(`{"n":%d,"note":"shared"}`, i))
	}
	if got := metricValue(t, c, `caddy_session_moved_total{id="__session",store="memory"}`); got != 2+float64(len(racers)) {
		t.Fatalf("caddy_session_moved_total = %v, want %d (each session moved once)", got, 2+len(racers))
	}

	// Destroyed: the old cookie-store cookie brings nothing back, not
	// even with requests racing the DELETE.
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.DoErr(Req{Path: uniquePath("doomed"), Cookie: oldDoomed}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if r, err := c.DoErr(Req{Method: "DELETE", Path: "/__session", Cookie: oldDoomed}); err != nil || r.Status != 204 {
			t.Errorf("DELETE: %v %v", r, err)
		}
	}()
	wg.Wait()
	for range 2 {
		r := c.Do(t, Req{Path: "/__session", Cookie: oldDoomed})
		wantObject(t, r, 200, `{}`)
		if sessionCookie(t, r) != "" {
			t.Fatalf("a destroyed session's cookie-store cookie got a session cookie:\n%s", r)
		}
		if ref, _, err := refOf(c, oldDoomed, uniquePath("after")); err != nil || ref != "" {
			t.Fatalf("a destroyed session's cookie-store cookie reached the upstream with session %q (%v)", ref, err)
		}
	}
}

// TestPreviousStoreServerMove: a live gateway moves from one server store
// to another by a reload with previous_store, while shoppers keep
// writing: nobody is signed out, no acknowledged write is lost, every
// session is moved once and leaves the previous store, and a session
// destroyed while requests race to move it stays destroyed.
func TestPreviousStoreServerMove(t *testing.T) {
	t.Parallel()
	t.Run("memory to redis", func(t *testing.T) {
		t.Parallel()
		srv := startRedis(t)
		testServerMove(t, "store memory {\n\tname prevtest-move\n}",
			fmt.Sprintf("store redis %s\nprevious_store memory {\n\tname prevtest-move\n}", srv.URL()),
			"redis", `caddy_session_memory_sessions{max_sessions="100000",pool="prevtest-move"}`)
	})
	t.Run("redis to postgres", func(t *testing.T) {
		t.Parallel()
		srv := startRedis(t)
		pg := testkit.StartPostgres(t)
		testServerMove(t, "store redis "+srv.URL(),
			fmt.Sprintf("store postgres %s\nprevious_store redis %s", pg.URL(), srv.URL()), "postgres", "")
		// Nothing is left in Redis: every session moved or destroyed.
		if keys, err := srv.Client().Keys(t.Context(), "caddy-session:*").Result(); err != nil || len(keys) != 0 {
			t.Fatalf("Redis still holds %d session keys after the move (%v)", len(keys), err)
		}
	})
}

// testServerMove runs the move from the store of before to the one of
// after; leftGauge, when set, is the metric sample that counts the
// sessions left in the previous store.
func testServerMove(t *testing.T, before, after, storeName, leftGauge string) {
	c := StartCaddy(t, CaddyOpts{Site: moveSite, Session: moveSession(before), Global: "servers {\n\t\tmetrics\n\t}"})

	// Sessions made before the move, to be raced after it.
	racers := make([]*Browser, 4)
	for i := range racers {
		racers[i] = c.NewBrowser()
		racers[i].API(t, "POST", fmt.Sprintf(`{"n":%d}`, i))
	}
	doomed := make([]string, 4)
	for i := range doomed {
		b := c.NewBrowser()
		b.API(t, "POST", `{"note":"doomed"}`)
		doomed[i] = b.Jar.Header()
	}

	// Shoppers write one after the other, across the reload.
	const shoppers = 6
	type shopper struct {
		b     *Browser
		acked int // the last n the API acknowledged
		ref   string
	}
	shops := make([]*shopper, shoppers)
	for i := range shops {
		s := &shopper{b: c.NewBrowser()}
		wantObject(t, s.b.API(t, "POST", `{"first":true,"n":0}`), 200, `{"first":true,"n":0}`)
		ref, _, err := refOf(c, s.b.Jar.Header(), uniquePath("ref"))
		if err != nil || ref == "" {
			t.Fatalf("shopper %d has no session upstream (%v)", i, err)
		}
		s.ref = ref
		shops[i] = s
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range shops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 1; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				jar := s.b.Jar.Header()
				// A reload closes idle keep-alive connections: a request
				// sent on one as it closes gets no answer, and is sent
				// again (the same write: applying it twice is the same).
				r, err := retryDo(c, Req{Method: "POST", Path: "/__session", CT: "application/json", Cookie: jar,
					Body: fmt.Sprintf(`{"n":%d}`, n)})
				if err != nil {
					t.Errorf("shopper %d: %v", i, err)
					return
				}
				if r.Status == 200 {
					s.acked = n
				} else if r.Status != 503 {
					t.Errorf("shopper %d, write %d: %s", i, n, r)
					return
				}
				if v := sessionCookie(t, r); v != "" {
					t.Errorf("shopper %d, write %d: got a new session cookie: signed out by the move?\n%s", i, n, r)
					return
				}
				ref, _, err := refOf(c, jar, uniquePath(fmt.Sprintf("s%d", i)))
				if err != nil {
					t.Errorf("shopper %d: %v", i, err)
					return
				}
				if ref != s.ref {
					t.Errorf("shopper %d: upstream saw session %q, want %q: signed out by the move", i, ref, s.ref)
					return
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	c.Reload(t, CaddyOpts{Site: moveSite, Session: moveSession(after), Global: "servers {\n\t\tmetrics\n\t}"})
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, s := range shops {
		r := c.Do(t, Req{Path: "/__session", Cookie: s.b.Jar.Header()})
		wantObject(t, r, 200, fmt.Sprintf(`{"first":true,"n":%d}`, s.acked))
	}

	// Concurrent first requests after the move: one move each.
	for i, b := range racers {
		old := b.Jar.Header()
		var wg sync.WaitGroup
		refs := make([]string, 10)
		for j := range refs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ref, _, err := refOf(c, old, uniquePath("race"))
				if err != nil {
					t.Error(err)
				}
				refs[j] = ref
			}()
		}
		wg.Wait()
		for j := range refs {
			if refs[j] == "" || refs[j] != refs[0] {
				t.Fatalf("racer %d: concurrent requests saw %q upstream, want one session", i, refs)
			}
		}
		wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: old}), 200, fmt.Sprintf(`{"n":%d}`, i))
	}
	moved := metricValue(t, c, fmt.Sprintf(`caddy_session_moved_total{id="__session",store=%q}`, storeName))
	if want := float64(shoppers + len(racers)); moved != want {
		t.Fatalf("caddy_session_moved_total = %v, want %v (each session once)", moved, want)
	}

	// A destroy racing the move: it stays destroyed.
	for i, old := range doomed {
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.DoErr(Req{Path: uniquePath("doomed"), Cookie: old}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r, err := c.DoErr(Req{Method: "DELETE", Path: "/__session", Cookie: old}); err != nil || r.Status != 204 {
				t.Errorf("DELETE: %v %v", r, err)
			}
		}()
		wg.Wait()
		wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: old}), 200, `{}`)
		if ref, _, err := refOf(c, old, uniquePath("after")); err != nil || ref != "" {
			t.Fatalf("doomed session %d came back upstream as %q (%v)", i, ref, err)
		}
	}
	if code, m := adminGet(t, c, "/session/__session/count"); code != 200 || m["sessions"] != float64(shoppers+len(racers)) {
		t.Fatalf("the store holds %v sessions (admin %d), want %d: a session duplicated or resurrected", m, code, shoppers+len(racers))
	}
	if leftGauge != "" {
		if left := metricValue(t, c, leftGauge); left != 0 {
			t.Fatalf("%s = %v after every session moved, want 0", leftGauge, left)
		}
	}
}

// TestPreviousStoreAttacks: previous_store cookie never moves another
// site's cookie-store session (its audience is part of its signature),
// and a store outage during a move loses nothing: the request follows
// on_store_error, and the session moves once the store answers again.
func TestPreviousStoreAttacks(t *testing.T) {
	t.Parallel()
	t.Run("another site's cookie", func(t *testing.T) {
		t.Parallel()
		c := StartCaddy(t, CaddyOpts{Site: moveSite, Session: moveSession("store cookie")})
		r := c.Do(t, Req{Method: "POST", Path: "/__session", CT: "application/json", Host: "a.test", Body: `{"cart":["a"]}`})
		jar := NewJar()
		jar.Update(t, r)
		c.Reload(t, CaddyOpts{Site: moveSite, Session: moveSession("store memory {\n\tname prevtest-sites\n}\nprevious_store cookie")})
		r = c.Do(t, Req{Path: "/__session", Host: "b.test", Cookie: jar.Header()})
		wantObject(t, r, 200, `{}`)
		if len(setCookieFor(r, "__session")) != 0 {
			t.Fatalf("site b.test answered site a.test's cookie with a cookie:\n%s", r)
		}
		if code, m := adminGet(t, c, "/session/__session/count"); code != 200 || m["sessions"] != 0.0 {
			t.Fatalf("another site's cookie made the store hold %v (admin %d), want nothing", m, code)
		}
		// The site that issued it moves it.
		wantObject(t, c.Do(t, Req{Path: "/__session", Host: "a.test", Cookie: jar.Header()}), 200, `{"cart":["a"]}`)
	})
	t.Run("store down during the move", func(t *testing.T) {
		t.Parallel()
		srv := startRedis(t)
		c := StartCaddy(t, CaddyOpts{Site: moveSite, Session: moveSession("store memory {\n\tname prevtest-outage\n}")})
		b := c.NewBrowser()
		b.API(t, "POST", `{"cart":["kept"]}`)
		c.Reload(t, CaddyOpts{Site: moveSite, Session: moveSession(
			fmt.Sprintf("store redis %s\nprevious_store memory {\n\tname prevtest-outage\n}", srv.URL()))})
		srv.Kill()
		if r := b.API(t, "GET", ""); r.Status != http.StatusServiceUnavailable || len(setCookieFor(r, "__session")) != 0 {
			t.Fatalf("with Redis down the move must answer 503 and leave the cookie:\n%s", r)
		}
		if ref, r, err := refOf(c, b.Jar.Header(), uniquePath("down")); err != nil || ref != "" || r.Status != 200 {
			t.Fatalf("fail_open with Redis down: ref %q, %v, %v", ref, r, err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		wantObject(t, b.API(t, "GET", ""), 200, `{"cart":["kept"]}`)
		if keys, err := srv.Client().Keys(t.Context(), "caddy-session:*").Result(); err != nil || len(keys) != 1 {
			t.Fatalf("after Redis came back it holds %v (%v), want the one moved session", keys, err)
		}
	})
}
