package ops

import (
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const secret = "ops-secret-0123456789abcdefghijklmnopqrstuvwxyz"

// sessionSite is a site with a session handler on store, indexed by
// customerId, in front of the test's upstream.
func sessionSite(store string) string {
	return fmt.Sprintf(`session {
	secret %s
	store %s
	index_key customerId
	client_writable cart
}
reverse_proxy {{UPSTREAM}}`, secret, store)
}

func TestAdminMemory(t *testing.T) {
	t.Parallel()
	adminScenario(t, "memory")
}

func TestAdminFile(t *testing.T) {
	t.Parallel()
	adminScenario(t, "file "+filepath.Join(t.TempDir(), "sessions"))
}

func TestAdminRedis(t *testing.T) {
	t.Parallel()
	adminScenario(t, "redis redis://"+startRedis(t)+"/0")
}

// adminScenario drives every admin endpoint through a real Caddy: 50
// sessions of one customer, 20 of another and 5 anonymous ones; count,
// inspect, destroy one by its cookie, then log the first customer out
// everywhere.
func adminScenario(t *testing.T, store string) {
	c := StartCaddy(t, "log {\n\t\tlevel DEBUG\n\t}", sessionSite(store))

	// Sessions, created in parallel as real traffic would.
	var (
		mu                 sync.Mutex
		custA, custB, anon []*Browser
		wg                 sync.WaitGroup
	)
	sem := make(chan struct{}, 8)
	for i := range 75 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			b := c.NewBrowser()
			switch {
			case i < 50:
				b.Login(t, "c_A")
			case i < 70:
				b.Login(t, "c_B")
			default:
				if r := b.Do(t, "POST", "/__session", `{"cart":[1,2]}`); r.Status != 200 {
					t.Errorf("POST /__session: %d %s", r.Status, r.Body)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case i < 50:
				custA = append(custA, b)
			case i < 70:
				custB = append(custB, b)
			default:
				anon = append(anon, b)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if who := custA[0].Who(t); who != "c_A" {
		t.Fatalf("a customer A browser is %q upstream", who)
	}

	if r := anon[1].Do(t, "PATCH", "/__session", `{"cart":[3]}`); r.Status != 200 {
		t.Fatalf("PATCH /__session: %d %s", r.Status, r.Body)
	}

	// The handler is listed, and counts its sessions.
	r := do(t, "GET", c.Admin+"/session/", "")
	if r.Status != 200 || !strings.Contains(r.Body, `"handler": "__session"`) || !strings.Contains(r.Body, `"index_key": "customerId"`) {
		t.Fatalf("GET /session/: %d %s", r.Status, r.Body)
	}
	wantCount(t, c, 75)

	// Inspect: the data, the session's short hash, never the cookie.
	info := c.adminJSON(t, "POST", "/session/__session/inspect", fmt.Sprintf(`{"cookie": %q, "audience": "127.0.0.1"}`, custB[0].Cookie), 200)
	values, _ := info["values"].(map[string]any)
	if values["customerId"] != "c_B" {
		t.Fatalf("inspect: values %v, want customerId c_B", info)
	}
	if ref, _ := info["session"].(string); !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(ref) {
		t.Fatalf("inspect: session %q, want a 16-digit hash", ref)
	}
	if _, ok := info["created"]; !ok {
		t.Fatalf("inspect: no created time in %v", info)
	}
	// The cookie as a browser's tools copy it, name= in front, works too.
	info = c.adminJSON(t, "POST", "/session/__session/inspect", fmt.Sprintf(`{"cookie": "__session=%s", "audience": "127.0.0.1"}`, anon[0].Cookie), 200)
	if values, _ := info["values"].(map[string]any); values["cart"] == nil {
		t.Fatalf("inspect of an anonymous session: %v", info)
	}

	// Destroy one session by its cookie.
	victim := anon[0]
	if n := number(t, c.adminJSON(t, "POST", "/session/__session/destroy", fmt.Sprintf(`{"cookie": %q, "audience": "127.0.0.1"}`, victim.Cookie), 200), "destroyed"); n != 1 {
		t.Fatalf("destroy: %d, want 1", n)
	}
	if r := victim.Do(t, "GET", "/__session", ""); r.Body != "{}\n" {
		t.Fatalf("the destroyed session still reads %s", r.Body)
	}
	c.adminJSON(t, "POST", "/session/__session/inspect", fmt.Sprintf(`{"cookie": %q, "audience": "127.0.0.1"}`, victim.Cookie), 404)
	if n := number(t, c.adminJSON(t, "POST", "/session/__session/destroy", fmt.Sprintf(`{"cookie": %q, "audience": "127.0.0.1"}`, victim.Cookie), 200), "destroyed"); n != 0 {
		t.Fatalf("destroy again: %d, want 0", n)
	}

	// Log customer A out everywhere: all 50 of A's sessions go, none of B's.
	res := c.adminJSON(t, "POST", "/session/__session/logout-everywhere", `{"value": "c_A"}`, 200)
	if n := number(t, res, "destroyed"); n != 50 {
		t.Fatalf("logout-everywhere destroyed %d, want 50", n)
	}
	for i, b := range custA {
		if who := b.Who(t); who != "anonymous" {
			t.Fatalf("customer A browser %d is still %q upstream", i, who)
		}
	}
	for i, b := range custB {
		if who := b.Who(t); who != "c_B" {
			t.Fatalf("customer B browser %d is %q upstream", i, who)
		}
	}
	wantCount(t, c, 24) // 20 of B, 4 anonymous
	if n := number(t, c.adminJSON(t, "POST", "/session/__session/logout-everywhere", `{"key": "customerId", "value": "c_A"}`, 200), "destroyed"); n != 0 {
		t.Fatalf("logout-everywhere again destroyed %d, want 0", n)
	}
	// A signs in again afterwards: a fresh session, found by the index.
	again := c.NewBrowser()
	again.Login(t, "c_A")
	if n := number(t, c.adminJSON(t, "POST", "/session/__session/logout-everywhere", `{"value": "c_A"}`, 200), "destroyed"); n != 1 {
		t.Fatalf("logout-everywhere after a new login destroyed %d, want 1", n)
	}

	// Mistakes answer with what to do.
	for _, q := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/session/nope/count", "", 404},
		{"POST", "/session/__session/count", "", 405},
		{"GET", "/session/__session/inspect", "", 405},
		{"POST", "/session/__session/inspect", `{"cookie": "forged", "audience": "127.0.0.1"}`, 400},
		{"POST", "/session/__session/inspect", `{"cookie": ""}`, 400},
		{"POST", "/session/__session/inspect", `not json`, 400},
		{"POST", "/session/__session/logout-everywhere", `{"key": "cart", "value": 1}`, 400},
		{"POST", "/session/__session/logout-everywhere", `{"value": null}`, 400},
		{"POST", "/session/__session/logout-everywhere", `{}`, 400},
		{"GET", "/session/__session/nope", "", 404},
	} {
		r := do(t, q.method, c.Admin+q.path, q.body)
		if r.Status != q.status || !strings.Contains(r.Body, `"error"`) {
			t.Errorf("%s %s %s: %d %s, want %d with an error", q.method, q.path, q.body, r.Status, r.Body, q.status)
		}
	}

	// Protected as Caddy's admin API is: a request from a web page of
	// another origin is refused before it reaches the module.
	r = do(t, "POST", c.Admin+"/session/__session/logout-everywhere", `{"value": "c_B"}`, "Origin: http://evil.example")
	if r.Status != http.StatusForbidden {
		t.Fatalf("cross-origin admin request: %d %s, want 403", r.Status, r.Body)
	}
	if who := custB[0].Who(t); who != "c_B" {
		t.Fatalf("the cross-origin request logged B out")
	}

	// Nothing secret in the module's log lines (at debug level): no cookie
	// value, no customer ID; sessions appear as their short hash. (Caddy's
	// own reverse_proxy debug lines show upstream headers, X-Session-Set
	// included: that is Caddy's choice, outside this module.)
	logs := moduleLogs(c.Logs())
	for _, b := range append(append(custA[:3:3], custB[:3]...), anon...) {
		if b.Cookie != "" && strings.Contains(logs, b.Cookie) {
			t.Fatalf("a cookie value is in the log")
		}
	}
	if strings.Contains(logs, "c_A") || strings.Contains(logs, "c_B") {
		t.Fatalf("a customer ID is in the log")
	}
	for _, re := range []string{
		`"session created".*"session":"[0-9a-f]{16}"`,
		`"session rotated".*"session":"[0-9a-f]{16}"`,
		`"session loaded".*"session":"[0-9a-f]{16}"`,
		`"session written".*"session":"[0-9a-f]{16}"`,
		`"session destroyed through the admin API".*"session":"[0-9a-f]{16}"`,
		`"sessions destroyed through the admin API \(log out everywhere\)".*"destroyed":50`,
	} {
		if !regexp.MustCompile(re).MatchString(logs) {
			t.Fatalf("no log line matching %s", re)
		}
	}
}

// wantCount waits for the admin API's count to be n. The Redis store counts
// by SCAN, and a session that Rotate moved (at each login) leaves a
// tombstone under its old key for a few seconds, which SCAN counts: the
// count is approximate until they expire.
func wantCount(t *testing.T, c *Caddy, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := number(t, c.adminJSON(t, "GET", "/session/__session/count", "", 200), "sessions")
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("count = %d, want %d", got, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A cookie-store handler has nothing to count or revoke on the server, and
// index_key is refused at load.
func TestAdminCookieStore(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, "", fmt.Sprintf("session {\n\tsecret %s\n\tclient_writable cart\n\tadmin_id shop\n}\nreverse_proxy {{UPSTREAM}}", secret))
	b := c.NewBrowser()
	if r := b.Do(t, "POST", "/__session", `{"cart":[7]}`); r.Status != 200 {
		t.Fatalf("POST: %d %s", r.Status, r.Body)
	}
	c.adminJSON(t, "GET", "/session/shop/count", "", 501)
	info := c.adminJSON(t, "POST", "/session/shop/inspect", fmt.Sprintf(`{"cookie": %q, "audience": "127.0.0.1"}`, b.Cookie), 200)
	if values, _ := info["values"].(map[string]any); values["cart"] == nil {
		t.Fatalf("inspect of a cookie-store session: %v", info)
	}
	c.adminJSON(t, "POST", "/session/shop/destroy", fmt.Sprintf(`{"cookie": %q, "audience": "127.0.0.1"}`, b.Cookie), 501)
	c.adminJSON(t, "POST", "/session/shop/logout-everywhere", `{"value": 1}`, 501)

	out, err := c.Run(t, "validate", "--config", writeFile(t, c.caddyfile("", fmt.Sprintf("session {\n\tsecret %s\n\tindex_key customerId\n}\nrespond ok", secret))), "--adapter", "caddyfile")
	if err == nil || !strings.Contains(err.Error(), "index_key needs a server store") {
		t.Fatalf("caddy validate of index_key on the cookie store: %v\n%s", err, out)
	}
}

// The index survives `caddy reload` with the memory pool, and the admin API
// then acts through the new config's handler only.
func TestAdminAcrossReload(t *testing.T) {
	t.Parallel()
	site := sessionSite("memory {\n\t\tname reloaded\n\t}")
	c := StartCaddy(t, "", site)
	var bs []*Browser
	for range 3 {
		b := c.NewBrowser()
		b.Login(t, "c_R")
		bs = append(bs, b)
	}
	c.Reload(t, "", strings.Replace(site, "client_writable cart", "client_writable cart\n\tidle_timeout 1h", 1))
	r := do(t, "GET", c.Admin+"/session/", "")
	if !strings.Contains(r.Body, `"handlers": 1`) {
		t.Fatalf("after the reload, GET /session/: %s (want the new handler only)", r.Body)
	}
	late := c.NewBrowser()
	late.Login(t, "c_R")
	if n := number(t, c.adminJSON(t, "POST", "/session/__session/logout-everywhere", `{"value": "c_R"}`, 200), "destroyed"); n != 4 {
		t.Fatalf("logout-everywhere after a reload destroyed %d, want 4", n)
	}
	for _, b := range append(bs, late) {
		if who := b.Who(t); who != "anonymous" {
			t.Fatalf("a browser is still %q", who)
		}
	}
}
