package integration

import (
	"crypto/tls"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// wantAttrs checks a session Set-Cookie line's attributes. maxAge < 0 skips
// the Max-Age check.
type cookieWant struct {
	path     string
	domain   string
	secure   bool
	httpOnly bool
	sameSite string
	maxAge   int // expected Max-Age in seconds; <0: do not check
	slack    int // how much less Max-Age may be (default 10 s)
}

func checkCookieLine(t testing.TB, line string, w cookieWant) {
	t.Helper()
	if len(line) >= 4096 {
		t.Errorf("Set-Cookie line of %d bytes (must be < 4096)", len(line))
	}
	a := attrs(line)
	if a["path"] != w.path {
		t.Errorf("Path %q, want %q: %.120q", a["path"], w.path, line)
	}
	if d, ok := a["domain"]; (w.domain == "") == ok || d != w.domain {
		t.Errorf("Domain %q, want %q: %.120q", d, w.domain, line)
	}
	if _, ok := a["secure"]; ok != w.secure {
		t.Errorf("Secure %v, want %v: %.120q", ok, w.secure, line)
	}
	if _, ok := a["httponly"]; ok != w.httpOnly {
		t.Errorf("HttpOnly %v, want %v: %.120q", ok, w.httpOnly, line)
	}
	if !strings.EqualFold(a["samesite"], w.sameSite) {
		t.Errorf("SameSite %q, want %q (explicit): %.120q", a["samesite"], w.sameSite, line)
	}
	if w.maxAge >= 0 && !isExpiry(t, line) {
		slack := w.slack
		if slack == 0 {
			slack = 10
		}
		ma, err := strconv.Atoi(a["max-age"])
		if err != nil || ma > w.maxAge || ma < w.maxAge-slack {
			t.Errorf("Max-Age %q, want about %d: %.120q", a["max-age"], w.maxAge, line)
		}
	}
}

func TestCookieAttributesDefault(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme"})
	b := c.NewBrowser()
	def := cookieWant{path: "/", httpOnly: true, sameSite: "Lax", maxAge: 30 * 24 * 3600}

	r := b.API(t, "POST", `{"theme":"dark"}`)
	lines := setCookieFor(r, "__session")
	if len(lines) != 1 {
		t.Fatalf("want one __session Set-Cookie, got %q", r.SetCookies())
	}
	checkCookieLine(t, lines[0], def)

	// Set by an upstream write.
	b2 := c.NewBrowser()
	r = b2.Seed(t, `{"customerId":"c_1"}`)
	lines = setCookieFor(r, "__session")
	if len(lines) != 1 {
		t.Fatalf("write-back: want one __session Set-Cookie, got %q", r.SetCookies())
	}
	checkCookieLine(t, lines[0], def)

	// Expired with the same attributes, by the API and by the upstream.
	r = b.API(t, "DELETE", "")
	lines = setCookieFor(r, "__session")
	if len(lines) != 1 || !isExpiry(t, lines[0]) {
		t.Fatalf("DELETE: want __session expired, got %q", r.SetCookies())
	}
	checkCookieLine(t, lines[0], def)
	r = b2.Get(t, "/logout", "X-Test-Resp: X-Session-Destroy: 1")
	lines = setCookieFor(r, "__session")
	if len(lines) != 1 || !isExpiry(t, lines[0]) {
		t.Fatalf("X-Session-Destroy: want __session expired, got %q", r.SetCookies())
	}
	checkCookieLine(t, lines[0], def)
}

func TestCookieAttributesCustom(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, cfg, cookie string
		want              cookieWant
	}{
		{"secure on", "cookie {\n\t\tsecure on\n\t}", "__session",
			cookieWant{path: "/", secure: true, httpOnly: true, sameSite: "Lax", maxAge: 30 * 24 * 3600}},
		{"custom name and options", `cookie sid {
		path /shop
		domain example.test
		max_age 1h
		same_site strict
		http_only off
	}`, "sid", cookieWant{path: "/shop", domain: "example.test", sameSite: "Strict", maxAge: 3600}},
		{"same_site none forces Secure", "cookie {\n\t\tsame_site none\n\t}", "__session",
			cookieWant{path: "/", secure: true, httpOnly: true, sameSite: "None", maxAge: 30 * 24 * 3600}},
		// A fixed end an hour away: the cookie does not outlive it.
		{"expires", "cookie {\n\t\texpires " + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + "\n\t}", "__session",
			cookieWant{path: "/", httpOnly: true, sameSite: "Lax", maxAge: 3600, slack: 300}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme\n\t" + tc.cfg})
			b := c.NewBrowser()
			r := b.API(t, "POST", `{"theme":"dark"}`)
			if r.Status != http.StatusOK {
				t.Fatalf("POST:\n%s", r)
			}
			if len(r.SetCookies()) != 1 || len(setCookieFor(r, tc.cookie)) != 1 {
				t.Fatalf("want exactly one Set-Cookie, for %s; got %q", tc.cookie, r.SetCookies())
			}
			checkCookieLine(t, setCookieFor(r, tc.cookie)[0], tc.want)

			b.Get(t, "/page")
			rec := c.Up.Last(t)
			wantSessionHeaders(t, rec, map[string]string{"X-Session-Theme": "dark"})
			if len(rec.Cookies()) != 0 {
				t.Errorf("the session cookie reached the upstream: %q", rec.Header["Cookie"])
			}

			r = b.API(t, "DELETE", "")
			lines := setCookieFor(r, tc.cookie)
			if len(lines) != 1 || !isExpiry(t, lines[0]) {
				t.Fatalf("DELETE: want %s expired, got %q", tc.cookie, r.SetCookies())
			}
			checkCookieLine(t, lines[0], tc.want)
		})
	}
}

// TestCookieNameBound: a value minted for one cookie name does not work
// under another, with the same secret (S5).
func TestCookieNameBound(t *testing.T) {
	t.Parallel()
	cfg := func(name string) CaddyOpts {
		return CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme\n\tcookie " + name}
	}
	c := StartCaddy(t, cfg("sid"))
	b := c.NewBrowser()
	b.API(t, "POST", `{"theme":"dark"}`)
	value := b.Jar.Get("sid")
	if value == "" {
		t.Fatalf("no sid cookie: %v", b.Jar.Names())
	}

	c.Reload(t, cfg("other"))
	r := c.Do(t, Req{Path: "/__session", Cookie: "other=" + value})
	wantObject(t, r, http.StatusOK, `{}`)
	c.Do(t, Req{Path: "/page", Cookie: "other=" + value})
	noSessionHeaders(t, c.Up.Last(t))

	// Sanity: under its own name the value still works.
	c.Reload(t, cfg("sid"))
	wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: "sid=" + value}), http.StatusOK, `{"theme":"dark"}`)
}

func TestCookieChunking(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable blob theme"})
	b := c.NewBrowser()
	def := cookieWant{path: "/", httpOnly: true, sameSite: "Lax", maxAge: -1}
	blob := randomString(5000)

	r := b.API(t, "POST", `{"blob":"`+blob+`","theme":"dark"}`)
	if r.Status != http.StatusOK {
		t.Fatalf("POST 5000 bytes:\n%s", r)
	}
	names := b.Jar.Names()
	if len(names) < 2 || names[0] != "__session" || names[1] != "__session.1" {
		t.Fatalf("want chunks __session, __session.1, ...; got %v", names)
	}
	for i, n := range names[1:] {
		if n != "__session."+strconv.Itoa(i+1) {
			t.Fatalf("chunk names %v", names)
		}
	}
	for _, line := range r.SetCookies() {
		checkCookieLine(t, line, def)
	}

	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"blob":"`+blob+`","theme":"dark"}`)
	b.Get(t, "/page")
	rec := c.Up.Last(t)
	if rec.Header.Get("X-Session-Blob") != blob || rec.Header.Get("X-Session-Theme") != "dark" {
		t.Fatalf("chunked session not forwarded whole")
	}
	for _, ck := range rec.Cookies() {
		t.Errorf("upstream got cookie %s", ck.Name)
	}

	// A missing chunk: no session, not an error.
	partial := "__session=" + b.Jar.Get("__session")
	wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: partial}), http.StatusOK, `{}`)

	// Too large for max_chunks (default 4): 413, old session intact.
	big := b.Jar.Clone()
	r = b.API(t, "PATCH", `{"blob":"`+randomString(20000)+`"}`)
	wantError(t, r, http.StatusRequestEntityTooLarge)
	noSetCookie(t, r)
	wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: big.Header()}), http.StatusOK, `{"blob":"`+blob+`","theme":"dark"}`)

	// Shrinking expires the leftover chunks.
	r = b.API(t, "PATCH", `{"blob":null}`)
	wantObject(t, r, http.StatusOK, `{"theme":"dark"}`)
	for _, n := range names[1:] {
		lines := setCookieFor(r, n)
		if len(lines) != 1 || !isExpiry(t, lines[0]) {
			t.Errorf("leftover chunk %s not expired: %q", n, r.SetCookies())
			continue
		}
		checkCookieLine(t, lines[0], def)
	}
	if got := b.Jar.Names(); len(got) != 1 || got[0] != "__session" {
		t.Fatalf("cookies after shrinking: %v", got)
	}
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"dark"}`)
}

func TestCookieMaxChunks(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable blob theme\n\tstore cookie {\n\t\tmax_chunks 1\n\t}"})
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
	old := b.Jar.Clone()

	r := b.API(t, "POST", `{"blob":"`+randomString(3000)+`"}`)
	wantError(t, r, http.StatusRequestEntityTooLarge)
	noSetCookie(t, r)
	wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: old.Header()}), http.StatusOK, `{"theme":"dark"}`)

	blob := randomString(1000)
	r = b.API(t, "POST", `{"blob":"`+blob+`"}`)
	wantObject(t, r, http.StatusOK, `{"theme":"dark","blob":"`+blob+`"}`)
	if len(r.SetCookies()) != 1 {
		t.Errorf("max_chunks 1: want one cookie, got %d", len(r.SetCookies()))
	}
	for _, line := range r.SetCookies() {
		if len(line) >= 4096 {
			t.Errorf("Set-Cookie line of %d bytes", len(line))
		}
	}
}

// TestCookieTampered: an altered, truncated or foreign cookie is no
// session, never an error page.
func TestCookieTampered(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme"})
	b := c.NewBrowser()
	b.API(t, "POST", `{"theme":"dark"}`)
	v := b.Jar.Get("__session")
	if len(v) < 40 {
		t.Fatalf("cookie value too short: %q", v)
	}
	flip := func(s string, i int) string {
		ch := byte('A')
		if s[i] == 'A' {
			ch = 'B'
		}
		return s[:i] + string(ch) + s[i+1:]
	}

	for _, tc := range []struct{ name, cookie string }{
		{"flipped middle", "__session=" + flip(v, len(v)/2)},
		{"flipped first", "__session=" + flip(v, 0)},
		{"flipped last", "__session=" + flip(v, len(v)-1)},
		{"truncated", "__session=" + v[:len(v)-5]},
		{"extended", "__session=" + v + "AA"},
		{"empty", "__session="},
		{"garbage", "__session=!!not-base64!!"},
		{"huge", "__session=" + strings.Repeat("A", 5000)},
		{"chunk only", "__session.1=" + v},
		{"twice, second good", "__session=" + flip(v, 10) + "; __session=" + v},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.Do(t, Req{Path: "/__session", Cookie: tc.cookie})
			if tc.name == "twice, second good" {
				// Either reading is acceptable; an error is not.
				if r.Status != http.StatusOK {
					t.Fatalf("status %d:\n%s", r.Status, r)
				}
				return
			}
			wantObject(t, r, http.StatusOK, `{}`)
			r = c.Do(t, Req{Path: "/page", Cookie: tc.cookie})
			if r.Status != http.StatusOK {
				t.Fatalf("GET /page with a tampered cookie: status %d:\n%s", r.Status, r)
			}
			noSessionHeaders(t, c.Up.Last(t))

			// A write starts a fresh session without the old data.
			r = c.Do(t, Req{Method: "POST", Path: "/__session", Body: `{"theme":"new"}`, CT: "application/json", Cookie: tc.cookie})
			wantObject(t, r, http.StatusOK, `{"theme":"new"}`)
		})
	}

	// Sanity: the original still works.
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"dark"}`)
}

// TestForwardedHeadersNotTrusted: a client's X-Forwarded-* headers decide
// neither the Secure attribute nor the origin check (S24).
func TestForwardedHeadersNotTrusted(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme"})
	r := c.Do(t, Req{Method: "POST", Path: "/__session", Body: `{"theme":"x"}`, CT: "application/json",
		Header: []string{"X-Forwarded-Proto: https", "X-Forwarded-Ssl: on", "Forwarded: proto=https"}})
	if r.Status != http.StatusOK {
		t.Fatalf("POST:\n%s", r)
	}
	for _, line := range r.SetCookies() {
		if _, ok := attrs(line)["secure"]; ok {
			t.Errorf("Secure set from a client's X-Forwarded-Proto over plain HTTP: %q", line)
		}
	}
	r = c.Do(t, Req{Method: "POST", Path: "/__session", Body: `{"theme":"y"}`, CT: "application/json",
		Header: []string{"Origin: http://evil.example", "X-Forwarded-Host: evil.example", "Forwarded: host=evil.example"}})
	wantError(t, r, http.StatusForbidden)
}

// TestCookieSecureAutoOverTLS: with secure auto (the default) the cookie is
// Secure when the request came over TLS, deletion included.
func TestCookieSecureAutoOverTLS(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{TLS: true, Session: "\tsecret " + secretA + "\n\tclient_writable theme"})
	b := c.NewBrowser()
	var r *Resp
	// The internal certificate may take a moment after the port opens.
	for i := 0; ; i++ {
		var err error
		r, err = c.DoErr(Req{Method: "POST", Path: "/__session", Body: `{"theme":"dark"}`, CT: "application/json"})
		if err == nil {
			break
		}
		if i == 50 {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Jar.Update(t, r)
	want := cookieWant{path: "/", secure: true, httpOnly: true, sameSite: "Lax", maxAge: 30 * 24 * 3600}
	lines := setCookieFor(r, "__session")
	if len(lines) != 1 {
		t.Fatalf("POST over TLS: Set-Cookie %q", r.SetCookies())
	}
	checkCookieLine(t, lines[0], want)
	b.Get(t, "/page")
	wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Theme": "dark"})
	r = b.API(t, "DELETE", "")
	lines = setCookieFor(r, "__session")
	if len(lines) != 1 || !isExpiry(t, lines[0]) {
		t.Fatalf("DELETE over TLS: Set-Cookie %q", r.SetCookies())
	}
	checkCookieLine(t, lines[0], want)
}

// TestHTTP2Spoofing: over HTTP/2 (lowercase header names) client headers
// are stripped and the session is forwarded.
func TestHTTP2Spoofing(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{TLS: true, Session: "\tsecret " + secretA + "\n\tclient_writable theme"})
	h2 := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
	}, Timeout: 10 * time.Second}
	defer h2.CloseIdleConnections()
	do := func(method, path, body, cookie string, header ...string) *http.Response {
		t.Helper()
		var resp *http.Response
		for i := 0; ; i++ {
			req, _ := http.NewRequest(method, c.Base+path, strings.NewReader(body))
			if body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			if cookie != "" {
				req.Header.Set("Cookie", cookie)
			}
			for _, h := range header {
				k, v, _ := strings.Cut(h, ":")
				req.Header.Add(k, strings.TrimSpace(v))
			}
			var err error
			resp, err = h2.Do(req)
			if err == nil {
				break
			}
			if i == 50 {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("not HTTP/2: %s", resp.Proto)
		}
		return resp
	}
	resp := do("POST", "/__session", `{"theme":"dark"}`, "")
	jar := NewJar()
	jar.Update(t, &Resp{Status: resp.StatusCode, Header: resp.Header})
	do("GET", "/page", "", jar.Header(), "x-session-theme: spoof", "x-session-foo: spoof", "connection-ish: x")
	wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Theme": "dark"})
	do("GET", "/page", "", "", "x-session-theme: spoof")
	noSessionHeaders(t, c.Up.Last(t))
}
