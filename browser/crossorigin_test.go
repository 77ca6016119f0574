package browser

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// fetchAttack is a page on another origin that tries to write and destroy
// the visitor's session with fetch, in every way a page can: no-cors and
// cors, with the visitor's cookies. ?target= names the shop's origin.
const fetchAttack = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Win a free mug</title>
<style>body{font:16px/1.5 system-ui,sans-serif;margin:3rem;background:#fff4f4;color:#400}pre{background:#fff;padding:1rem;border:1px solid #e0b4b4}</style>
</head><body>
<h1>Congratulations! You won a free mug.</h1>
<p>(This page is on another origin. It tries to change your shop session behind your back.)</p>
<pre id="log">working…</pre>
<script>
const target = new URLSearchParams(location.search).get('target');
const api = new URL('/__session', target).href;
const forged = JSON.stringify({countryCode: 'JP', cart: {kettle: 99}});
const attempts = [
	['POST no-cors text/plain', {method: 'POST', mode: 'no-cors', credentials: 'include', headers: {'Content-Type': 'text/plain'}, body: forged}],
	['POST cors text/plain', {method: 'POST', mode: 'cors', credentials: 'include', headers: {'Content-Type': 'text/plain'}, body: forged}],
	['POST cors application/json', {method: 'POST', mode: 'cors', credentials: 'include', headers: {'Content-Type': 'application/json'}, body: forged}],
	['DELETE cors', {method: 'DELETE', mode: 'cors', credentials: 'include'}],
	['DELETE no-cors', {method: 'DELETE', mode: 'no-cors', credentials: 'include'}],
];
(async () => {
	const results = [];
	for (const [name, init] of attempts) {
		try {
			const r = await fetch(api, init);
			results.push({name: name, outcome: 'response: type ' + r.type + ', status ' + r.status});
		} catch (e) {
			results.push({name: name, outcome: 'error: ' + e.message});
		}
	}
	document.getElementById('log').textContent = api + '\n\n' + results.map((r) => r.name + ' → ' + r.outcome).join('\n');
	window.__results = results;
	window.__done = true;
})();
</script>
</body></html>
`

// formAttack is a page on another origin with a form that posts itself to
// the shop's session API as soon as it loads. ?target= names the shop's
// origin, ?enctype= the form's encoding: text/plain (which can carry a
// JSON-looking body) or application/x-www-form-urlencoded.
const formAttack = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Claim your prize</title></head>
<body>
<h1>Claiming your prize…</h1>
<form id="f" method="POST"></form>
<script>
const q = new URLSearchParams(location.search);
const f = document.getElementById('f');
f.action = new URL('/__session', q.get('target')).href;
f.enctype = q.get('enctype');
const input = document.createElement('input');
input.type = 'hidden';
if (f.enctype === 'text/plain') {
	// Sent as: {"countryCode":"JP","cart":{"kettle":99},"x":"="}
	input.name = '{"countryCode":"JP","cart":{"kettle":99},"x":"';
	input.value = '"}';
} else {
	input.name = 'countryCode';
	input.value = 'JP';
}
f.appendChild(input);
window.addEventListener('load', () => setTimeout(() => f.submit(), 100));
</script>
</body></html>
`

// writeAttackPages writes the other origin's pages.
func writeAttackPages(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, body := range map[string]string{"fetch.html": fetchAttack, "form.html": formAttack} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// A page on another origin tries to write and destroy the session through
// /__session, with fetch and with auto-submitting forms. The gateway
// refuses every write that reaches it (403), the browser never sends the
// others, and the session is unchanged.
//
// The other origin is tried twice: http://127.0.0.1:<other port> is
// same-site (a site ignores the port), so the browser attaches the
// SameSite=Lax session cookie and only the gateway's origin check stands
// in the way; http://localhost:<other port> is cross-site.
func TestCrossOriginWritesRefused(t *testing.T) {
	forEachStore(t, func(t *testing.T, d *demo, base string, st store) {
		victim := d.visitor(t, "shop tab")
		victim.visit(base + "/")
		victim.chooseCountry("DE")
		victim.addToCart("kettle")
		before := asJSON(victim.apiSession())
		if before != `{"cart":{"kettle":1},"countryCode":"DE"}` {
			t.Fatalf("the session before the attack is %s", before)
		}
		c := victim.sessionCookie(base)
		if c == nil {
			t.Fatal("no session cookie before the attack")
		}
		cookieBefore := c.Value
		api := base + "/__session"

		attacker := victim.another("other-origin tab")
		rec := attacker.record()
		for _, origin := range []struct {
			name     string
			base     string
			sameSite bool
		}{
			{"same-site", fmt.Sprintf("http://127.0.0.1:%d", d.evilPort), true},
			{"cross-site", fmt.Sprintf("http://localhost:%d", d.evilPort), false},
		} {
			target := url.QueryEscape(base)

			rec.reset()
			attacker.do("open the fetch attack", chromedp.Navigate(origin.base+"/fetch.html?target="+target))
			attacker.waitFor("the attack's fetches", `window.__done === true`)
			for _, r := range eval[[]struct{ Name, Outcome string }](attacker, `window.__results`) {
				t.Logf("%s fetch %s: %s", origin.name, r.Name, r.Outcome)
			}
			if origin.sameSite {
				attacker.shot("fetch-attack")
			}
			// The no-cors POST and the cors text/plain POST are sent without
			// a preflight; the others need one, which fails (OPTIONS is 405).
			rec.check(t, origin.name+" fetch", api, 2, origin.sameSite)

			for _, enctype := range []string{"text/plain", "application/x-www-form-urlencoded"} {
				rec.reset()
				attacker.do("open the form attack", chromedp.Navigate(origin.base+"/form.html?enctype="+url.QueryEscape(enctype)+"&target="+target))
				rec.waitWrite(t, api)
				attacker.waitFor("the form's answer", `location.href === `+jsString(api)+` && document.readyState === 'complete'`)
				body := eval[string](attacker, `document.body.innerText`)
				if !strings.Contains(body, "cross-origin") {
					t.Errorf("%s form (%s): the gateway answered %q; want the cross-origin refusal", origin.name, enctype, body)
				}
				if origin.sameSite && enctype == "text/plain" {
					attacker.shot("form-attack-refused")
				}
				rec.check(t, fmt.Sprintf("%s form (%s)", origin.name, enctype), api, 1, origin.sameSite)
			}

			if after := asJSON(victim.apiSession()); after != before {
				t.Errorf("after the %s attacks the session is %s; want it unchanged: %s", origin.name, after, before)
			}
			if c := victim.sessionCookie(base); c == nil || c.Value != cookieBefore {
				t.Errorf("after the %s attacks the session cookie changed or is gone", origin.name)
			}
		}

		s := victim.reload()
		victim.shot("shop-after-attacks")
		if s.Country != "DE" || s.Count != "1" || s.MugPrice != "22,00 €" {
			t.Errorf("after the attacks the shop shows %s, %s item(s), mug at %q; want DE, 1, 22,00 €", s.Country, s.Count, s.MugPrice)
		}
	})
}

// jsString quotes s for JavaScript.
func jsString(s string) string { return asJSON(s) }

// recorder keeps what the browser's network layer saw of a tab's requests.
type recorder struct {
	mu   sync.Mutex
	reqs map[network.RequestID]*request
}

type request struct {
	method, url  string
	status       int64  // 0: no response
	failed       string // the network error, when it failed
	secFetchSite string
	cookieSent   bool // the request carried the session cookie
	setCookie    bool // the response set a cookie
}

// record starts recording the tab's requests.
func (tb *tab) record() *recorder {
	tb.t.Helper()
	r := &recorder{reqs: map[network.RequestID]*request{}}
	if err := chromedp.Listen(tb.ctx, r.event); err != nil {
		tb.t.Fatalf("%s: listening to network events: %v", tb.name, err)
	}
	return r
}

func (r *recorder) get(id network.RequestID) *request {
	req, ok := r.reqs[id]
	if !ok {
		req = new(request)
		r.reqs[id] = req
	}
	return req
}

// event runs in the tab's event loop: it only records.
func (r *recorder) event(ev any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		req := r.get(ev.RequestID)
		req.method, req.url = ev.Request.Method, ev.Request.URL
	case *network.EventRequestWillBeSentExtraInfo:
		req := r.get(ev.RequestID)
		for name, v := range ev.Headers {
			value := fmt.Sprint(v)
			switch strings.ToLower(name) {
			case "sec-fetch-site":
				req.secFetchSite = value
			case "cookie":
				for _, c := range strings.Split(value, ";") {
					if strings.HasPrefix(strings.TrimSpace(c), cookieName+"=") {
						req.cookieSent = true
					}
				}
			}
		}
	case *network.EventResponseReceivedExtraInfo:
		req := r.get(ev.RequestID)
		req.status = ev.StatusCode
		for name := range ev.Headers {
			if strings.EqualFold(name, "set-cookie") {
				req.setCookie = true
			}
		}
	case *network.EventResponseReceived:
		r.get(ev.RequestID).status = ev.Response.Status
	case *network.EventLoadingFailed:
		req := r.get(ev.RequestID)
		req.failed = ev.ErrorText
		if ev.CorsErrorStatus != nil {
			req.failed += " (" + string(ev.CorsErrorStatus.CorsError) + ")"
		}
	}
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = map[network.RequestID]*request{}
}

// to returns copies of the recorded requests to url.
func (r *recorder) to(url string) []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []request
	for _, req := range r.reqs {
		if req.url == url {
			out = append(out, *req)
		}
	}
	return out
}

// waitWrite waits until a write to url has an answer or failed.
func (r *recorder) waitWrite(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(actionTimeout)
	for time.Now().Before(deadline) {
		for _, req := range r.to(url) {
			if isWrite(req.method) && (req.status != 0 || req.failed != "") {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no write to %s was answered within %v", url, actionTimeout)
}

// check asserts that every write to api that reached the gateway was
// refused with 403 and set no cookie, and that at least minReached did
// reach it (else the test would prove nothing). With cookie, those that
// reached it carried the session cookie.
func (r *recorder) check(t *testing.T, what, api string, minReached int, cookie bool) {
	t.Helper()
	reached := 0
	for _, req := range r.to(api) {
		if req.method == "" {
			continue
		}
		t.Logf("%s: %s %s → status %d %s (Sec-Fetch-Site %q, session cookie sent %v)",
			what, req.method, req.url, req.status, req.failed, req.secFetchSite, req.cookieSent)
		if !isWrite(req.method) || req.status == 0 {
			continue
		}
		reached++
		if req.status != 403 {
			t.Errorf("%s: %s %s was answered %d; want 403", what, req.method, api, req.status)
		}
		if req.setCookie {
			t.Errorf("%s: the refusal of %s %s set a cookie", what, req.method, api)
		}
		if cookie && !req.cookieSent {
			t.Errorf("%s: %s %s did not carry the session cookie; the test meant to show it refused with it", what, req.method, api)
		}
	}
	if reached < minReached {
		t.Errorf("%s: %d write(s) reached the gateway; want at least %d, or the test proves nothing", what, reached, minReached)
	}
}

func isWrite(method string) bool {
	switch method {
	case "POST", "PUT", "PATCH", "DELETE":
		return true
	}
	return false
}
