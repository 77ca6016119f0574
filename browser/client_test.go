package browser

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/caddy-session/caddy-session/internal/testkit"
)

// The browser client, /__session/client.js, in Chromium against a Caddy of
// its own: one gateway per store (memory, file, redis), one with another
// api_path and one with client_script off. Every gateway answers other
// paths with an empty HTML page, the page the tests run the client in.

// clientGateways are the base URLs of the client tests' Caddy.
type clientGateways struct {
	cookie, memory, file, redis string
	otherPath                   string // api_path /x/session
	noScript                    string // client_script off
}

// clientPage is what every gateway answers outside its API path.
const clientPage = `<!doctype html><meta charset="utf-8"><title>client test</title><p>client test`

// startClientCaddy starts a redis-server and a Caddy with the client
// tests' gateways; both stop when the test ends.
func startClientCaddy(t *testing.T) clientGateways {
	t.Helper()
	redis := testkit.StartRedis(t)
	c := testkit.NewCaddy(t, caddyBin)
	c.StartTimeout = startTimeout
	port := func() int { return testkit.FreePort(t) }
	g := clientGateways{}
	var sites strings.Builder
	site := func(base *string, session string) {
		p := port()
		*base = fmt.Sprintf("http://127.0.0.1:%d", p)
		fmt.Fprintf(&sites, `
:%d {
	session {
		client_writable cart note
%s
	}
	header Content-Type "text/html; charset=utf-8"
	respond %q 200
}
`, p, session, clientPage)
	}
	site(&g.cookie, "")
	site(&g.memory, "\t\tstore memory")
	site(&g.file, "\t\tstore file "+quote(filepath.Join(c.Dir, "sessions")))
	site(&g.redis, "\t\tstore redis "+redis.URL())
	site(&g.otherPath, "\t\tstore memory\n\t\tapi_path /x/session")
	site(&g.noScript, "\t\tstore memory\n\t\tclient_script off")
	src := fmt.Sprintf(`{
	auto_https off
	admin localhost:%d
	storage file_system %s
	default_bind 127.0.0.1
	persist_config off
	grace_period 1s
}
%s`, c.AdminPort, quote(filepath.Join(c.Dir, "storage")), sites.String())
	if err := c.WriteConfig(src); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	return g
}

// clientTab opens base's page in a new visitor's tab.
func clientTab(t *testing.T, d *demo, base, name string) *tab {
	t.Helper()
	tb := d.visitor(t, name)
	tb.open(base)
	return tb
}

// open navigates to base's test page.
func (tb *tab) open(base string) {
	tb.t.Helper()
	tb.do("navigate to "+base, chromedp.Navigate(base+"/"))
	tb.waitFor("the test page", `document.readyState === 'complete' && document.title === 'client test'`)
}

// withClient is JavaScript that imports the client served at api (an API
// path) as c, runs body (async, its value returned), and turns a rejection
// into {error, name, status} so that Go sees what the page saw.
func withClient(api, body string) string {
	return `(async () => {
		const c = await import(new URL('` + api + `/client.js', location.href).href);
		try {
			` + body + `
		} catch (err) {
			return {error: String(err && err.message), name: err && err.name, status: err && err.status};
		}
	})()`
}

// thrown is what withClient returns for a rejection.
type thrown struct {
	Error  string `json:"error"`
	Name   string `json:"name"`
	Status int    `json:"status"`
}

// addMany is JavaScript that defines window.__addMany(product, n, how): n
// additions of one product to the cart, one after the other, each a
// read-modify-write of the whole cart, with update() (how = 'update') or
// with get() then set() (how = 'set'). It resolves to how many update()
// calls gave up, with the first error.
const addMany = `window.__addMany = async (product, n, how) => {
	const c = await import(new URL('/__session/client.js', location.href).href);
	const add = (s) => ({cart: {...s.cart, [product]: ((s.cart || {})[product] || 0) + 1}});
	let gaveUp = 0, first = '';
	for (let i = 0; i < n; i++) {
		try {
			if (how === 'update') await c.update(add);
			else await c.set(add(await c.get()));
		} catch (err) {
			gaveUp++;
			first = first || err.message;
		}
	}
	return {gaveUp, first};
}; true`

// raceResult is what one tab's additions resolved to.
type raceResult struct {
	GaveUp int    `json:"gaveUp"`
	First  string `json:"first"`
}

// race has two tabs of one visitor (one cookie jar) add n mugs and n totes
// at the same moment, with how ("update" or "set"), and returns the cart.
// With seed, the session exists before the race.
func race(t *testing.T, d *demo, base, how string, n int, seed bool) map[string]any {
	t.Helper()
	a := clientTab(t, d, base, "tab A")
	b := a.another("tab B")
	b.open(base)
	if seed {
		got := eval[map[string]any](a, withClient("/__session", `return await c.set({cart: {}});`))
		if asJSON(got) != `{"cart":{}}` {
			t.Fatalf("seeding the session answered %s", asJSON(got))
		}
	}
	for _, tb := range []*tab{a, b} {
		eval[bool](tb, addMany)
	}
	// Tab B starts on tab A's message: both loops start together.
	eval[bool](b, fmt.Sprintf(`window.__race = new Promise((resolve) => {
		const bc = new BroadcastChannel('race');
		bc.onmessage = () => { bc.close(); resolve(window.__addMany('tote', %d, %q)); };
	}); true`, n, how))
	eval[bool](a, fmt.Sprintf(`window.__race = (new BroadcastChannel('race').postMessage('go'), window.__addMany('mug', %d, %q)); true`, n, how))
	ra := eval[raceResult](a, `window.__race`)
	rb := eval[raceResult](b, `window.__race`)
	for name, r := range map[string]raceResult{"tab A": ra, "tab B": rb} {
		if r.GaveUp != 0 {
			t.Errorf("%s: %d of %d %s() calls failed; the first: %s", name, r.GaveUp, n, how, r.First)
		}
	}
	cart, _ := a.apiSession()["cart"].(map[string]any)
	return cart
}

// count is a cart line's quantity.
func count(cart map[string]any, product string) int {
	q, _ := cart[product].(float64)
	return int(q)
}

// stores are the client tests' gateways, one per store.
func (g clientGateways) stores() []struct{ name, base string } {
	return []struct{ name, base string }{{"cookie", g.cookie}, {"memory", g.memory}, {"file", g.file}, {"redis", g.redis}}
}

// Two tabs each add 50 items through update() at the same moment, from a
// visitor with no session yet: the cart ends with all 100, on every store.
// The tabs' update() calls take turns (Web Locks), so even the first two
// writes, which create the session, do not each create one, and on the
// cookie store no tab writes from a cookie older than the other's write.
func TestClientUpdateFromTwoTabs(t *testing.T) {
	d := setup(t)
	g := startClientCaddy(t)
	for _, st := range g.stores() {
		t.Run(st.name, func(t *testing.T) {
			const n = 50
			cart := race(t, d, st.base, "update", n, false)
			if count(cart, "mug") != n || count(cart, "tote") != n {
				t.Errorf("after %d update() calls from each tab the cart is %s; want %d mugs and %d totes", n, asJSON(cart), n, n)
			}
		})
	}
}

// update() against a writer that does not take turns with it (a plain
// fetch in fn, as another device or the upstream would write): its write
// is refused with 412, fn runs again on the session as it is now, and
// nothing is lost; a session that keeps changing makes it give up after 5
// tries, having written nothing.
func TestClientUpdateRetries(t *testing.T) {
	d := setup(t)
	g := startClientCaddy(t)
	for _, st := range g.stores() {
		t.Run(st.name, func(t *testing.T) {
			checkVersions(t, st.base)
			updateRetries(t, d, st.base)
		})
	}
}

// updateRetries is TestClientUpdateRetries on one gateway.
func updateRetries(t *testing.T, d *demo, base string) {
	t.Helper()
	tb := clientTab(t, d, base, "visitor")
	eval[bool](tb, `window.__sneak = (note) => fetch('/__session', {method: 'POST',
		headers: {'Content-Type': 'application/json'}, body: JSON.stringify({note})}); true`)
	type outcome struct {
		Calls  []map[string]any `json:"calls"` // what fn was called with
		Result map[string]any   `json:"result"`
		thrown
	}
	run := func(sneakEvery bool, note string) outcome {
		t.Helper()
		return eval[outcome](tb, withClient("/__session", fmt.Sprintf(`
			const calls = [];
			try {
				const result = await c.update(async (s) => {
					calls.push(s);
					if (%t || calls.length === 1) await window.__sneak(%q + calls.length);
					return {cart: {...s.cart, mug: ((s.cart || {}).mug || 0) + 1}};
				});
				return {calls, result};
			} catch (err) {
				return {calls, error: err.message, name: err.name, status: err.status};
			}`, sneakEvery, note)))
	}

	// No session yet: update() writes with If-None-Match: *, and the
	// session fn's fetch created meanwhile makes that a 412.
	first := run(false, "created meanwhile ")
	if first.Error != "" || len(first.Calls) != 2 || asJSON(first.Result) != `{"cart":{"mug":1},"note":"created meanwhile 1"}` {
		t.Fatalf("update() racing a write that created the session: fn ran %d times (%s), result %s, error %q; want 2 runs and {\"cart\":{\"mug\":1},\"note\":\"created meanwhile 1\"}",
			len(first.Calls), asJSON(first.Calls), asJSON(first.Result), first.Error)
	}
	if asJSON(first.Calls[1]) != `{"note":"created meanwhile 1"}` {
		t.Errorf("on its second run fn got %s; want the session as the other write left it", asJSON(first.Calls[1]))
	}

	// A session: If-Match, and the same.
	second := run(false, "changed meanwhile ")
	if second.Error != "" || len(second.Calls) != 2 || asJSON(second.Result) != `{"cart":{"mug":2},"note":"changed meanwhile 1"}` {
		t.Fatalf("update() racing another write: fn ran %d times (%s), result %s, error %q; want 2 runs and {\"cart\":{\"mug\":2},\"note\":\"changed meanwhile 1\"}",
			len(second.Calls), asJSON(second.Calls), asJSON(second.Result), second.Error)
	}

	// Always another write first: 5 tries, then a SessionError; none of
	// fn's patches was written.
	gaveUp := run(true, "again ")
	if len(gaveUp.Calls) != 5 || gaveUp.Name != "SessionError" || gaveUp.Status != http.StatusPreconditionFailed ||
		!strings.Contains(gaveUp.Error, "gave up after 5 tries") {
		t.Errorf("update() against a session that always changed: fn ran %d times, rejected with %s %d %q; want 5 runs and a SessionError 412 saying it gave up after 5 tries",
			len(gaveUp.Calls), gaveUp.Name, gaveUp.Status, gaveUp.Error)
	}
	if s := asJSON(tb.apiSession()); s != `{"cart":{"mug":2},"note":"again 5"}` {
		t.Errorf("after update() gave up the session is %s; want the other writes only: {\"cart\":{\"mug\":2},\"note\":\"again 5\"}", s)
	}
}

// checkVersions fails the test when the gateway does not give a session
// an ETag: update() then cannot tell that another request wrote first.
func checkVersions(t *testing.T, base string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/__session", strings.NewReader(`{"note":"v"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == "" {
		t.Fatalf("POST /__session answered %s with ETag %q: update() needs the session's version (ETag, If-Match; DESIGN.md, Versions)",
			resp.Status, resp.Header.Get("ETag"))
	}
}

// The same race with get() then set(), a read-modify-write without
// If-Match: the tabs overwrite each other's carts and items are lost. This
// is why update() exists.
func TestClientSetFromTwoTabsLosesItems(t *testing.T) {
	d := setup(t)
	g := startClientCaddy(t)
	const n = 50
	// The session exists before the race: the items are lost to the
	// read-modify-writes, not to two first writes creating two sessions.
	cart := race(t, d, g.memory, "set", n, true)
	got := count(cart, "mug") + count(cart, "tote")
	if got >= 2*n {
		t.Fatalf("after %d get()+set() additions from each tab the cart holds %d items (%s); two unguarded read-modify-writes at once should have lost some",
			n, got, asJSON(cart))
	}
	t.Logf("get() then set() from two tabs: %d of %d items lost (%s); update() loses none", 2*n-got, 2*n, asJSON(cart))
}

// subscribe() in one tab hears of the changes another tab makes through
// the client (set, update, destroy), and not of its own.
func TestClientSubscribe(t *testing.T) {
	d := setup(t)
	g := startClientCaddy(t)
	a := clientTab(t, d, g.memory, "tab A")
	b := a.another("tab B")
	b.open(g.memory)

	eval[bool](a, withClient("/__session", `
		window.__seen = [];
		window.__late = [];
		window.__stop = c.subscribe((s) => window.__seen.push(s));
		await c.set({note: 'mine'}); // this tab's own write: not announced to itself
		return true;`))
	waitSeen := func(n int, what string) []map[string]any {
		t.Helper()
		a.waitFor(what, fmt.Sprintf(`window.__seen.length >= %d`, n))
		return eval[[]map[string]any](a, `window.__seen`)
	}

	eval[map[string]any](b, withClient("/__session", `return await c.set({note: 'from B'});`))
	if seen := waitSeen(1, "tab B's set()"); asJSON(seen) != `[{"note":"from B"}]` {
		t.Fatalf("tab A's subscriber saw %s; want only tab B's write, [{\"note\":\"from B\"}]", asJSON(seen))
	}
	eval[map[string]any](b, withClient("/__session", `return await c.update((s) => ({cart: {mug: 1}, note: s.note + '!'}));`))
	if seen := waitSeen(2, "tab B's update()"); asJSON(seen[1]) != `{"cart":{"mug":1},"note":"from B!"}` {
		t.Fatalf("after tab B's update() tab A's subscriber saw %s", asJSON(seen))
	}
	eval[bool](b, withClient("/__session", `await c.destroy(); return true;`))
	if seen := waitSeen(3, "tab B's destroy()"); seen[2] != nil {
		t.Fatalf("after tab B's destroy() tab A's subscriber saw %s; want null", asJSON(seen[2]))
	}

	// Unsubscribed: a second subscriber hears the next change, the first
	// (called from the same message) does not.
	eval[bool](a, withClient("/__session", `window.__stop(); c.subscribe((s) => window.__late.push(s)); return true;`))
	eval[map[string]any](b, withClient("/__session", `return await c.set({note: 'later'});`))
	a.waitFor("the second subscriber", `window.__late.length >= 1`)
	if seen := eval[[]map[string]any](a, `window.__seen`); len(seen) != 3 {
		t.Errorf("an unsubscribed function was still called: it saw %s", asJSON(seen))
	}
}

// A refused write rejects with the API's own error text and status.
func TestClientErrors(t *testing.T) {
	d := setup(t)
	g := startClientCaddy(t)
	tb := clientTab(t, d, g.memory, "visitor")

	// What the API itself answers to such a write.
	want := eval[thrown](tb, `fetch('/__session', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{"customerId": "c_1"}'})
		.then(async (r) => ({error: (await r.json()).error, status: r.status}))`)
	if want.Status != http.StatusForbidden || !strings.Contains(want.Error, "client_writable") {
		t.Fatalf("the API answered a write of customerId with %d %q; want 403 naming client_writable", want.Status, want.Error)
	}
	for _, call := range []string{
		`await c.set({customerId: 'c_1'})`,
		`await c.update(() => ({customerId: 'c_1'}))`,
	} {
		got := eval[thrown](tb, withClient("/__session", call+`; return {};`))
		if got.Error != want.Error || got.Status != want.Status || got.Name != "SessionError" {
			t.Errorf("%s rejected with %s %d %q; want a SessionError %d %q", call, got.Name, got.Status, got.Error, want.Status, want.Error)
		}
	}
	got := eval[thrown](tb, withClient("/__session", `await c.set({'1bad': true}); return {};`))
	if got.Status != http.StatusBadRequest || !strings.Contains(got.Error, "1bad") {
		t.Errorf("set() of a bad key rejected with %d %q; want 400 naming the key", got.Status, got.Error)
	}
	if s := tb.apiSession(); len(s) != 0 {
		t.Errorf("after refused writes the session is %s; want {}", asJSON(s))
	}
}

// The client works under another api_path: it talks to the path it was
// served under.
func TestClientOtherAPIPath(t *testing.T) {
	d := setup(t)
	g := startClientCaddy(t)
	tb := clientTab(t, d, g.otherPath, "visitor")
	got := eval[map[string]any](tb, withClient("/x/session", `
		const written = await c.set({note: 'elsewhere'});
		const read = await c.get();
		const raw = await (await fetch('/x/session')).json();
		return {written, read, raw};`))
	want := `{"raw":{"note":"elsewhere"},"read":{"note":"elsewhere"},"written":{"note":"elsewhere"}}`
	if asJSON(got) != want {
		t.Errorf("the client of /x/session/client.js wrote and read %s; want %s", asJSON(got), want)
	}
}

// client.js is served by the gateway with a strong ETag of its content,
// cacheable, revalidated with a 304; client_script off makes it a 404.
func TestClientScriptServed(t *testing.T) {
	setup(t) // Caddy is built only when Chromium is there
	g := startClientCaddy(t)
	want, err := os.ReadFile(filepath.Join(repoRoot, "caddymodule", "client", "session.js"))
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	do := func(method, url string, header ...string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}

	url := g.memory + "/__session/client.js"
	resp, body := do(http.MethodGet, url)
	etag := resp.Header.Get("ETag")
	switch {
	case resp.StatusCode != http.StatusOK:
		t.Fatalf("GET %s: %s %s", url, resp.Status, body)
	case !bytes.Equal(body, want):
		t.Errorf("GET %s: the body is not caddymodule/client/session.js (%d bytes, want %d)", url, len(body), len(want))
	case resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8":
		t.Errorf("GET %s: Content-Type %q", url, resp.Header.Get("Content-Type"))
	case resp.Header.Get("X-Content-Type-Options") != "nosniff":
		t.Errorf("GET %s: X-Content-Type-Options %q; want nosniff", url, resp.Header.Get("X-Content-Type-Options"))
	case resp.Header.Get("Cache-Control") != "public, max-age=3600":
		t.Errorf("GET %s: Cache-Control %q; want public, max-age=3600", url, resp.Header.Get("Cache-Control"))
	case len(etag) < 3 || !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`):
		t.Errorf("GET %s: ETag %q; want a strong one", url, etag)
	}
	if r, _ := do(http.MethodGet, g.file+"/__session/client.js"); r.Header.Get("ETag") != etag {
		t.Errorf("another gateway serves the script with ETag %q, this one %q; the ETag is of the content", r.Header.Get("ETag"), etag)
	}

	for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag} {
		r, b := do(http.MethodGet, url, "If-None-Match", inm)
		if r.StatusCode != http.StatusNotModified || len(b) != 0 || r.Header.Get("ETag") != etag {
			t.Errorf("GET with If-None-Match: %s answered %s, %d bytes, ETag %q; want 304, none, %s", inm, r.Status, len(b), r.Header.Get("ETag"), etag)
		}
	}
	if r, b := do(http.MethodGet, url, "If-None-Match", `"stale"`); r.StatusCode != http.StatusOK || !bytes.Equal(b, want) {
		t.Errorf("GET with an old ETag answered %s, %d bytes; want 200 and the script", r.Status, len(b))
	}
	if r, b := do(http.MethodHead, url); r.StatusCode != http.StatusOK || len(b) != 0 || r.Header.Get("Content-Length") != fmt.Sprint(len(want)) {
		t.Errorf("HEAD %s answered %s, %d bytes, Content-Length %q; want 200, none, %d", url, r.Status, len(b), r.Header.Get("Content-Length"), len(want))
	}
	if r, b := do(http.MethodPost, url); r.StatusCode != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST %s answered %s (Allow %q): %s; want 405, Allow: GET, HEAD", url, r.Status, r.Header.Get("Allow"), b)
	}
	if r, b := do(http.MethodGet, g.memory+"/__session/other.js"); r.StatusCode != http.StatusNotFound {
		t.Errorf("GET /__session/other.js answered %s: %s; want 404", r.Status, b)
	}
	if r, b := do(http.MethodGet, g.otherPath+"/x/session/client.js"); r.StatusCode != http.StatusOK || !bytes.Equal(b, want) {
		t.Errorf("with api_path /x/session, GET /x/session/client.js answered %s, %d bytes; want 200 and the script", r.Status, len(b))
	}

	// client_script off: a path under the API like any other.
	r, b := do(http.MethodGet, g.noScript+"/__session/client.js")
	if r.StatusCode != http.StatusNotFound || !strings.Contains(string(b), `"error"`) {
		t.Errorf("with client_script off, GET /__session/client.js answered %s: %s; want the API's 404", r.Status, b)
	}
	if r, b := do(http.MethodGet, g.noScript+"/__session"); r.StatusCode != http.StatusOK {
		t.Errorf("with client_script off, GET /__session answered %s: %s; the API stays", r.Status, b)
	}
}
