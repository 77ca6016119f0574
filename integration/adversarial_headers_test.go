package integration

// The adversarial suite, part 1: every way a client could get its own value
// into an X-Session-* header upstream, or make the proxy drop the gateway's
// own: name spellings (case, '_', '.', duplicates) with Caddy's own
// underscore and dot filters closed and opened, trailers over HTTP/1.1 and
// HTTP/2, Connection tokens, and Upgrade (h2c must never open a tunnel past
// the module; WebSocket still works).

import (
	"bufio"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// advTargets are the reserved names spelled every way: a forwarded key
// (countryCode), a key with a separator (customer_id, forwarded as
// X-Session-Customer-Id), a key the session does not hold (role), the
// upstream's control header, the signature, and names that merely start
// with the prefix.
var advTargets = []string{
	"X-Session-Countrycode",
	"X-Session-Customer-Id",
	"X-Session-Role",
	"X-Session-Set",
	"X-Session-Signature",
	"X-Session",
	"X-Sessionx",
}

// advSpellings returns name with each '-' spelled '-', '_' or '.', each in
// four cases (as given, lower, upper, alternating), without repeats.
func advSpellings(name string) []string {
	parts := strings.Split(name, "-")
	seps := []string{"-", "_", "."}
	var joined []string
	var walk func(i int, acc string)
	walk = func(i int, acc string) {
		if i == len(parts) {
			joined = append(joined, acc)
			return
		}
		for _, s := range seps {
			walk(i+1, acc+s+parts[i])
		}
	}
	walk(1, parts[0])
	seen := map[string]bool{}
	var out []string
	for _, j := range joined {
		alt := []byte(strings.ToLower(j))
		for i := range alt {
			if i%2 == 0 && 'a' <= alt[i] && alt[i] <= 'z' {
				alt[i] -= 'a' - 'A'
			}
		}
		for _, v := range []string{j, strings.ToLower(j), strings.ToUpper(j), string(alt)} {
			if !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
		}
	}
	return out
}

// advSpoofLines returns one "Name: value" line per spelling of every
// target, each value unique and recognisable ("spoof-<n>").
func advSpoofLines() []string {
	var lines []string
	for _, target := range advTargets {
		for _, s := range advSpellings(target) {
			lines = append(lines, fmt.Sprintf("%s: spoof-%d", s, len(lines)))
		}
	}
	return lines
}

// advCanonicalOnce returns, for the spellings containing sep (and, with
// mixed, those containing both '_' and '.'), one spelling per canonical
// name, as Caddy's allowlists want them (a repeated allowlisted header is
// dropped by Caddy itself, which would hide what the module does).
func advCanonicalOnce(lines []string, keep func(name string) bool) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lines {
		name, _, _ := strings.Cut(l, ":")
		c := http.CanonicalHeaderKey(name)
		if !keep(name) || seen[c] {
			continue
		}
		seen[c] = true
		out = append(out, l)
	}
	return out
}

// noSpoofValues checks that no "spoof-" value reached the upstream, in any
// header or trailer.
func noSpoofValues(t testing.TB, rec *Recorded) {
	t.Helper()
	for _, h := range []http.Header{rec.Header, rec.Trailer} {
		for k, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, "spoof") {
					t.Errorf("%s %s: upstream got %s: %q", rec.Method, rec.Path, k, v)
				}
			}
		}
	}
}

// advSessionSite is a site with a session route and, under /nosession/, a
// route without the module: the positive control that shows Caddy passes
// the allowlisted spellings when the module is not there.
const advSessionSite = `handle /nosession/* {
	reverse_proxy {{UPSTREAM}}
}
handle {
	session {
{{SESSION}}
	}
	reverse_proxy {{UPSTREAM}}
}`

const advSignKey = "adversarial-sign-key-0123456789abcdefghijkl"

const advSession = "\tsecret " + secretA + "\n\tclient_writable theme\n\tclient_readable *\n\tsign_headers " + advSignKey

// TestAdversarialSpoofSpellings sends every spelling of the reserved names
// (case, '_', '.', repeats) on every kind of request, with Caddy's own
// underscore/dot filtering closed (the default), opened by exact names, and
// opened by prefix globs: no client value ever reaches the upstream, and
// the upstream gets exactly the session's headers (S18, S19).
func TestAdversarialSpoofSpellings(t *testing.T) {
	t.Parallel()
	all := advSpoofLines()
	hasSep := func(sep string) func(string) bool {
		return func(name string) bool { return strings.Contains(name, sep) }
	}
	underscore := advCanonicalOnce(all, func(n string) bool { return strings.Contains(n, "_") })
	dotOnly := advCanonicalOnce(all, func(n string) bool { return strings.Contains(n, ".") && !strings.Contains(n, "_") })
	names := func(lines []string) string {
		var ns []string
		for _, l := range lines {
			n, _, _ := strings.Cut(l, ":")
			ns = append(ns, n)
		}
		return strings.Join(ns, " ")
	}

	for _, tc := range []struct {
		name   string
		global string
		// lines are the spoofed headers sent; control lists those Caddy
		// is expected to pass to a route without the module (nil: no
		// control check).
		lines   []string
		control []string
	}{
		{name: "caddy defaults", lines: all},
		{
			name: "exact allowlists",
			global: "\tservers {\n\t\texpected_underscore_headers " + names(underscore) +
				"\n\t\texpected_dot_headers " + names(dotOnly) + "\n\t}",
			lines:   append(append([]string{}, underscore...), dotOnly...),
			control: append(append([]string{}, underscore...), dotOnly...),
		},
		{
			name: "glob allowlists",
			global: "\tservers {\n\t\texpected_underscore_headers x_session* X_SESSION* x-session_* X-Session_*" +
				"\n\t\texpected_dot_headers x.session* X-Session.*\n\t}",
			lines: append(
				advCanonicalOnce(all, func(n string) bool { return hasSep("_")(n) && !hasSep(".")(n) }),
				advCanonicalOnce(all, func(n string) bool { return hasSep(".")(n) && !hasSep("_")(n) })...),
			control: append(
				advCanonicalOnce(all, func(n string) bool {
					l := strings.ToLower(n)
					return !strings.Contains(l, ".") && (strings.HasPrefix(l, "x_session") || strings.HasPrefix(l, "x-session_"))
				}),
				advCanonicalOnce(all, func(n string) bool {
					l := strings.ToLower(n)
					return !strings.Contains(l, "_") && (strings.HasPrefix(l, "x.session") || strings.HasPrefix(l, "x-session."))
				})...),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Global: tc.global, Site: advSessionSite, Session: advSession})

			if tc.control != nil {
				// Positive control: without the module, Caddy passes these
				// spellings, so on the session route only the module can
				// have removed them.
				c.Do(t, Req{Path: "/nosession/x", Header: tc.control})
				rec := c.Up.Last(t)
				got := 0
				for k, vs := range rec.Header {
					if sessionName(k) && len(vs) == 1 && strings.HasPrefix(vs[0], "spoof-") {
						got++
					}
				}
				if got != len(tc.control) {
					t.Fatalf("harness: Caddy passed %d of %d allowlisted spellings to a route without the module; the test would prove nothing\n%v",
						got, len(tc.control), rec.Header)
				}
			}

			b := c.NewBrowser()
			// The seeding request itself carries spoofed headers.
			b.Get(t, "/seed", append([]string{`X-Test-Resp: X-Session-Set: {"countryCode":"CA","customer_id":"c_1"}`}, tc.lines...)...)
			rec := c.Up.Last(t)
			noSpoofValues(t, rec)
			wantOnly(t, rec, map[string]string{"X-Session-Signature": rec.Header.Get("X-Session-Signature")})
			want := map[string]string{"X-Session-Countrycode": "CA", "X-Session-Customer-Id": "c_1"}

			for _, q := range []Req{
				{Method: "GET", Path: "/page"},
				{Method: "HEAD", Path: "/page"},
				{Method: "OPTIONS", Path: "/page"},
				{Method: "DELETE", Path: "/page"},
				{Method: "POST", Path: "/form", Body: "a=1", CT: "application/x-www-form-urlencoded"},
				{Method: "PUT", Path: "/json", Body: `{"a":1}`, CT: "application/json"},
				{Method: "GET", Path: "/__session/../page"},
			} {
				for _, withSession := range []bool{true, false} {
					q := q
					q.Header = tc.lines
					if withSession {
						q.Cookie = b.Jar.Header()
					} else {
						q.Cookie = "__session=forged; other=1"
					}
					before := c.Up.Count()
					r := c.Do(t, q)
					if c.Up.Count() != before+1 {
						t.Fatalf("%s %s did not reach the upstream:\n%s", q.Method, q.Path, r)
					}
					noSessionResponseHeaders(t, r)
					rec := c.Up.Last(t)
					noSpoofValues(t, rec)
					w := map[string]string{}
					if withSession {
						for k, v := range want {
							w[k] = v
						}
					}
					sig := rec.Header.Get("X-Session-Signature")
					if !strings.HasPrefix(sig, "t=") {
						t.Fatalf("%s %s: the module's signature is missing (%q)", q.Method, q.Path, sig)
					}
					w["X-Session-Signature"] = sig
					wantSessionHeaders(t, rec, w)
				}
			}

			// The API, with the same headers: answered by the module, the
			// session unchanged by them.
			r := b.Do(t, Req{Method: "POST", Path: "/__session", Body: `{"theme":"ok"}`, CT: "application/json", Header: tc.lines})
			wantObject(t, r, http.StatusOK, `{"countryCode":"CA","customer_id":"c_1","theme":"ok"}`)
			r = b.Do(t, Req{Method: "GET", Path: "/__session", Header: tc.lines})
			wantObject(t, r, http.StatusOK, `{"countryCode":"CA","customer_id":"c_1","theme":"ok"}`)
		})
	}
}

// TestAdversarialSpoofRaw sends spellings Go's client would rewrite, on a
// raw connection: repeated lines of one name in different cases, a name
// repeated after other headers, and an obs-fold continuation line hiding a
// reserved header.
func TestAdversarialSpoofRaw(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA})
	b := c.NewBrowser()
	b.Seed(t, `{"countryCode":"CA"}`)
	want := map[string]string{"X-Session-Countrycode": "CA"}

	for i, block := range []string{
		"X-Session-Countrycode: spoof-a\r\nx-session-countrycode: spoof-b\r\nX-SESSION-COUNTRYCODE: spoof-c\r\n",
		"X-Session-Countrycode: spoof-a\r\nAccept: */*\r\nX-Session-Countrycode: spoof-b\r\n",
		"X-Session-Countrycode:spoof-nospace\r\nX-Session-Role:\tspoof-tab\r\n",
		"X-Session-Role: spoof-empty-next\r\nX-Session-Customerid:\r\n",
		"X-Other: a\r\n X-Session-Role: folded\r\n",
	} {
		for _, cookie := range []string{"Cookie: " + b.Jar.Header() + "\r\n", ""} {
			before := c.Up.Count()
			r := c.Raw(t, fmt.Sprintf("GET /raw/%d HTTP/1.1\r\nHost: %s\r\n%s%sConnection: close\r\n\r\n", i, c.Host, cookie, block))
			if c.Up.Count() == before {
				// Refusing the request outright (400) is fine too.
				if r.Status < 400 || r.Status >= 500 {
					t.Errorf("block %d: not forwarded, status %d", i, r.Status)
				}
				continue
			}
			rec := c.Up.Last(t)
			noSpoofValues(t, rec)
			if cookie != "" {
				wantSessionHeaders(t, rec, want)
			} else {
				noSessionHeaders(t, rec)
			}
		}
	}
}

// advTrailerRequest is a chunked POST whose trailer section carries
// trailers, declared or not.
func advTrailerRequest(host, path, cookie, declared string, trailers []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\n", path, host)
	if cookie != "" {
		fmt.Fprintf(&b, "Cookie: %s\r\n", cookie)
	}
	if declared != "" {
		fmt.Fprintf(&b, "Trailer: %s\r\n", declared)
	}
	b.WriteString("Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
	b.WriteString("5\r\nhello\r\n6\r\n world\r\n0\r\n")
	for _, tr := range trailers {
		b.WriteString(tr + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// TestAdversarialTrailers: reserved names in request trailers never reach
// the upstream, whether declared in Trailer or not, in any spelling (Caddy
// does not filter '_' and '.' in trailers), over HTTP/1.1 and HTTP/2 (S20).
func TestAdversarialTrailers(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA})
	b := c.NewBrowser()
	b.Seed(t, `{"countryCode":"CA"}`)
	want := map[string]string{"X-Session-Countrycode": "CA"}

	spoofs := []string{
		"X-Session-Countrycode: spoof-t1",
		"x-session-countrycode: spoof-t2",
		"X_Session_Countrycode: spoof-t3",
		"X.Session.Role: spoof-t4",
		"X-Session-Set: spoof-t5",
		"X-SESSION-ROLE: spoof-t6",
		"x_session: spoof-t7",
	}
	var spoofNames []string
	for _, s := range spoofs {
		n, _, _ := strings.Cut(s, ":")
		spoofNames = append(spoofNames, n)
	}
	ordinary := "X-Other-Trailer: ok"

	for _, tc := range []struct {
		name, declared string
	}{
		{"all declared", strings.Join(spoofNames, ", ") + ", X-Other-Trailer"},
		{"only reserved declared", strings.Join(spoofNames, ", ")},
		{"only an ordinary one declared", "X-Other-Trailer"},
		{"none declared", ""},
	} {
		for _, withSession := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s session=%v", tc.name, withSession), func(t *testing.T) {
				cookie := ""
				if withSession {
					cookie = b.Jar.Header()
				}
				before := c.Up.Count()
				r := c.Raw(t, advTrailerRequest(c.Host, "/upload", cookie, tc.declared, append(append([]string{}, spoofs...), ordinary)))
				if c.Up.Count() == before {
					if r.Status >= 400 && r.Status < 500 {
						return // refused outright: nothing reached the upstream
					}
					t.Fatalf("not forwarded:\n%s", r)
				}
				rec := c.Up.Last(t)
				if string(rec.Body) != "hello world" {
					t.Fatalf("upstream body %q", rec.Body)
				}
				noSpoofValues(t, rec)
				for k := range rec.Trailer {
					if sessionName(k) && len(rec.Trailer[k]) > 0 {
						t.Errorf("upstream got trailer %s: %q", k, rec.Trailer[k])
					}
				}
				if withSession {
					wantSessionHeaders(t, rec, want)
				} else {
					noSessionHeaders(t, rec)
				}
			})
		}
	}

	// The API path with trailers: answered by the module.
	before := c.Up.Count()
	body := `{"x":1}`
	raw := fmt.Sprintf("POST /__session HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nTrailer: X-Session-Set\r\n"+
		"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n%x\r\n%s\r\n0\r\nX-Session-Set: spoof\r\n\r\n", c.Host, len(body), body)
	if r := c.Raw(t, raw); r.Status != http.StatusForbidden {
		t.Errorf("API POST of a key that is not client-writable, with trailers: status %d, want 403", r.Status)
	}
	if c.Up.Count() != before {
		t.Errorf("the API request reached the upstream")
	}
}

// TestAdversarialTrailersHTTP2: the same over HTTP/2, where trailers come
// in a HEADERS frame after the body.
func TestAdversarialTrailersHTTP2(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{TLS: true, Session: "\tsecret " + secretA + "\n\tclient_writable theme"})
	h2 := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
	}, Timeout: 10 * time.Second}
	defer h2.CloseIdleConnections()

	do := func(cookie string, declared bool) *http.Response {
		t.Helper()
		var resp *http.Response
		for i := 0; ; i++ {
			pr, pw := io.Pipe()
			req, _ := http.NewRequest("POST", c.Base+"/upload", pr)
			req.Header.Set("Content-Type", "text/plain")
			if cookie != "" {
				req.Header.Set("Cookie", cookie)
			}
			req.Header.Set("X-Session-Theme", "spoof-h")
			names := []string{"X-Session-Theme", "X-Session-Role", "X_session_role", "X.session.role", "X-Other-Trailer"}
			req.Trailer = http.Header{}
			if declared {
				for _, n := range names {
					req.Trailer[n] = nil
				}
			}
			go func() {
				_, _ = io.WriteString(pw, "hello world")
				for _, n := range names {
					v := "spoof-" + n
					if n == "X-Other-Trailer" {
						v = "ok"
					}
					req.Trailer[n] = []string{v}
				}
				pw.Close()
			}()
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

	// The session, created over HTTP/2 as well (the certificate may take a
	// moment after the port opens).
	jar := NewJar()
	for i := 0; ; i++ {
		r, err := c.DoErr(Req{Method: "POST", Path: "/__session", Body: `{"theme":"dark"}`, CT: "application/json"})
		if err == nil {
			jar.Update(t, r)
			break
		}
		if i == 50 {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	for _, declared := range []bool{true, false} {
		for _, cookie := range []string{jar.Header(), ""} {
			before := c.Up.Count()
			if r := do(cookie, declared); r.StatusCode != http.StatusOK {
				t.Fatalf("status %d", r.StatusCode)
			}
			if c.Up.Count() != before+1 {
				t.Fatal("the request did not reach the upstream")
			}
			rec := c.Up.Last(t)
			if string(rec.Body) != "hello world" {
				t.Fatalf("body %q", rec.Body)
			}
			noSpoofValues(t, rec)
			if cookie != "" {
				wantSessionHeaders(t, rec, map[string]string{"X-Session-Theme": "dark"})
			} else {
				noSessionHeaders(t, rec)
			}
		}
	}
}

// TestAdversarialConnectionTokens: no Connection token, in any spelling,
// count or position, makes the proxy drop a header the module set (S21),
// on plain requests and on WebSocket upgrades.
func TestAdversarialConnectionTokens(t *testing.T) {
	t.Parallel()
	up := newTunnelUpstream(t)
	c := StartCaddy(t, CaddyOpts{
		Session: "\tsecret " + secretA,
		Site:    "session {\n{{SESSION}}\n}\nreverse_proxy " + up.Addr,
	})
	b := c.NewBrowser()
	r := b.Get(t, "/seed", `X-Test-Resp: X-Session-Set: {"countryCode":"CA","theme":"dark"}`)
	if r.Status != http.StatusOK {
		t.Fatalf("seed:\n%s", r)
	}
	want := map[string]string{"X-Session-Countrycode": "CA", "X-Session-Theme": "dark"}

	tokens := []string{
		"X-Session-Countrycode",
		"x-session-countrycode, X-Session-Theme",
		"keep-alive, X-SESSION-COUNTRYCODE ,\tX-Session-Theme\t",
		"X_Session_Countrycode, x.session.theme",
		",,X-Session-Countrycode,,",
		"X-Session-Countrycode;q=1, X-Session-Theme=1",
		"close, X-Session-Countrycode",
		"X-Session",
		"Cookie, X-Session-Theme",
	}
	for i, tok := range tokens {
		t.Run(fmt.Sprintf("%d %s", i, tok), func(t *testing.T) {
			r := c.Raw(t, fmt.Sprintf("GET /conn/%d HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nConnection: %s\r\n\r\n", i, c.Host, b.Jar.Header(), tok))
			if r.Status != http.StatusOK {
				t.Fatalf("status %d", r.Status)
			}
			wantSessionHeaders(t, up.Last(t), want)
		})
	}
	// Several Connection lines, and Connection naming an injected header
	// next to a client copy of it.
	r = c.Raw(t, "GET /conn/multi HTTP/1.1\r\nHost: "+c.Host+"\r\nCookie: "+b.Jar.Header()+
		"\r\nConnection: X-Session-Countrycode\r\nConnection: X-Session-Theme\r\nConnection: close\r\nX-Session-Theme: spoof\r\n\r\n")
	if r.Status != http.StatusOK {
		t.Fatalf("status %d", r.Status)
	}
	wantSessionHeaders(t, up.Last(t), want)

	// A WebSocket upgrade naming the session headers in Connection.
	conn, resp := wsDial(t, c, "/ws", "Cookie: "+b.Jar.Header()+"\r\nConnection: Upgrade, X-Session-Countrycode, X-Session-Theme\r\n")
	conn.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("websocket upgrade: status %d", resp.StatusCode)
	}
	wantSessionHeaders(t, up.Last(t), want)
}

// TestAdversarialUpgrade: an Upgrade other than websocket (h2c above all)
// never reaches the upstream, so no tunnel can open past the module; a
// WebSocket upgrade still works, carries the session and none of the
// client's copies, and the 101 response carries no X-Session-* header
// (S22, S18, S27).
func TestAdversarialUpgrade(t *testing.T) {
	t.Parallel()
	up := newTunnelUpstream(t)
	c := StartCaddy(t, CaddyOpts{
		Session: "\tsecret " + secretA + "\n\tclient_readable *",
		Site:    "session {\n{{SESSION}}\n}\nreverse_proxy " + up.Addr,
	})
	b := c.NewBrowser()
	if r := b.Get(t, "/seed", `X-Test-Resp: X-Session-Set: {"countryCode":"CA"}`); r.Status != http.StatusOK {
		t.Fatalf("seed:\n%s", r)
	}
	want := map[string]string{"X-Session-Countrycode": "CA"}
	spoof := "X-Session-Countrycode: spoof-u1\r\nX-Session-Role: spoof-u2\r\n"

	for _, tc := range []struct{ name, header string }{
		{"h2c", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"},
		{"H2C uppercase", "Connection: upgrade, http2-settings\r\nUpgrade: H2C\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"},
		{"h2c then websocket", "Connection: Upgrade\r\nUpgrade: h2c, websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"},
		{"websocket then h2c", "Connection: Upgrade\r\nUpgrade: websocket, h2c\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"},
		{"two Upgrade lines", "Connection: Upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"},
		{"TLS/1.0", "Connection: Upgrade\r\nUpgrade: TLS/1.0\r\n"},
		{"custom protocol", "Connection: Upgrade\r\nUpgrade: tunnel\r\n"},
		{"h2c without Connection", "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"},
	} {
		for _, withSession := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s session=%v", tc.name, withSession), func(t *testing.T) {
				cookie := ""
				if withSession {
					cookie = "Cookie: " + b.Jar.Header() + "\r\n"
				}
				conn, err := net.DialTimeout("tcp", c.Host, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				before := up.Count()
				fmt.Fprintf(conn, "GET /up HTTP/1.1\r\nHost: %s\r\n%s%s%s\r\n", c.Host, cookie, tc.header, spoof)
				br := bufio.NewReader(conn)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("reading the response: %v", err)
				}
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
				resp.Body.Close()
				if resp.StatusCode == http.StatusSwitchingProtocols {
					t.Fatalf("%s: a tunnel opened (101) past the module", tc.name)
				}
				if strings.Contains(string(body), "TUNNEL") {
					t.Fatalf("%s: the upstream's tunnel bytes reached the client", tc.name)
				}
				if up.Count() != before+1 {
					t.Fatalf("%s: upstream got %d requests, want 1 (status %d)", tc.name, up.Count()-before, resp.StatusCode)
				}
				rec := up.Last(t)
				if v := rec.Header.Values("Upgrade"); len(v) > 0 {
					t.Errorf("%s: upstream got Upgrade %q", tc.name, v)
				}
				if v := rec.Header.Values("Http2-Settings"); len(v) > 0 {
					t.Errorf("%s: upstream got HTTP2-Settings", tc.name)
				}
				noSpoofValues(t, rec)
				if withSession {
					wantSessionHeaders(t, rec, want)
				} else {
					noSessionHeaders(t, rec)
				}
				// The HTTP/2 client preface on the same connection (h2c
				// with prior knowledge): Go's HTTP/1 server hands it to the
				// handlers as a request "PRI *", which the module sees like
				// any other; what reaches the upstream is a plain HTTP/1.1
				// request with the frames as an opaque body, never an
				// HTTP/2 connection.
				n := up.Count()
				_, _ = io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
				_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				rest, _ := io.ReadAll(br)
				if strings.Contains(string(rest), " 101 ") || strings.Contains(string(rest), "TUNNEL") {
					t.Errorf("%s: the preface opened a tunnel: %q", tc.name, rest)
				}
				for _, rec := range up.Since(n) {
					if rec.Proto != "HTTP/1.1" || rec.Header.Get("Upgrade") != "" {
						t.Errorf("%s: the preface reached the upstream as %s %s %s, Upgrade %q", tc.name, rec.Method, rec.RequestURI, rec.Proto, rec.Header.Get("Upgrade"))
					}
					noSessionHeaders(t, &rec.Recorded)
				}
			})
		}
	}

	t.Run("websocket works", func(t *testing.T) {
		for _, withSession := range []bool{true, false} {
			cookie := ""
			if withSession {
				cookie = "Cookie: " + b.Jar.Header() + "\r\n"
			}
			conn, resp := wsDial(t, c, "/ws", cookie+spoof+"X-Session-Theme: spoof-ws\r\n")
			if resp.StatusCode != http.StatusSwitchingProtocols {
				conn.Close()
				t.Fatalf("websocket upgrade: status %d", resp.StatusCode)
			}
			for k, v := range resp.Header {
				if sessionName(k) {
					t.Errorf("the 101 response carries %s: %q", k, v)
				}
			}
			// Bytes flow both ways through the tunnel.
			msg := "ping-" + fmt.Sprint(withSession)
			if _, err := io.WriteString(conn, msg); err != nil {
				t.Fatal(err)
			}
			var got []byte
			buf := make([]byte, 64)
			for strings.ReplaceAll(string(got), "echo:", "") != msg {
				n, err := conn.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					t.Fatalf("websocket echo: %q, %v", got, err)
				}
			}
			conn.Close()
			rec := up.Last(t)
			if !strings.EqualFold(rec.Header.Get("Upgrade"), "websocket") {
				t.Errorf("upstream got Upgrade %q, want websocket", rec.Header.Get("Upgrade"))
			}
			noSpoofValues(t, rec)
			if withSession {
				wantSessionHeaders(t, rec, want)
			} else {
				noSessionHeaders(t, rec)
			}
		}
	})

	t.Run("CONNECT opens no tunnel", func(t *testing.T) {
		// Caddy proxies a CONNECT as an ordinary request; what the client
		// sends next on the connection is a new request, which goes
		// through the module like any other.
		conn, err := net.DialTimeout("tcp", c.Host, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\n%s\r\n", up.Addr, c.Host, b.Jar.Header(), spoof)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		before := up.Count()
		fmt.Fprintf(conn, "GET /smuggled HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s\r\n", c.Host, spoof)
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = io.ReadAll(br)
		for _, rec := range up.Since(0) {
			noSpoofValues(t, &rec.Recorded)
		}
		if up.Count() == before+1 {
			noSessionHeaders(t, up.Last(t))
		}
	})

	t.Run("upstream switching to another protocol", func(t *testing.T) {
		// A websocket request the upstream answers with 101 Upgrade: h2c:
		// Caddy refuses to open that tunnel.
		conn, resp := wsDial(t, c, "/ws", "Cookie: "+b.Jar.Header()+"\r\nX-Tunnel-Answer: h2c\r\n")
		defer conn.Close()
		if resp.StatusCode == http.StatusSwitchingProtocols {
			t.Fatalf("a 101 to h2c reached the client")
		}
	})
}

// wsDial opens a WebSocket handshake to path through Caddy with extra
// header lines, and returns the connection and the response (the
// connection is the tunnel after a 101).
func wsDial(t testing.TB, c *Caddy, path, extra string) (net.Conn, *http.Response) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", c.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	conn2 := extra
	if !strings.Contains(strings.ToLower(extra), "connection:") {
		conn2 += "Connection: Upgrade\r\n"
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n%s\r\n", path, c.Host, conn2)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		t.Fatalf("websocket handshake: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		return conn, resp
	}
	return &bufConn{Conn: conn, r: br}, resp
}

// bufConn reads through the bufio.Reader that read the handshake.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// tunnelUpstream is a recording upstream that answers upgrades itself, the
// way an h2c- or WebSocket-capable backend would: a 101 and then raw bytes
// (an echo). Upgrades it never sees can never become tunnels.
type tunnelUpstream struct {
	Addr string
	mu   sync.Mutex
	reqs []*tunnelRecord
}

// tunnelRecord is a request the tunnel upstream received, with its
// protocol version.
type tunnelRecord struct {
	Recorded
	Proto string
}

func newTunnelUpstream(t testing.TB) *tunnelUpstream {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &tunnelUpstream{Addr: l.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(u.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return u
}

func (u *tunnelUpstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := &tunnelRecord{Recorded: Recorded{Method: r.Method, Path: r.URL.Path, RequestURI: r.RequestURI, Host: r.Host,
		Header: r.Header.Clone(), Trailer: r.Trailer.Clone(), Body: body}, Proto: r.Proto}
	u.mu.Lock()
	u.reqs = append(u.reqs, rec)
	u.mu.Unlock()

	for _, line := range r.Header.Values("X-Test-Resp") {
		if name, value, ok := strings.Cut(line, ":"); ok {
			w.Header().Add(strings.TrimSpace(name), strings.TrimSpace(value))
		}
	}
	proto := strings.TrimSpace(r.Header.Get("Upgrade"))
	if proto == "" {
		w.Header().Set("X-Upstream", "1")
		fmt.Fprintf(w, "upstream %s %s\n", r.Method, r.URL.Path)
		return
	}
	if a := r.Header.Get("X-Tunnel-Answer"); a != "" {
		proto = a
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	accept := ""
	if k := r.Header.Get("Sec-WebSocket-Key"); k != "" {
		sum := sha1.Sum([]byte(k + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		accept = "Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n"
	}
	// The 101 carries reserved headers too: the client must not see them.
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n%s"+
		"X-Session-Leak: spoof-101\r\nX-Session-Set: {\"upgraded\":true}\r\n\r\n", proto, accept)
	if strings.EqualFold(proto, "h2c") {
		_, _ = brw.WriteString("TUNNEL-OPEN")
	}
	_ = brw.Flush()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	for {
		n, err := brw.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(append([]byte("echo:"), buf[:n]...)); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (u *tunnelUpstream) Count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func (u *tunnelUpstream) Last(t testing.TB) *Recorded {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("the upstream received no request")
	}
	return &u.reqs[len(u.reqs)-1].Recorded
}

// Since returns the requests received after the first n.
func (u *tunnelUpstream) Since(n int) []*tunnelRecord {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*tunnelRecord(nil), u.reqs[n:]...)
}

// TestAdversarialTrustedProxies: secure auto believes X-Forwarded-Proto only
// from Caddy's trusted_proxies (S24); the cross-origin check compares Origin
// with the Host the request carries, never with X-Forwarded-Host, trusted
// proxy or not.
func TestAdversarialTrustedProxies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, global string
		trusted      bool
	}{
		{"no trusted proxies", "", false},
		{"another range trusted", "\tservers {\n\t\ttrusted_proxies static 10.0.0.0/8\n\t}", false},
		{"the client trusted", "\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Global: tc.global, Session: "\tsecret " + secretA + "\n\tclient_writable theme"})
			for _, fwd := range [][]string{
				{"X-Forwarded-Proto: https"},
				{"X-Forwarded-Proto: HTTPS"},
				{"Forwarded: proto=https"},
				{"X-Forwarded-Ssl: on"},
				{"X-Forwarded-Proto: http"},
				nil,
			} {
				r := c.Do(t, Req{Method: "POST", Path: "/__session", Body: `{"theme":"x"}`, CT: "application/json", Header: fwd})
				lines := setCookieFor(r, "__session")
				if len(lines) != 1 {
					t.Fatalf("%q: Set-Cookie %q", fwd, r.SetCookies())
				}
				_, secure := attrs(lines[0])["secure"]
				want := tc.trusted && len(fwd) == 1 && strings.EqualFold(fwd[0], "X-Forwarded-Proto: https")
				if secure != want {
					t.Errorf("%q: Secure %v, want %v", fwd, secure, want)
				}
			}
			// Origin is checked against Host, whatever X-Forwarded-Host says.
			r := c.Do(t, Req{Method: "POST", Path: "/__session", Body: `{"theme":"x"}`, CT: "application/json",
				Header: []string{"Origin: https://evil.example", "X-Forwarded-Host: evil.example", "X-Forwarded-Proto: https"}})
			wantError(t, r, http.StatusForbidden)
			r = c.Do(t, Req{Method: "POST", Path: "/__session", Body: `{"theme":"x"}`, CT: "application/json",
				Header: []string{"Origin: " + c.Base, "X-Forwarded-Host: evil.example"}})
			if r.Status != http.StatusOK {
				t.Errorf("same-origin write with a foreign X-Forwarded-Host: status %d", r.Status)
			}
		})
	}
}
