package browser

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// A visitor picks a country; the shop renders that country's prices, and
// the choice survives a reload and reaches another tab, never another
// visitor.
func TestCountrySurvivesReload(t *testing.T) {
	forEachStore(t, func(t *testing.T, d *demo, base string, st store) {
		tab := d.visitor(t, "visitor")
		fresh := tab.visit(base + "/")
		if fresh.Country != "US" || fresh.Currency != "USD" || fresh.MugPrice != "$24.00" {
			t.Fatalf("a fresh visit shows %s/%s, mug at %q; want US/USD, $24.00", fresh.Country, fresh.Currency, fresh.MugPrice)
		}
		if fresh.Session != "{}" {
			t.Errorf("a fresh visit reads the session %q; want {}", fresh.Session)
		}
		if c := tab.sessionCookie(base); c != nil {
			t.Errorf("a visit that writes nothing set a session cookie (%s)", c.Name)
		}
		tab.shot("fresh")
		tab.screen("fresh", false)
		checkFirstScreen(t, tab)

		jp := tab.chooseCountry("JP")
		checkJapan(t, "after choosing Japan", jp)
		if got := jp.Upstream["X-Session-Countrycode"]; got != "JP" {
			t.Errorf("the shop received X-Session-Countrycode %q; want JP (panel: %v)", got, jp.Upstream)
		}
		if c := jp.Upstream["Cookie"]; !strings.HasPrefix(c, "(none") {
			t.Errorf("the shop received a Cookie header %q; the session cookie must not reach it", c)
		}
		tab.shot("country-jp")

		checkJapan(t, "after a reload", tab.reload())
		tab.shot("country-jp-reloaded")

		// Another tab of the same visitor shares the cookie jar.
		other := tab.another("second tab")
		checkJapan(t, "in a second tab", other.visit(base+"/"))

		// Another visitor has a session of their own.
		stranger := d.visitor(t, "another visitor")
		if s := stranger.visit(base + "/"); s.Country != "US" || s.Currency != "USD" {
			t.Errorf("another visitor sees %s/%s; want US/USD", s.Country, s.Currency)
		}
	})
}

// checkFirstScreen checks that the gateway's work is on the first screen
// (the tabs' viewport is 1280×900): what the shop received, what the
// browser can read, the forge button; and that the shop is there too.
func checkFirstScreen(t *testing.T, tb *tab) {
	t.Helper()
	below := eval[[]string](tb, `['#upstream-panel', '#session-json', '#api-log', '#forge', '.card .add', '#cart']
		.filter((sel) => { const e = document.querySelector(sel); return !e || e.getBoundingClientRect().top > innerHeight - 40; })`)
	if len(below) != 0 {
		t.Errorf("at %s the first screen does not show %v", eval[string](tb, "innerWidth + '×' + innerHeight"), below)
	}
}

func checkJapan(t *testing.T, when string, s shopState) {
	t.Helper()
	if s.Country != "JP" || s.Currency != "JPY" || s.Selected != "JP" {
		t.Fatalf("%s: the page shows country %q, currency %q, selector %q; want JP, JPY, JP", when, s.Country, s.Currency, s.Selected)
	}
	if s.MugPrice != "¥3,600" {
		t.Errorf("%s: the mug costs %q; want ¥3,600", when, s.MugPrice)
	}
	if !strings.Contains(s.Lede, "JPY") || !strings.Contains(s.Lede, "Japan") {
		t.Errorf("%s: the page says %q; want prices in JPY for Japan", when, s.Lede)
	}
}

// Two tabs of one visitor add to the cart one after the other: both items
// are in the cart, whatever the store, because the tabs share the cookie
// and the page reads the session before it writes the cart.
func TestCartInTwoTabs(t *testing.T) {
	forEachStore(t, func(t *testing.T, d *demo, base string, st store) {
		a := d.visitor(t, "tab A")
		a.visit(base + "/")
		b := a.another("tab B")
		b.visit(base + "/") // loaded before tab A adds anything

		if s := a.addToCart("mug"); s.Count != "1" {
			t.Fatalf("tab A: after adding a mug the cart badge shows %q; want 1", s.Count)
		}
		a.shot("tab-a-added-mug")
		s := b.addToCart("tote")
		b.shot("tab-b-added-tote")
		if s.Count != "2" {
			t.Errorf("tab B: after adding a tote the cart badge shows %q; want 2 (API log: %s)", s.Count, s.APILog)
		}

		want := []string{"Stoneware Mug", "Linen Tote"}
		for _, tb := range []*tab{a, b} {
			s := tb.reload()
			if s.Count != "2" || !slices.Equal(s.Items, want) {
				t.Errorf("%s after a reload: badge %q, items %q; want 2, %q", tb.name, s.Count, s.Items, want)
			}
		}
		a.shot("tab-a-reloaded")
		if got := asJSON(a.apiSession()["cart"]); got != `{"mug":1,"tote":1}` {
			t.Errorf("GET /__session: cart %s; want {\"mug\":1,\"tote\":1}", got)
		}
	})
}

// Two tabs of one visitor write different keys at the same moment.
//
// Server stores merge each write into the stored session atomically: both
// keys survive. The cookie store keeps the session in the cookie itself, so
// each response carries a whole session and the browser keeps the last
// Set-Cookie it gets: the last write wins (README, "Cookie store"), and
// the session is then exactly what one of the two writes answered, never
// a mix.
func TestConcurrentWritesFromTwoTabs(t *testing.T) {
	forEachStore(t, func(t *testing.T, d *demo, base string, st store) {
		a := d.visitor(t, "tab A")
		a.visit(base + "/")
		b := a.another("tab B")
		b.visit(base + "/")

		countries := []string{"GB", "DE", "FR"}
		lost := 0
		for round, country := range countries {
			// The session must exist before the race: two first writes
			// would each create a session of their own.
			seed := eval[map[string]any](a, `fetch('/__session', {method: 'POST', headers: {'Content-Type': 'application/json'},
				body: JSON.stringify({countryCode: null, cart: {seed: 1}})}).then((r) => r.json())`)
			if asJSON(seed) != `{"cart":{"seed":1}}` {
				t.Fatalf("round %d: seeding the session answered %s", round, asJSON(seed))
			}
			cart := fmt.Sprintf(`{"socks": %d}`, round+1)
			arm := func(tb *tab, patch string) {
				eval[chromedp.Void](tb, `window.__race = new Promise((resolve) => {
					const bc = new BroadcastChannel('race');
					bc.onmessage = () => {
						bc.close();
						resolve(fetch('/__session', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(`+patch+`)})
							.then((r) => r.json().then((body) => ({status: r.status, body: body}))));
					};
				}); true`)
			}
			arm(a, fmt.Sprintf(`{countryCode: %q}`, country))
			arm(b, `{cart: `+cart+`}`)
			// One message reaches both tabs' channels at once.
			eval[chromedp.Void](a, `new BroadcastChannel('race').postMessage('go')`)

			type answer struct {
				Status int            `json:"status"`
				Body   map[string]any `json:"body"`
			}
			ra := eval[answer](a, `window.__race`)
			rb := eval[answer](b, `window.__race`)
			if ra.Status != 200 || rb.Status != 200 {
				t.Fatalf("round %d: the writes answered %d %s and %d %s", round, ra.Status, asJSON(ra.Body), rb.Status, asJSON(rb.Body))
			}
			final := asJSON(a.apiSession())
			both := fmt.Sprintf(`{"cart":%s,"countryCode":%q}`, strings.ReplaceAll(cart, " ", ""), country)
			switch st.name {
			case "memory":
				if final != both {
					t.Errorf("round %d: after two concurrent writes the session is %s; want both keys: %s", round, final, both)
				}
			case "cookie":
				if final != asJSON(ra.Body) && final != asJSON(rb.Body) {
					t.Errorf("round %d: after two concurrent writes the session is %s; want what one of them answered (last write wins): %s or %s",
						round, final, asJSON(ra.Body), asJSON(rb.Body))
				}
				if final != both {
					lost++
				}
			}
		}
		if st.name == "cookie" {
			t.Logf("cookie store: %d of %d races lost a write (last write wins, as documented)", lost, len(countries))
		}
	})
}

// Sign in is a form that POSTs to the shop, which answers with
// X-Session-Set + X-Session-Rotate: the page greets the customer and the
// session gets a new ID, so the cookie changes. Sign out is another form:
// the shop deletes the customer keys (X-Session-Set with nulls) and rotates
// again, and the cart and the country stay.
func TestSignInRotatesSignOutKeepsCart(t *testing.T) {
	forEachStore(t, func(t *testing.T, d *demo, base string, st store) {
		tab := d.visitor(t, "visitor")
		tab.visit(base + "/")
		tab.chooseCountry("DE")
		tab.addToCart("candle")
		before := tab.reload()
		checkOneLineButtons(t, tab, "in euros")
		oldCookie := tab.sessionCookie(base)
		if oldCookie == nil {
			t.Fatal("no session cookie after writing the session")
		}
		oldRef := before.Upstream["X-Shop-Session-Ref"]
		if oldRef == "" {
			t.Fatalf("the shop got no X-Shop-Session-Ref ({http.session.ref}) for a session (panel: %v)", before.Upstream)
		}
		if !before.SignIn || before.SignOut || before.Hello != "" {
			t.Fatalf("before sign-in: sign-in form %v, sign-out form %v, greeting %q", before.SignIn, before.SignOut, before.Hello)
		}
		tab.shot("before-sign-in")

		in := tab.loadAfter("signing in", chromedp.Click(chromedp.CSS(`form[action="/login"] button`), chromedp.NodeVisible))
		tab.shot("signed-in")
		// The forged login is refused, on the first screen.
		eval[chromedp.Void](tab, `document.getElementById('api-log').textContent = ''`)
		tab.do("click forge", chromedp.Click(chromedp.CSS(`#forge`), chromedp.NodeVisible))
		tab.waitFor("the forged write to be answered", `document.getElementById('api-log').textContent.includes('→')`)
		if log := tab.state().APILog; !strings.Contains(log, "→ 403") {
			t.Errorf("a forged login from the browser: the API log says %q; want 403", log)
		}
		tab.screen("signed-in-forge-refused", st.name == "cookie")
		if in.Hello != "Ada" || !in.SignOut || in.SignIn || !in.ForgetMe {
			t.Errorf("after sign-in: greeting %q, sign-out form %v, sign-in form %v, forget-me form %v; want Ada, true, false, true",
				in.Hello, in.SignOut, in.SignIn, in.ForgetMe)
		}
		if !strings.Contains(in.Lede, "c_42") {
			t.Errorf("after sign-in the page does not name customer c_42: %q", in.Lede)
		}
		if in.Country != "DE" || in.Count != "1" {
			t.Errorf("after sign-in: country %q, cart %q; rotation must keep the data (DE, 1)", in.Country, in.Count)
		}
		if got := in.Upstream["X-Session-Customerid"]; got != "c_42" {
			t.Errorf("after sign-in the shop received X-Session-Customerid %q; want c_42", got)
		}
		newCookie := tab.sessionCookie(base)
		if newCookie == nil {
			t.Fatal("no session cookie after sign-in")
		}
		if newCookie.Value == oldCookie.Value {
			t.Error("the session cookie did not change at sign-in")
		}
		inRef := in.Upstream["X-Shop-Session-Ref"]
		if inRef == "" || inRef == oldRef {
			t.Errorf("session reference before sign-in %q, after %q; rotation gives the session a new ID", oldRef, inRef)
		}
		// customerId is not client-readable.
		if s := tab.apiSession(); s["customerId"] != nil || s["customerName"] != nil || s["countryCode"] != "DE" {
			t.Errorf("GET /__session after sign-in: %s; want countryCode and cart only", asJSON(s))
		}
		switch st.name {
		case "memory":
			// Rotation deleted the old ID: a copy of the old cookie is
			// worth nothing.
			if got := replay(t, base, oldCookie.Value); len(got) != 0 {
				t.Errorf("the pre-sign-in cookie still reads the session after rotation: %s", asJSON(got))
			}
			if got := replay(t, base, newCookie.Value); got["countryCode"] != "DE" {
				t.Errorf("the new cookie reads %s; want the session", asJSON(got))
			}
		case "cookie":
			// No server state: a copied cookie stays valid until it
			// expires (README, "Cookie store").
			t.Logf("cookie store: the pre-sign-in cookie still reads %s (documented: use a server store to revoke copies)",
				asJSON(replay(t, base, oldCookie.Value)))
		}

		out := tab.loadAfter("signing out", chromedp.Click(chromedp.CSS(`form[action="/logout"] button`), chromedp.NodeVisible))
		tab.shot("signed-out")
		if out.Hello != "" || !out.SignIn || out.SignOut {
			t.Errorf("after sign-out: greeting %q, sign-in form %v, sign-out form %v", out.Hello, out.SignIn, out.SignOut)
		}
		if strings.Contains(out.Lede, "c_42") {
			t.Errorf("after sign-out the page still names customer c_42: %q", out.Lede)
		}
		// Sign out keeps the cart and the country.
		if out.Country != "DE" || out.Count != "1" || !slices.Equal(out.Items, []string{"Beeswax Candle"}) {
			t.Errorf("after sign-out: country %q, cart %q %q; want the cart and country kept (DE, 1 Beeswax Candle)", out.Country, out.Count, out.Items)
		}
		for _, h := range []string{"X-Session-Customerid", "X-Session-Customername"} {
			if v, ok := out.Upstream[h]; ok {
				t.Errorf("after sign-out the shop still received %s: %q", h, v)
			}
		}
		if got := out.Upstream["X-Session-Countrycode"]; got != "DE" {
			t.Errorf("after sign-out the shop received X-Session-Countrycode %q; want DE", got)
		}
		if got := asJSON(tab.apiSession()); got != `{"cart":{"candle":1},"countryCode":"DE"}` {
			t.Errorf("GET /__session after sign-out: %s; want the cart and the country", got)
		}
		outCookie := tab.sessionCookie(base)
		if outCookie == nil {
			t.Fatal("no session cookie after sign-out: it must keep the session")
		}
		if outCookie.Value == newCookie.Value {
			t.Error("the session cookie did not change at sign-out (rotation)")
		}
		if ref := out.Upstream["X-Shop-Session-Ref"]; ref == "" || ref == inRef {
			t.Errorf("session reference while signed in %q, after sign-out %q; rotation gives the session a new ID", inRef, ref)
		}
		if st.name == "memory" {
			if got := replay(t, base, newCookie.Value); len(got) != 0 {
				t.Errorf("the signed-in cookie still reads the session after sign-out: %s", asJSON(got))
			}
		}
	})
}

// "Forget me" is a form that POSTs to the shop, which answers
// X-Session-Destroy: the customer, the country and the cart are gone, and so
// is the cookie.
func TestForgetMeDestroysSession(t *testing.T) {
	forEachStore(t, func(t *testing.T, d *demo, base string, st store) {
		tab := d.visitor(t, "visitor")
		tab.visit(base + "/")
		tab.chooseCountry("FR")
		tab.addToCart("mug")
		in := tab.loadAfter("signing in", chromedp.Click(chromedp.CSS(`form[action="/login"] button`), chromedp.NodeVisible))
		if in.Hello != "Ada" || in.Country != "FR" || in.Count != "1" || !in.ForgetMe {
			t.Fatalf("after sign-in: greeting %q, country %q, cart %q, forget-me form %v; want Ada, FR, 1, true", in.Hello, in.Country, in.Count, in.ForgetMe)
		}
		cookie := tab.sessionCookie(base)
		if cookie == nil {
			t.Fatal("no session cookie after sign-in")
		}
		tab.shot("signed-in")

		out := tab.loadAfter("forgetting", chromedp.Click(chromedp.CSS(`form[action="/forget"] button`), chromedp.NodeVisible))
		tab.shot("forgotten")
		if out.Hello != "" || !out.SignIn || out.SignOut {
			t.Errorf("after forget-me: greeting %q, sign-in form %v, sign-out form %v", out.Hello, out.SignIn, out.SignOut)
		}
		if out.Country != "US" || out.Count != "0" || out.Session != "{}" {
			t.Errorf("after forget-me: country %q, cart %q, session %q; want the whole session gone (US, 0, {})", out.Country, out.Count, out.Session)
		}
		for name := range out.Upstream {
			if strings.HasPrefix(strings.ToLower(name), "x-session-") {
				t.Errorf("after forget-me the shop still received %s", name)
			}
		}
		if names := tab.sessionCookies(base); len(names) != 0 {
			t.Errorf("after forget-me the browser still holds %v", names)
		}
		if st.name == "memory" {
			if got := replay(t, base, cookie.Value); len(got) != 0 {
				t.Errorf("the signed-in cookie still reads the session after forget-me: %s", asJSON(got))
			}
		}
	})
}

// The account endpoints change the session on POST only: a link, a
// prefetch or a crawler's GET changes nothing (405), and a POST that the
// browser marks as coming from another site is refused (403).
func TestAccountEndpointsPostOnly(t *testing.T) {
	forEachStore(t, func(t *testing.T, d *demo, base string, st store) {
		client := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
		for _, tc := range []struct {
			method, path, fetchSite string
			status                  int
		}{
			{http.MethodGet, "/login", "", http.StatusMethodNotAllowed},
			{http.MethodGet, "/logout", "", http.StatusMethodNotAllowed},
			{http.MethodGet, "/forget", "", http.StatusMethodNotAllowed},
			{http.MethodPost, "/login", "cross-site", http.StatusForbidden},
			{http.MethodPost, "/login", "same-site", http.StatusForbidden},
			{http.MethodPost, "/forget", "same-site", http.StatusForbidden},
			{http.MethodPost, "/login", "same-origin", http.StatusSeeOther},
			{http.MethodPost, "/login", "", http.StatusSeeOther}, // not a browser: no Sec-Fetch-Site
		} {
			req, err := http.NewRequest(tc.method, base+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.fetchSite != "" {
				req.Header.Set("Sec-Fetch-Site", tc.fetchSite)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.method, tc.path, err)
			}
			resp.Body.Close()
			setCookie := len(resp.Header.Values("Set-Cookie")) > 0
			if resp.StatusCode != tc.status || setCookie != (tc.status == http.StatusSeeOther) {
				t.Errorf("%s %s (Sec-Fetch-Site %q): %s, Set-Cookie %v; want %d, Set-Cookie %v",
					tc.method, tc.path, tc.fetchSite, resp.Status, setCookie, tc.status, tc.status == http.StatusSeeOther)
			}
			if tc.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != "POST" {
				t.Errorf("%s %s: Allow %q; want POST", tc.method, tc.path, resp.Header.Get("Allow"))
			}
			for name := range resp.Header {
				if strings.HasPrefix(strings.ToLower(name), "x-session-") {
					t.Errorf("%s %s: the browser received %s", tc.method, tc.path, name)
				}
			}
		}
	})
}

// checkOneLineButtons checks that no "Add to cart" button wraps its label.
func checkOneLineButtons(t *testing.T, tb *tab, when string) {
	t.Helper()
	wrapped := eval[[]string](tb, `[...document.querySelectorAll('.card .add')].filter((b) => {
		const lh = parseFloat(getComputedStyle(b).fontSize) * 1.6;
		const r = document.createRange(); r.selectNodeContents(b);
		return r.getBoundingClientRect().height > lh || b.scrollWidth > b.clientWidth;
	}).map((b) => b.dataset.add)`)
	if len(wrapped) != 0 {
		t.Errorf("%s: the \"Add to cart\" buttons of %v wrap or overflow", when, wrapped)
	}
}

// The session cookie is HttpOnly: page scripts can neither read nor
// overwrite it.
func TestSessionCookieIsHttpOnly(t *testing.T) {
	forEachStore(t, func(t *testing.T, d *demo, base string, st store) {
		tab := d.visitor(t, "visitor")
		tab.visit(base + "/")
		tab.chooseCountry("GB")
		eval[chromedp.Void](tab, `document.cookie = 'theme=dark; path=/'`)

		c := tab.sessionCookie(base)
		if c == nil {
			t.Fatal("no session cookie after choosing a country")
		}
		if !c.HTTPOnly || c.Path != "/" || string(c.SameSite) != "Lax" || c.Secure {
			t.Errorf("session cookie: HttpOnly %v, Path %q, SameSite %q, Secure %v; want true, /, Lax, false (plain HTTP, secure auto)",
				c.HTTPOnly, c.Path, c.SameSite, c.Secure)
		}
		seen := eval[string](tab, `document.cookie`)
		if strings.Contains(seen, cookieName) || strings.Contains(seen, c.Value) {
			t.Errorf("document.cookie shows the session cookie: %q", seen)
		}
		if !strings.Contains(seen, "theme=dark") {
			t.Errorf("document.cookie is %q; a script cookie must show (the check would prove nothing)", seen)
		}

		// A script cannot overwrite an HttpOnly cookie either.
		eval[chromedp.Void](tab, `document.cookie = '`+cookieName+`=forged; path=/'`)
		if after := tab.sessionCookie(base); after == nil || after.Value != c.Value {
			t.Errorf("a script replaced the session cookie")
		}
		if s := tab.reload(); s.Country != "GB" {
			t.Errorf("after a script tried to overwrite the cookie the page shows %q; want GB", s.Country)
		}
	})
}
