package integration

// The adversarial suite, part 2: the session API. Path spellings sent as
// raw request lines (Go's client would clean them), every method, the
// cross-origin matrix, content types, oversized, chunked, deep, invalid
// and duplicate-keyed bodies.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// advRaw sends one request with a raw request line and reads the answer.
func advRaw(t testing.TB, c *Caddy, method, target string, header []string, body string) *Resp {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, c.Host)
	for _, h := range header {
		b.WriteString(h + "\r\n")
	}
	if body != "" || method == "POST" || method == "PATCH" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	return c.Raw(t, b.String())
}

// advAPIPaths are spellings of /__session that an upstream reading the
// path (decoding, cleaning dot segments and repeated slashes, dropping
// ;params) takes for the API path. The module answers each as the API.
var advAPIPaths = []string{
	"/__session",
	"/__session/",
	"//__session",
	"///__session//",
	"/%5F_session",
	"/%5f%5fsession",
	"/_%5Fs%65ssion",
	"/__session%2F",
	"/x/../__session",
	"/x/y/../../__session",
	"/./__session",
	"/__session/.",
	"/__session/x/..",
	"/%2e/__session",
	"/x/%2e%2e/__session",
	"/__session;x",
	"/__session;jsessionid=1",
	"/__session/;x",
	"/__session%3Bx",
	"/__session?x=1",
	"/__session?__session",
	"/__session;x?y=1",
	"/__session;x/y",
	"http://HOST/__session",
}

// advAPISubPaths are spellings of paths under the API path: the module
// answers 404, they never reach the upstream.
var advAPISubPaths = []string{
	"/__session/x",
	"/__session/x/",
	"//__session//x",
	"/%5F_session/x",
	"/__session%2Fx",
	"/__session/..%2F__session/x",
}

// TestAdversarialAPIPaths: every spelling of the API path is handled by
// the module with the same checks as /__session (S13): the same statuses
// for reads, writes, cross-site writes, forbidden keys, wrong content
// types and other methods, and none of them reaches the upstream.
func TestAdversarialAPIPaths(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme\n\tclient_readable *"})
	b := c.NewBrowser()
	b.Seed(t, `{"customerId":"c_1"}`)
	wantObject(t, b.API(t, "POST", `{"theme":"v0"}`), http.StatusOK, `{"customerId":"c_1","theme":"v0"}`)
	cookie := "Cookie: " + b.Jar.Header()
	ctJSON := "Content-Type: application/json"

	type probe struct {
		name   string
		method string
		header []string
		body   string
	}
	probes := []probe{
		{"GET", "GET", []string{cookie}, ""},
		{"HEAD", "HEAD", []string{cookie}, ""},
		{"OPTIONS", "OPTIONS", []string{cookie, "Origin: http://evil.example", "Access-Control-Request-Method: POST"}, ""},
		{"PUT", "PUT", []string{cookie, ctJSON}, `{"theme":"put"}`},
		{"cross-site POST", "POST", []string{cookie, ctJSON, "Sec-Fetch-Site: cross-site"}, `{"theme":"evil"}`},
		{"foreign Origin PATCH", "PATCH", []string{cookie, ctJSON, "Origin: http://evil.example"}, `{"theme":"evil"}`},
		{"cross-site DELETE", "DELETE", []string{cookie, "Sec-Fetch-Site: cross-site"}, ""},
		{"trusted key", "POST", []string{cookie, ctJSON}, `{"customerId":"evil"}`},
		{"text/plain", "POST", []string{cookie, "Content-Type: text/plain"}, `{"theme":"evil"}`},
		{"form", "POST", []string{cookie, "Content-Type: application/x-www-form-urlencoded"}, `theme=evil`},
		{"bad JSON", "POST", []string{cookie, ctJSON}, `{"theme":`},
	}
	// The reference answers, from the canonical path.
	want := map[string]int{}
	for _, p := range probes {
		r := advRaw(t, c, p.method, "/__session", p.header, p.body)
		want[p.name] = r.Status
	}
	for name, status := range map[string]int{"GET": 200, "HEAD": 200, "OPTIONS": 405, "PUT": 405,
		"cross-site POST": 403, "foreign Origin PATCH": 403, "cross-site DELETE": 403, "trusted key": 403,
		"text/plain": 415, "form": 415, "bad JSON": 400} {
		if want[name] != status {
			t.Fatalf("/__session %s: status %d, want %d", name, want[name], status)
		}
	}

	for _, target := range advAPIPaths {
		target = strings.Replace(target, "HOST", c.Host, 1)
		t.Run(target, func(t *testing.T) {
			before := c.Up.Count()
			for _, p := range probes {
				r := advRaw(t, c, p.method, target, p.header, p.body)
				if r.Status != want[p.name] {
					t.Errorf("%s %s: status %d, want %d as for /__session:\n%s", p.method, target, r.Status, want[p.name], r)
				}
				if r.Header.Get("X-Upstream") != "" {
					t.Errorf("%s %s was answered by the upstream", p.method, target)
				}
				for _, line := range r.SetCookies() {
					if strings.HasPrefix(line, "__session") {
						t.Errorf("%s %s set the session cookie: %.80q", p.method, target, line)
					}
				}
			}
			// A permitted write through this spelling works like one
			// through /__session.
			r := advRaw(t, c, "POST", target, []string{cookie, ctJSON, "Sec-Fetch-Site: same-origin"}, `{"theme":"v0"}`)
			wantObject(t, r, http.StatusOK, `{"customerId":"c_1","theme":"v0"}`)
			if n := c.Up.Count(); n != before {
				t.Errorf("%s reached the upstream (%d requests)", target, n-before)
			}
		})
	}
	for _, target := range advAPISubPaths {
		t.Run(target, func(t *testing.T) {
			before := c.Up.Count()
			for _, p := range probes {
				r := advRaw(t, c, p.method, target, p.header, p.body)
				if r.Status != http.StatusNotFound {
					t.Errorf("%s %s: status %d, want 404:\n%s", p.method, target, r.Status, r)
				}
				noSetCookie(t, r)
			}
			if n := c.Up.Count(); n != before {
				t.Errorf("%s reached the upstream", target)
			}
		})
	}
	// Nothing changed the session.
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"customerId":"c_1","theme":"v0"}`)

	// Paths that only look alike are ordinary paths: they go to the
	// upstream (which reads them as other paths), with the session.
	for _, target := range []string{"/__sessions", "/__session_x", "/x__session", "/__SESSION", "/__session/../page", "/%2F__session%2F..%2Fpage"} {
		before := c.Up.Count()
		r := advRaw(t, c, "GET", target, []string{cookie}, "")
		if c.Up.Count() != before+1 || r.Header.Get("X-Upstream") != "1" {
			t.Errorf("GET %s: want the upstream, got:\n%s", target, r)
			continue
		}
		wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Customerid": "c_1", "X-Session-Theme": "v0"})
	}
}

// TestAdversarialAPIPathCustom: the same for a multi-segment api_path.
func TestAdversarialAPIPathCustom(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme\n\tapi_path /api/session"})
	for _, target := range []string{"/api/session", "/api//session", "//api/session/", "/api/./session", "/x/../api/session",
		"/api/%73ession", "/%61pi/session", "/api/session;x", "/api/session?x", "/api/x/../session"} {
		before := c.Up.Count()
		r := advRaw(t, c, "POST", target, []string{"Content-Type: application/json", "Sec-Fetch-Site: cross-site"}, `{"theme":"x"}`)
		if r.Status != http.StatusForbidden {
			t.Errorf("cross-site POST %s: status %d, want 403", target, r.Status)
		}
		r = advRaw(t, c, "POST", target, []string{"Content-Type: application/json"}, `{"theme":"x"}`)
		wantObject(t, r, http.StatusOK, `{"theme":"x"}`)
		if c.Up.Count() != before {
			t.Errorf("%s reached the upstream", target)
		}
	}
	for _, target := range []string{"/api", "/api/sessions", "/session", "/api/session/../other"} {
		before := c.Up.Count()
		advRaw(t, c, "GET", target, nil, "")
		if c.Up.Count() != before+1 {
			t.Errorf("%s should reach the upstream", target)
		}
	}
}

// TestAdversarialAPIMethods: HEAD and OPTIONS (S14). HEAD is GET without a
// body; OPTIONS is 405 with Allow and no CORS grant, preflight or not; no
// method but GET/HEAD/POST/PATCH/DELETE is accepted, and none reaches the
// upstream.
func TestAdversarialAPIMethods(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: apiSession})
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)

	get := b.API(t, "GET", "")
	head := b.Do(t, Req{Method: "HEAD", Path: "/__session"})
	if head.Status != http.StatusOK || len(head.Body) != 0 {
		t.Fatalf("HEAD:\n%s", head)
	}
	for _, h := range []string{"Content-Type", "Cache-Control", "X-Content-Type-Options", "Content-Length"} {
		if head.Header.Get(h) != get.Header.Get(h) {
			t.Errorf("HEAD %s %q, GET has %q", h, head.Header.Get(h), get.Header.Get(h))
		}
	}
	for _, m := range []string{"OPTIONS", "PUT", "TRACE", "PROPFIND", "MKCOL", "LOCK", "SEARCH", "QUERY", "get", "Post", "FOO"} {
		for _, h := range [][]string{nil, {"Origin: http://evil.example", "Access-Control-Request-Method: DELETE", "Access-Control-Request-Headers: content-type"}} {
			before := c.Up.Count()
			r := advRaw(t, c, m, "/__session", append([]string{"Cookie: " + b.Jar.Header(), "Content-Type: application/json"}, h...), `{"theme":"x"}`)
			if r.Status != http.StatusMethodNotAllowed {
				t.Errorf("%s /__session: status %d, want 405:\n%s", m, r.Status, r)
				continue
			}
			wantError(t, r, http.StatusMethodNotAllowed)
			if r.Header.Get("Allow") != "GET, HEAD, POST, PATCH, DELETE" {
				t.Errorf("%s: Allow %q", m, r.Header.Get("Allow"))
			}
			for k := range r.Header {
				if strings.HasPrefix(strings.ToLower(k), "access-control-") {
					t.Errorf("%s: CORS header %s", m, k)
				}
			}
			noSetCookie(t, r)
			if c.Up.Count() != before {
				t.Errorf("%s /__session reached the upstream", m)
			}
		}
	}
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"dark"}`)
}

// TestAdversarialCrossOrigin: the cross-origin matrix for every writing
// method (S11): Sec-Fetch-Site decides when present; else Origin against
// Host (scheme aside, as net/http.CrossOriginProtection does); trusted
// origins match exactly; safe methods always pass and change nothing.
func TestAdversarialCrossOrigin(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: `	secret ` + secretA + `
	client_writable theme
	trusted_origins http://shop.example https://pay.example:8443`})
	port := c.HTTPPort
	type tc struct {
		header []string
		ok     bool
	}
	cases := []tc{
		{[]string{"Sec-Fetch-Site: same-origin"}, true},
		{[]string{"Sec-Fetch-Site: none"}, true},
		{[]string{"Sec-Fetch-Site: same-site"}, false},
		{[]string{"Sec-Fetch-Site: cross-site"}, false},
		{[]string{"Sec-Fetch-Site: CROSS-SITE"}, false},
		{[]string{"Sec-Fetch-Site: bogus"}, false},
		{[]string{"Sec-Fetch-Site: cross-site", "Origin: " + c.Base}, false},
		{[]string{"Sec-Fetch-Site: same-site", "Origin: " + c.Base}, false},
		{[]string{"Sec-Fetch-Site: same-origin", "Origin: http://evil.example"}, true}, // Fetch Metadata wins
		{nil, true}, // not a browser
		{[]string{"Origin: " + c.Base}, true},
		{[]string{"Origin: https://" + c.Host}, true}, // scheme is not compared without Fetch Metadata (Go's documented choice)
		{[]string{fmt.Sprintf("Origin: http://127.0.0.1:%d", port+1)}, false},
		{[]string{fmt.Sprintf("Origin: http://localhost:%d", port)}, false},
		{[]string{"Origin: http://127.0.0.1"}, false},
		{[]string{"Origin: http://evil.example"}, false},
		{[]string{"Origin: null"}, false},
		{[]string{"Origin: " + c.Base + ".evil.example"}, false},
		{[]string{"Origin: http://evil.example", "X-Forwarded-Host: evil.example"}, false},
		{[]string{"Origin: http://evil.example", "Sec-Fetch-Site: "}, false},
		{[]string{"Origin: http://shop.example"}, true},
		{[]string{"Origin: http://shop.example", "Sec-Fetch-Site: cross-site"}, true},
		{[]string{"Origin: http://shop.example", "Sec-Fetch-Site: same-site"}, true},
		{[]string{"Origin: https://pay.example:8443", "Sec-Fetch-Site: cross-site"}, true},
		{[]string{"Origin: https://shop.example", "Sec-Fetch-Site: cross-site"}, false},
		{[]string{"Origin: http://shop.example:80", "Sec-Fetch-Site: cross-site"}, false},
		{[]string{"Origin: http://shop.example:8080", "Sec-Fetch-Site: cross-site"}, false},
		{[]string{"Origin: http://sub.shop.example", "Sec-Fetch-Site: cross-site"}, false},
		{[]string{"Origin: http://shop.example.evil", "Sec-Fetch-Site: cross-site"}, false},
		{[]string{"Origin: http://SHOP.example", "Sec-Fetch-Site: cross-site"}, false},
		{[]string{"Origin: http://shop.example/", "Sec-Fetch-Site: cross-site"}, false},
		{[]string{"Origin: https://pay.example", "Sec-Fetch-Site: cross-site"}, false},
		{[]string{"Origin: null", "Sec-Fetch-Site: cross-site"}, false},
	}
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"v"}`), http.StatusOK, `{"theme":"v"}`)
	for i, k := range cases {
		for _, m := range []string{"POST", "PATCH", "DELETE"} {
			t.Run(fmt.Sprintf("%d %s %q", i, m, k.header), func(t *testing.T) {
				jar := b.Jar.Clone()
				q := Req{Method: m, Path: "/__session", Header: k.header, Cookie: jar.Header()}
				if m != "DELETE" {
					q.Body, q.CT = fmt.Sprintf(`{"theme":"w%d"}`, i), "application/json"
				}
				r := c.Do(t, q)
				switch {
				case k.ok && m == "DELETE":
					if r.Status != http.StatusNoContent {
						t.Fatalf("want 204, got:\n%s", r)
					}
				case k.ok:
					wantObject(t, r, http.StatusOK, fmt.Sprintf(`{"theme":"w%d"}`, i))
				default:
					wantError(t, r, http.StatusForbidden)
					noSetCookie(t, r)
					wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: jar.Header()}), http.StatusOK, `{"theme":"v"}`)
				}
			})
		}
		// Safe methods pass and change nothing, whatever the origin.
		for _, m := range []string{"GET", "HEAD"} {
			r := c.Do(t, Req{Method: m, Path: "/__session", Header: k.header, Cookie: b.Jar.Header()})
			if r.Status != http.StatusOK {
				t.Errorf("%s %q: status %d", m, k.header, r.Status)
			}
			noSetCookie(t, r)
		}
	}
	if c.Up.Count() != 0 {
		t.Errorf("API requests reached the upstream")
	}
}

// TestAdversarialContentTypes: POST and PATCH bodies must be
// application/json, parameters allowed (S12); nothing else is parsed.
func TestAdversarialContentTypes(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: apiSession})
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
	for _, ct := range [][]string{
		{"Content-Type: text/plain;charset=UTF-8"},
		{"Content-Type: multipart/form-data; boundary=x"},
		{"Content-Type: application/x-www-form-urlencoded"},
		{"Content-Type: application/merge-patch+json"},
		{"Content-Type: application/json-patch+json"},
		{"Content-Type: application/vnd.api+json"},
		{"Content-Type: application/javascript"},
		{"Content-Type: application/json, text/plain"},
		{"Content-Type: application/json; charset"},
		{"Content-Type: application /json"},
		{"Content-Type: application/json\x0b"},
		{"Content-Type: text/plain", "Content-Type: application/json"},
		{"Content-Type: */*"},
		{"Content-Type: "},
		{},
	} {
		for _, m := range []string{"POST", "PATCH"} {
			r := advRaw(t, c, m, "/__session", append([]string{"Cookie: " + b.Jar.Header()}, ct...), `{"theme":"light"}`)
			if r.Status != http.StatusUnsupportedMediaType && r.Status != http.StatusBadRequest {
				t.Errorf("%s with %q: status %d, want 415", m, ct, r.Status)
			}
			noSetCookie(t, r)
		}
	}
	for i, ct := range []string{"application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "application/json ; charset=\"utf-8\"", "application/json;foo=bar"} {
		v := fmt.Sprintf("ok%d", i)
		r := b.Do(t, Req{Method: "PATCH", Path: "/__session", CT: ct, Body: `{"theme":"` + v + `"}`})
		wantObject(t, r, http.StatusOK, `{"theme":"`+v+`"}`)
	}
	if c.Up.Count() != 0 {
		t.Errorf("API requests reached the upstream")
	}
}

// advSlowUpload writes head and a first part of a body, then waits for the
// answer without sending the rest: an answer proves the server decided
// without reading the whole body.
func advSlowUpload(t testing.TB, c *Caddy, head string, first []byte) (*Resp, time.Duration) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", c.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = conn.Write(first) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer while the body was still coming: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return &Resp{Status: resp.StatusCode, Header: resp.Header, Body: body}, time.Since(start)
}

// TestAdversarialBodyBounds: a 10 MB body is refused (413) without being
// read, from its Content-Length or, chunked, after max_body bytes; deep,
// invalid and duplicate-keyed bodies are 400; nothing changes (S16).
func TestAdversarialBodyBounds(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: apiSession})
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
	saved := b.Jar.Clone()
	unchanged := func(t *testing.T) {
		t.Helper()
		wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: saved.Header()}), http.StatusOK, `{"theme":"dark"}`)
	}

	t.Run("10 MB by Content-Length, body never sent", func(t *testing.T) {
		for _, m := range []string{"POST", "PATCH"} {
			head := fmt.Sprintf("%s /__session HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
				m, c.Host, saved.Header(), 10<<20)
			r, took := advSlowUpload(t, c, head, []byte(`{"theme":"`))
			wantError(t, r, http.StatusRequestEntityTooLarge)
			noSetCookie(t, r)
			t.Logf("%s: 413 after %v with 10 bytes of 10 MB sent", m, took)
		}
		unchanged(t)
	})
	t.Run("10 MB chunked, only the first 100 KB sent", func(t *testing.T) {
		head := fmt.Sprintf("POST /__session HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
			c.Host, saved.Header())
		part := `{"theme":"` + strings.Repeat("x", 100<<10)
		r, _ := advSlowUpload(t, c, head, []byte(fmt.Sprintf("%x\r\n%s\r\n", len(part), part)))
		wantError(t, r, http.StatusRequestEntityTooLarge)
		noSetCookie(t, r)
		unchanged(t)
	})
	t.Run("Content-Length over max_body by one", func(t *testing.T) {
		body := `{"theme":"` + strings.Repeat("x", 64<<10-12) + `"}`
		if len(body) != 64<<10 {
			t.Fatalf("harness: body of %d bytes", len(body))
		}
		r := c.Do(t, Req{Method: "POST", Path: "/__session", CT: "application/json", Cookie: saved.Header(), Body: body + " "})
		wantError(t, r, http.StatusRequestEntityTooLarge)
		// Exactly max_body is read (and then refused for other reasons:
		// the cookie store cannot hold it).
		r = c.Do(t, Req{Method: "POST", Path: "/__session", CT: "application/json", Cookie: saved.Header(), Body: body})
		if r.Status == http.StatusOK || r.Status >= 500 {
			t.Errorf("a 64 KiB value in the cookie store: status %d", r.Status)
		}
		unchanged(t)
	})
	t.Run("lying Content-Length", func(t *testing.T) {
		// Says 10 bytes, sends more: only 10 are read, they are not JSON.
		raw := fmt.Sprintf("POST /__session HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nContent-Type: application/json\r\nContent-Length: 10\r\nConnection: close\r\n\r\n%s",
			c.Host, saved.Header(), `{"theme":"light"}`)
		wantError(t, c.Raw(t, raw), http.StatusBadRequest)
		unchanged(t)
	})

	for _, tc := range []struct{ name, body string }{
		{"objects 33 deep", `{"theme":` + strings.Repeat(`{"a":`, 33) + `1` + strings.Repeat(`}`, 33) + `}`},
		{"arrays 33 deep", `{"theme":` + strings.Repeat(`[`, 33) + strings.Repeat(`]`, 33) + `}`},
		{"30000 deep", `{"theme":` + strings.Repeat(`[`, 30000) + strings.Repeat(`]`, 30000) + `}`},
		{"unclosed 30000 deep", `{"theme":` + strings.Repeat(`[`, 30000)},
		{"invalid UTF-8 in a value", "{\"theme\":\"\xff\xfe\"}"},
		{"invalid UTF-8 in a key", "{\"th\xc3\":\"x\"}"},
		{"overlong encoding", "{\"theme\":\"\xc0\xaf\"}"},
		{"encoded surrogate", "{\"theme\":\"\xed\xa0\x80\"}"},
		{"NUL in a key", `{"the\u0000me":"x"}`},
		{"duplicate key", `{"theme":"a","theme":"b"}`},
		{"duplicate key, escaped", `{"theme":"a","th\u0065me":"b"}`},
		{"duplicate key, null first", `{"theme":null,"theme":"b"}`},
		{"BOM", "\xef\xbb\xbf{\"theme\":\"x\"}"},
		{"two objects", `{"theme":"a"}{"theme":"b"}`},
		{"comment", `{"theme":"a"/*x*/}`},
		{"single quotes", `{'theme':'a'}`},
		{"trailing comma", `{"theme":"a",}`},
		{"NaN", `{"theme":NaN}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.Do(t, Req{Method: "POST", Path: "/__session", CT: "application/json", Cookie: saved.Header(), Body: tc.body})
			if r.Status != http.StatusBadRequest && r.Status != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 400 (or 413):\n%s", r.Status, r)
			}
			wantError(t, r, r.Status)
			noSetCookie(t, r)
			unchanged(t)
		})
	}
	// The limits: 32 levels are fine, a lone surrogate escape is data.
	for _, body := range []string{
		`{"theme":` + strings.Repeat(`[`, 32) + strings.Repeat(`]`, 32) + `}`,
		`{"theme":"\ud800"}`,
		`{"theme":"é\u2028"}`,
	} {
		r := b.Do(t, Req{Method: "POST", Path: "/__session", CT: "application/json", Body: body})
		if r.Status != http.StatusOK {
			t.Errorf("%.60s: status %d:\n%s", body, r.Status, r)
		}
		b.Get(t, "/page")
		for k, vs := range c.Up.Last(t).Header {
			for _, v := range vs {
				for i := 0; i < len(v); i++ {
					if v[i] < 0x20 || v[i] > 0x7e {
						t.Errorf("upstream header %s carries byte %#x", k, v[i])
					}
				}
			}
		}
	}
}

// TestAdversarialWritableExact: a key is client-writable only as listed,
// byte for byte (S15): no case, separator or lookalike spelling of a
// writable key, and none of a trusted key, is accepted, and none changes
// the session or its headers.
func TestAdversarialWritableExact(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme cart_id\n\tclient_readable *"})
	b := c.NewBrowser()
	b.Seed(t, `{"customerId":"c_1"}`)
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"customerId":"c_1","theme":"dark"}`)
	for _, k := range []string{
		"Theme", "THEME", "tHeme", "the-me", "theme_", "theme-", "cart-id", "Cart_id", "CART_ID", "cart.id",
		"customerId", "customerid", "CustomerId", "customer-id", "customer_id", "CUSTOMERID", "customerId ", " customerId",
		"\uff54heme", "theme\u200b", "th\u0435me", "customer\u0130d",
	} {
		for _, withSession := range []bool{true, false} {
			cookie := ""
			if withSession {
				cookie = b.Jar.Header()
			}
			body, _ := json.Marshal(map[string]string{k: "evil"})
			r := c.Do(t, Req{Method: "POST", Path: "/__session", CT: "application/json", Body: string(body), Cookie: cookie})
			if r.Status != http.StatusForbidden && r.Status != http.StatusBadRequest {
				t.Errorf("writing %q (session %v): status %d, want 403 (or 400 for an invalid key):\n%s", k, withSession, r.Status, r)
			}
			noSetCookie(t, r)
		}
	}
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"customerId":"c_1","theme":"dark"}`)
	b.Get(t, "/page")
	wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Customerid": "c_1", "X-Session-Theme": "dark"})
}
