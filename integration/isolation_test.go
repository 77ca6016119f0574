package integration

// A session belongs to the site that issued it (S41): the cookie's MAC
// binds its audience (the host name, the cookie's domain, or a configured
// audience). These tests are the attacks of the isolation issue, kept: a
// cookie from one shop replayed to another shop on the same gateway, the
// same secret (generated, shared by both) and the same store.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// twoShops is a Caddyfile of two site blocks on one port, told apart by
// host name, each with its own session block but no secret (one secret is
// generated for the instance), the same cookie name and the same store.
// Shop A lets the browser write customerId; shop B trusts it from its
// upstream only.
func twoShops(store string) string {
	return `http://shop-a.example:{{PORT}} {
	session {
		client_writable customerId countryCode
		` + store + `
	}
	reverse_proxy {{UPSTREAM}}
}

http://shop-b.example:{{PORT}} {
	session {
		client_writable countryCode
		client_readable *
		` + store + `
	}
	reverse_proxy {{UPSTREAM}}
}
`
}

// isolationStores returns the store line of each store the isolation
// tests run on (Redis when redis-server is installed).
func isolationStores(t *testing.T) map[string]string {
	stores := map[string]string{
		"cookie": "store cookie",
		"memory": "store memory",
		"file":   "store file " + filepath.Join(t.TempDir(), "sessions"),
	}
	// Redis when it is installed (always under CI, where startRedis fails
	// the test if it is missing); its own tests say why they skip.
	if _, err := exec.LookPath("redis-server"); err == nil || os.Getenv("CI") != "" {
		stores["redis"] = "store redis " + startRedis(t).URL()
	}
	return stores
}

func TestIsolationAcrossSites(t *testing.T) {
	t.Parallel()
	for name, store := range isolationStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Sites: twoShops(store)})
			hostA := fmt.Sprintf("shop-a.example:%d", c.HTTPPort)
			hostB := fmt.Sprintf("shop-b.example:%d", c.HTTPPort)

			// The attacker's session on shop A, where customerId is
			// client-writable.
			r := c.Do(t, Req{Method: "POST", Path: "/__session", Host: hostA, CT: "application/json", Body: `{"customerId":"c_victim","countryCode":"DE"}`})
			if r.Status != http.StatusOK {
				t.Fatalf("setting the session on shop A:\n%s", r)
			}
			jar := NewJar()
			jar.Update(t, r)
			cookie := jar.Header()

			// Control: on shop A, the session is forwarded, whatever the
			// spelling of its host name.
			for _, host := range []string{hostA, strings.ToUpper(hostA), "shop-a.example."} {
				c.Do(t, Req{Path: "/page", Host: host, Cookie: cookie})
				wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Customerid": "c_victim", "X-Session-Countrycode": "DE"})
			}

			// The same cookie on shop B is no session: nothing forwarded,
			// nothing read, and no cookie touched.
			r = c.Do(t, Req{Path: "/page", Host: hostB, Cookie: cookie, Header: []string{"X-Test-Resp: X-Session-Probe: 1"}})
			if got := c.Up.Last(t).SessionHeaders(); len(got) != 0 {
				t.Fatalf("shop B's upstream received shop A's session: %v", got)
			}
			noSetCookie(t, r)
			wantObject(t, c.Do(t, Req{Path: "/__session", Host: hostB, Cookie: cookie}), http.StatusOK, `{}`)

			// A write on shop B with A's cookie starts a new session of B's
			// own, without A's keys.
			r = c.Do(t, Req{Method: "POST", Path: "/__session", Host: hostB, Cookie: cookie, CT: "application/json", Body: `{"countryCode":"FR"}`})
			wantObject(t, r, http.StatusOK, `{"countryCode":"FR"}`)
			jarB := NewJar()
			jarB.Update(t, r)
			if jarB.Get("__session") == "" || jarB.Get("__session") == jar.Get("__session") {
				t.Fatalf("shop B must issue its own session cookie:\n%s", r)
			}
			c.Do(t, Req{Path: "/page", Host: hostB, Cookie: jarB.Header()})
			wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Countrycode": "FR"})

			// And back: B's cookie is no session on A.
			c.Do(t, Req{Path: "/page", Host: hostA, Cookie: jarB.Header()})
			if got := c.Up.Last(t).SessionHeaders(); len(got) != 0 {
				t.Fatalf("shop A's upstream received shop B's session: %v", got)
			}
			// A's session is untouched by all this.
			c.Do(t, Req{Path: "/page", Host: hostA, Cookie: cookie})
			wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Customerid": "c_victim", "X-Session-Countrycode": "DE"})
		})
	}
}

// TestIsolationHostReplay: one site block that answers every host name; a
// cookie set under one Host and replayed under another is no session.
func TestIsolationHostReplay(t *testing.T) {
	t.Parallel()
	for name, store := range map[string]string{"cookie": "store cookie", "memory": "store memory"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable countryCode\n\t" + store})
			r := c.Do(t, Req{Method: "POST", Path: "/__session", Host: "one.example", CT: "application/json", Body: `{"countryCode":"DE"}`})
			jar := NewJar()
			jar.Update(t, r)
			c.Do(t, Req{Path: "/", Host: "one.example:8080", Cookie: jar.Header()})
			wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Countrycode": "DE"})
			for _, host := range []string{"two.example", "one.example.evil", "evil-one.example", "127.0.0.1", "[::1]"} {
				c.Do(t, Req{Path: "/", Host: host, Cookie: jar.Header()})
				if got := c.Up.Last(t).SessionHeaders(); len(got) != 0 {
					t.Errorf("a cookie of one.example replayed under Host %s is a session: %v", host, got)
				}
			}
		})
	}
}

// TestIsolationCookieDomain: a cookie with a domain is meant for every
// subdomain: its session is shared across them, and only them.
func TestIsolationCookieDomain(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable countryCode\n\tstore memory\n\tcookie {\n\t\tdomain shop.example\n\t}"})
	r := c.Do(t, Req{Method: "POST", Path: "/__session", Host: "www.shop.example", CT: "application/json", Body: `{"countryCode":"DE"}`})
	if !strings.Contains(strings.Join(r.SetCookies(), "\n"), "Domain=shop.example") {
		t.Fatalf("no Domain attribute:\n%s", r)
	}
	jar := NewJar()
	jar.Update(t, r)
	for _, host := range []string{"www.shop.example", "api.shop.example", "shop.example", "API.Shop.Example:8443"} {
		c.Do(t, Req{Path: "/", Host: host, Cookie: jar.Header()})
		wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Countrycode": "DE"})
	}
	// Another site on the same gateway gets no session from it (a browser
	// would not send it there; an attacker would).
	c.Do(t, Req{Path: "/", Host: "other.example", Cookie: jar.Header()})
	if got := c.Up.Last(t).SessionHeaders(); len(got) != 0 {
		t.Fatalf("the domain cookie is a session on other.example: %v", got)
	}
}

// TestIsolationAudienceShared: audience shares sessions across two host
// names on purpose; a site without it keeps its own.
func TestIsolationAudienceShared(t *testing.T) {
	t.Parallel()
	sites := `http://a.example:{{PORT}}, http://b.example:{{PORT}} {
	session {
		secret ` + secretA + `
		client_writable countryCode
		store memory
		audience shared-shop
	}
	reverse_proxy {{UPSTREAM}}
}

http://c.example:{{PORT}} {
	session {
		secret ` + secretA + `
		client_writable countryCode
		store memory
	}
	reverse_proxy {{UPSTREAM}}
}
`
	c := StartCaddy(t, CaddyOpts{Sites: sites})
	port := c.HTTPPort
	r := c.Do(t, Req{Method: "POST", Path: "/__session", Host: fmt.Sprintf("a.example:%d", port), CT: "application/json", Body: `{"countryCode":"DE"}`})
	jar := NewJar()
	jar.Update(t, r)
	c.Do(t, Req{Path: "/", Host: fmt.Sprintf("b.example:%d", port), Cookie: jar.Header()})
	wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Countrycode": "DE"})
	c.Do(t, Req{Path: "/", Host: fmt.Sprintf("c.example:%d", port), Cookie: jar.Header()})
	if got := c.Up.Last(t).SessionHeaders(); len(got) != 0 {
		t.Fatalf("a site outside the shared audience got the session: %v", got)
	}
}

// TestIsolationMigrateFrom: with migrate_from hydrogen_v1 on the session
// cookie's own name, another site's cookie is neither a session nor
// imported as a Hydrogen cookie.
func TestIsolationMigrateFrom(t *testing.T) {
	t.Parallel()
	sites := strings.ReplaceAll(twoShops("store memory"), "client_readable *", "client_readable *\n\t\tmigrate_from hydrogen_v1")
	c := StartCaddy(t, CaddyOpts{Sites: sites})
	r := c.Do(t, Req{Method: "POST", Path: "/__session", Host: fmt.Sprintf("shop-a.example:%d", c.HTTPPort), CT: "application/json", Body: `{"countryCode":"DE"}`})
	jar := NewJar()
	jar.Update(t, r)
	r = c.Do(t, Req{Path: "/", Host: fmt.Sprintf("shop-b.example:%d", c.HTTPPort), Cookie: jar.Header()})
	if got := c.Up.Last(t).SessionHeaders(); len(got) != 0 {
		t.Fatalf("shop B imported or accepted shop A's cookie: %v", got)
	}
	noSetCookie(t, r)
}

// adminPost sends a JSON body to c's admin API and decodes the answer.
func adminPost(t testing.TB, c *Caddy, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest("POST", fmt.Sprintf("http://localhost:%d%s", c.AdminPort, path), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

// TestLogoutEverywhereByJSONValue (S43): sessions set by a PHP upstream
// (json_encode writes "\/") and with \u escapes are found by the plain
// value; the index is kept per audience.
func TestLogoutEverywhereByJSONValue(t *testing.T) {
	t.Parallel()
	stores := isolationStores(t)
	delete(stores, "cookie")
	for name, store := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sites := strings.ReplaceAll(twoShops(store), "client_readable *", "client_readable *\n\t\tadmin_id shop-b\n\t\tindex_key customerId")
			sites = strings.Replace(sites, "client_writable customerId countryCode", "client_writable customerId countryCode\n\t\tadmin_id shop-a\n\t\tindex_key customerId", 1)
			c := StartCaddy(t, CaddyOpts{Sites: sites})
			hostA := fmt.Sprintf("shop-a.example:%d", c.HTTPPort)
			hostB := fmt.Sprintf("shop-b.example:%d", c.HTTPPort)
			login := func(host, value string) *Jar {
				r := c.Do(t, Req{Path: "/login", Host: host, Header: []string{"X-Test-Resp: X-Session-Set: {\"customerId\":" + value + "}"}})
				jar := NewJar()
				jar.Update(t, r)
				if jar.Get("__session") == "" {
					t.Fatalf("no session after login:\n%s", r)
				}
				return jar
			}
			alive := func(host string, jar *Jar) bool {
				c.Do(t, Req{Path: "/page", Host: host, Cookie: jar.Header()})
				return len(c.Up.Last(t).SessionHeaders()) > 0
			}
			php := login(hostA, `"gid:\/\/shopify\/Customer\/7001"`)
			plain := login(hostA, `"gid://shopify/Customer/7001"`)
			escaped := login(hostA, `"gid:\u002f\u002fshopify/Customer/7001"`)
			umlaut := login(hostA, `"M\u00fcller"`)
			other := login(hostA, `"gid://shopify/Customer/7002"`)
			onB := login(hostB, `"gid://shopify/Customer/7001"`)

			// One audience at a time: shop B's session only.
			code, m := adminPost(t, c, "/session/shop-b/logout-everywhere", `{"value":"gid://shopify/Customer/7001","audience":"shop-b.example"}`)
			if code != 200 || m["destroyed"] != 1.0 {
				t.Fatalf("logout-everywhere on shop B: %d %v", code, m)
			}
			if alive(hostB, onB) || !alive(hostA, php) {
				t.Fatal("logout-everywhere for shop-b.example must end B's session and only it")
			}
			// Every encoding of the value on shop A.
			code, m = adminPost(t, c, "/session/shop-a/logout-everywhere", `{"value":"gid:\/\/shopify\/Customer\/7001"}`)
			if code != 200 || m["destroyed"] != 3.0 {
				t.Fatalf("logout-everywhere on shop A: %d %v", code, m)
			}
			if aud, _ := m["audiences"].(map[string]any); aud["shop-a.example"] != 3.0 {
				t.Fatalf("the answer counts per audience: %v", m)
			}
			for what, jar := range map[string]*Jar{"PHP-escaped": php, "plain": plain, "\\u-escaped": escaped} {
				if alive(hostA, jar) {
					t.Errorf("the %s session survived logout-everywhere", what)
				}
			}
			if !alive(hostA, other) || !alive(hostA, umlaut) {
				t.Fatal("logout-everywhere ended a session of another customer")
			}
			code, m = adminPost(t, c, "/session/shop-a/logout-everywhere", `{"value":"Müller"}`)
			if code != 200 || m["destroyed"] != 1.0 || alive(hostA, umlaut) {
				t.Fatalf("logout-everywhere of \"Müller\" must find \"M\\u00fcller\": %d %v", code, m)
			}
		})
	}
}
