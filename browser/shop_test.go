package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// The demo's session cookie (Caddyfile.example: cookie __session).
const cookieName = "__session"

// store is one gateway of the demo: the same Caddyfile.example site with
// one store or another.
type store struct {
	name string
	base func(*demo) string
}

var stores = []store{
	{"cookie", func(d *demo) string { return d.cookieBase }},
	{"memory", func(d *demo) string { return d.memoryBase }},
}

// forEachStore runs f once per gateway, as parallel subtests: each has
// browser contexts of its own.
func forEachStore(t *testing.T, f func(t *testing.T, d *demo, base string, st store)) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			d := setup(t)
			t.Parallel()
			f(t, d, st.base(d), st)
		})
	}
}

// shopState is what a visitor sees on the storefront page.
type shopState struct {
	Country   string            `json:"country"`  // <body data-country>, from X-Session-Countrycode
	Currency  string            `json:"currency"` // <body data-currency>
	Selected  string            `json:"selected"` // the country <select>'s value
	Count     string            `json:"count"`    // the cart badge
	Items     []string          `json:"items"`    // product names in the cart panel
	Hello     string            `json:"hello"`    // the greeting's name when signed in
	Lede      string            `json:"lede"`
	MugPrice  string            `json:"mugPrice"`
	SignIn    bool              `json:"signIn"`   // a "Sign in" form (POST /login) is shown
	SignOut   bool              `json:"signOut"`  // a "Sign out" form (POST /logout) is shown
	ForgetMe  bool              `json:"forgetMe"` // a "Forget me" form (POST /forget) is shown
	Session   string            `json:"session"`  // the page's GET /__session panel
	Upstream  map[string]string `json:"upstream"`
	APILog    string            `json:"apiLog"`
	Title     string            `json:"title"`
	DocCookie string            `json:"docCookie"` // document.cookie
}

const stateJS = `(() => {
	const text = (sel) => { const e = document.querySelector(sel); return e ? e.textContent.replace(/\s+/g, ' ').trim() : ''; };
	const upstream = {};
	document.querySelectorAll('#upstream-panel tr').forEach((row) => {
		const th = row.querySelector('th'), td = row.querySelector('td');
		if (th && td) upstream[th.textContent.trim()] = td.textContent.trim();
	});
	const sel = document.getElementById('country');
	return {
		country: document.body.dataset.country || '',
		currency: document.body.dataset.currency || '',
		selected: sel ? sel.value : '',
		count: text('#cart-count'),
		items: [...document.querySelectorAll('#cart-items li .name')].map((e) => e.textContent.trim()),
		hello: text('.hello strong'),
		lede: text('.lede'),
		mugPrice: text('.card[data-id="mug"] .price'),
		signIn: !!document.querySelector('form[method="post"][action="/login"] button[type="submit"]'),
		signOut: !!document.querySelector('form[method="post"][action="/logout"] button[type="submit"]'),
		forgetMe: !!document.querySelector('form[method="post"][action="/forget"] button[type="submit"]'),
		session: (document.getElementById('session-json') || {}).textContent || '',
		upstream: upstream,
		apiLog: text('#api-log'),
		title: document.title,
		docCookie: document.cookie,
	};
})()`

// state reads the storefront page.
func (tb *tab) state() shopState {
	tb.t.Helper()
	return eval[shopState](tb, stateJS)
}

// pageReady is true once the storefront has loaded and its script has read
// the session through GET /__session.
const pageReady = `document.readyState === 'complete' && !!document.getElementById('session-json') &&
	document.getElementById('session-json').textContent !== 'loading…'`

// visit loads a storefront page and waits for its script.
func (tb *tab) visit(url string) shopState {
	tb.t.Helper()
	tb.do("navigate to "+url, chromedp.Navigate(url))
	tb.waitFor("the storefront to load", pageReady)
	return tb.state()
}

// reload reloads the page and waits for its script.
func (tb *tab) reload() shopState {
	tb.t.Helper()
	tb.do("reload", chromedp.Reload())
	tb.waitFor("the storefront to load", pageReady)
	return tb.state()
}

// loadAfter runs a trigger that makes the page navigate (a click on a
// link, a script that reloads), waits for the new page's load event and
// for the storefront's script.
func (tb *tab) loadAfter(what string, trigger chromedp.Action[chromedp.Void]) shopState {
	tb.t.Helper()
	run(tb, what, chromedp.WaitEvent(page.LoadEventFired, nil, trigger))
	tb.waitFor("the storefront to load after "+what, pageReady)
	return tb.state()
}

// chooseCountry picks a country in the selector as a visitor does: the page
// writes countryCode through POST /__session, then reloads so that the shop
// renders the new prices.
func (tb *tab) chooseCountry(code string) shopState {
	tb.t.Helper()
	js := fmt.Sprintf(`(() => { const s = document.getElementById('country'); s.value = %q; s.dispatchEvent(new Event('change', {bubbles: true})); })()`, code)
	st := tb.loadAfter("choosing country "+code, chromedp.Evaluate[chromedp.Void](js))
	if st.Country != code {
		tb.t.Fatalf("%s: chose %s, the page shows country %q (API log: %s)", tb.name, code, st.Country, st.APILog)
	}
	return st
}

// addToCart clicks a product's "Add to cart" button and waits for the
// page's POST /__session to be answered.
func (tb *tab) addToCart(product string) shopState {
	tb.t.Helper()
	eval[chromedp.Void](tb, `document.getElementById('api-log').textContent = ''`)
	tb.do("click add "+product, chromedp.Click(chromedp.CSS(`[data-add="`+product+`"]`), chromedp.NodeVisible))
	tb.waitFor("the cart write to be answered", `document.getElementById('api-log').textContent.includes('→')`)
	st := tb.state()
	if !strings.Contains(st.APILog, "→ 200") {
		tb.t.Fatalf("%s: adding %s: the API answered %s", tb.name, product, st.APILog)
	}
	return st
}

// apiSession reads the session from the page's origin with GET /__session,
// as the page's own script does.
func (tb *tab) apiSession() map[string]any {
	tb.t.Helper()
	return eval[map[string]any](tb, `fetch('/__session', {cache: 'no-store'}).then((r) => {
		if (!r.ok) throw new Error('GET /__session: ' + r.status);
		return r.json();
	})`)
}

// cookies returns the browser's cookies for url, from its cookie jar.
func (tb *tab) cookies(url string) []*network.Cookie {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, actionTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
	if err != nil {
		tb.t.Fatalf("%s: reading cookies: %v", tb.name, err)
	}
	return res.Cookies
}

// sessionCookie returns the session cookie for url, or nil.
func (tb *tab) sessionCookie(url string) *network.Cookie {
	tb.t.Helper()
	for _, c := range tb.cookies(url) {
		if c.Name == cookieName {
			return c
		}
	}
	return nil
}

// sessionCookies returns the session cookie and its chunks for url.
func (tb *tab) sessionCookies(url string) []string {
	tb.t.Helper()
	var names []string
	for _, c := range tb.cookies(url) {
		if c.Name == cookieName || strings.HasPrefix(c.Name, cookieName+".") {
			names = append(names, c.Name)
		}
	}
	return names
}

// fullPage takes a PNG screenshot of the whole page at the given width.
func fullPage(width float64) chromedp.Action[[]byte] {
	return func(ctx context.Context, t *chromedp.Target) ([]byte, error) {
		m, err := cdp.Call(ctx, t, page.GetLayoutMetrics, cdp.Empty{})
		if err != nil {
			return nil, err
		}
		height := 900.0
		if m.CSSContentSize != nil && m.CSSContentSize.Height > 0 {
			height = math.Min(math.Ceil(m.CSSContentSize.Height), 6000)
		}
		yes := true
		res, err := cdp.Call(ctx, t, page.CaptureScreenshot, page.CaptureScreenshotParams{
			Format:                page.CaptureScreenshotFormatPng,
			CaptureBeyondViewport: &yes,
			Clip:                  &page.Viewport{Width: width, Height: height, Scale: 1},
		})
		return res.Data, err
	}
}

// viewport takes a PNG screenshot of what a 1280×1000 window shows first:
// the first screen.
func viewport() chromedp.Action[[]byte] {
	return func(ctx context.Context, t *chromedp.Target) ([]byte, error) {
		if _, err := cdp.Call(ctx, t, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
			Width: 1280, Height: 1000, DeviceScaleFactor: 1,
		}); err != nil {
			return nil, err
		}
		// Back to the tabs' viewport (harness: EmulateViewport(1280, 900)).
		defer cdp.Call(ctx, t, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
			Width: 1280, Height: 900, DeviceScaleFactor: 1,
		})
		res, err := cdp.Call(ctx, t, page.CaptureScreenshot, page.CaptureScreenshotParams{
			Format: page.CaptureScreenshotFormatPng,
		})
		return res.Data, err
	}
}

// replay reads GET /__session from Go with only the given session cookie:
// what someone who copied that cookie would get.
func replay(t *testing.T, base, cookieValue string) map[string]any {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/__session", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: cookieName, Value: cookieValue})
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /__session with a copied cookie: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /__session with a copied cookie: %s %s", resp.Status, body)
	}
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("GET /__session with a copied cookie: %v: %s", err, body)
	}
	return v
}

// asJSON is v as compact JSON, for comparisons and messages.
func asJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return string(b)
}
