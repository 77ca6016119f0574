package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

const wbSession = "\tsecret " + secretA + "\n\tclient_readable *"

// noSessionResponseHeaders checks that the client sees no X-Session-*
// response header.
func noSessionResponseHeaders(t testing.TB, r *Resp) {
	t.Helper()
	for k, v := range r.Header {
		if sessionName(k) {
			t.Errorf("client got response header %s: %q", k, v)
		}
	}
}

func wantUpstreamBody(t testing.TB, r *Resp, path string) {
	t.Helper()
	if r.Status != http.StatusOK || r.Header.Get("X-Upstream") != "1" || !strings.Contains(string(r.Body), path) {
		t.Fatalf("want the upstream's 200 for %s, got:\n%s", path, r)
	}
}

func TestWriteBackSet(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: wbSession})
	b := c.NewBrowser()

	r := b.Get(t, "/login", `X-Test-Resp: X-Session-Set: {"customerId":"c_42"}`)
	wantUpstreamBody(t, r, "/login")
	noSessionResponseHeaders(t, r)
	if len(setCookieFor(r, "__session")) != 1 {
		t.Fatalf("X-Session-Set without a session must create one; Set-Cookie %q", r.SetCookies())
	}
	b.Get(t, "/account")
	wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Customerid": "c_42"})

	// Repeated headers apply in order; merge with what is there.
	r = b.Get(t, "/cart",
		`X-Test-Resp: X-Session-Set: {"a":1,"b":1}`,
		`X-Test-Resp: X-Session-Set: {"a":2}`,
		`X-Test-Resp: X-Session-Set: {"b":null,"c":{"d":[1]}}`)
	wantUpstreamBody(t, r, "/cart")
	noSessionResponseHeaders(t, r)
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"customerId":"c_42","a":2,"c":{"d":[1]}}`)

	// Other X-Session-* response headers are removed too.
	r = b.Get(t, "/x", "X-Test-Resp: X-Session-Foo: bar", "X-Test-Resp: X-Session-Customerid: c_evil")
	wantUpstreamBody(t, r, "/x")
	noSessionResponseHeaders(t, r)
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"customerId":"c_42","a":2,"c":{"d":[1]}}`)
}

func TestWriteBackDestroy(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: wbSession})
	for _, v := range []string{"1", "true"} {
		t.Run(v, func(t *testing.T) {
			b := c.NewBrowser()
			b.Seed(t, `{"customerId":"c_1"}`)
			r := b.Get(t, "/logout", "X-Test-Resp: X-Session-Destroy: "+v)
			wantUpstreamBody(t, r, "/logout")
			noSessionResponseHeaders(t, r)
			lines := setCookieFor(r, "__session")
			if len(lines) != 1 || !isExpiry(t, lines[0]) {
				t.Fatalf("X-Session-Destroy: want __session expired, got %q", r.SetCookies())
			}
			wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{}`)
			b.Get(t, "/page")
			noSessionHeaders(t, c.Up.Last(t))
		})
	}
}

func TestWriteBackRotate(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: wbSession})
	b := c.NewBrowser()
	b.Seed(t, `{"customerId":"c_1"}`)
	old := b.Jar.Get("__session")

	r := b.Get(t, "/login", "X-Test-Resp: X-Session-Rotate: 1")
	wantUpstreamBody(t, r, "/login")
	noSessionResponseHeaders(t, r)
	lines := setCookieFor(r, "__session")
	if len(lines) != 1 || isExpiry(t, lines[0]) || b.Jar.Get("__session") == old {
		t.Fatalf("X-Session-Rotate: want a new __session cookie, got %q", r.SetCookies())
	}
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"customerId":"c_1"}`)
	b.Get(t, "/page")
	wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Customerid": "c_1"})
}

func TestWriteBackOrder(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: wbSession})
	b := c.NewBrowser()
	b.Seed(t, `{"a":1,"b":2}`)

	// Destroy applies first, whatever the header order: a fresh session
	// with only the Set's data.
	r := b.Get(t, "/relogin",
		`X-Test-Resp: X-Session-Set: {"c":3}`,
		"X-Test-Resp: X-Session-Destroy: 1")
	wantUpstreamBody(t, r, "/relogin")
	lines := setCookieFor(r, "__session")
	if len(lines) != 1 || isExpiry(t, lines[0]) {
		t.Fatalf("Destroy+Set: want a live __session cookie, got %q", r.SetCookies())
	}
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"c":3}`)

	// Set then Rotate: new cookie with the merged data.
	old := b.Jar.Get("__session")
	r = b.Get(t, "/elevate", "X-Test-Resp: X-Session-Rotate: true", `X-Test-Resp: X-Session-Set: {"d":4}`)
	wantUpstreamBody(t, r, "/elevate")
	if b.Jar.Get("__session") == old || b.Jar.Get("__session") == "" {
		t.Fatalf("Set+Rotate: cookie not rotated: %q", r.SetCookies())
	}
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"c":3,"d":4}`)

	// Destroy and Rotate: nothing is left.
	r = b.Get(t, "/bye", "X-Test-Resp: X-Session-Rotate: 1", "X-Test-Resp: X-Session-Destroy: 1")
	wantUpstreamBody(t, r, "/bye")
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{}`)
}

// TestWriteBackUpstreamSetCookie: only the module sets the session cookie.
func TestWriteBackUpstreamSetCookie(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: wbSession})

	t.Run("without a module write", func(t *testing.T) {
		r := c.Do(t, Req{Path: "/x", Header: []string{
			"X-Test-Resp: Set-Cookie: __session=evil; Path=/",
			"X-Test-Resp: Set-Cookie: other=1; Path=/",
		}})
		wantUpstreamBody(t, r, "/x")
		if got := setCookieFor(r, "__session"); len(got) != 0 {
			t.Errorf("upstream Set-Cookie for __session reached the client: %q", got)
		}
		if got := setCookieFor(r, "other"); len(got) != 1 || got[0] != "other=1; Path=/" {
			t.Errorf("other Set-Cookie changed: %q", r.SetCookies())
		}
	})
	t.Run("chunk name", func(t *testing.T) {
		r := c.Do(t, Req{Path: "/x", Header: []string{"X-Test-Resp: Set-Cookie: __session.1=evil; Path=/"}})
		if got := setCookieFor(r, "__session.1"); len(got) != 0 {
			t.Errorf("upstream Set-Cookie for the chunk __session.1 reached the client: %q", got)
		}
	})
	t.Run("with a module write", func(t *testing.T) {
		b := c.NewBrowser()
		r := b.Get(t, "/login",
			"X-Test-Resp: Set-Cookie: __session=evil; Path=/",
			`X-Test-Resp: X-Session-Set: {"customerId":"c_9"}`,
			"X-Test-Resp: Set-Cookie: other=2")
		lines := setCookieFor(r, "__session")
		if len(lines) != 1 || strings.Contains(lines[0], "evil") {
			t.Fatalf("want only the module's __session cookie, got %q", r.SetCookies())
		}
		if len(setCookieFor(r, "other")) != 1 {
			t.Errorf("other Set-Cookie dropped: %q", r.SetCookies())
		}
		wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"customerId":"c_9"}`)
	})
}

// TestWriteBackMalformed: a bad upstream header is logged at error level
// and ignored; the response goes out.
func TestWriteBackMalformed(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: wbSession})
	b := c.NewBrowser()
	b.Seed(t, `{"a":1}`)

	for _, tc := range []struct{ name, header string }{
		{"not JSON", "X-Session-Set: not json"},
		{"array", "X-Session-Set: [1,2]"},
		{"bad key", `X-Session-Set: {"1bad":1}`},
		{"colliding keys", `X-Session-Set: {"a_b":1,"a-b":2}`},
		{"collision with a stored key", `X-Session-Set: {"A":2}`},
		{"destroy yes", "X-Session-Destroy: yes"},
		{"rotate 2", "X-Session-Rotate: 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.Jar.Clone()
			mark := len(c.Logs())
			r := b.Get(t, "/bad", "X-Test-Resp: "+tc.header)
			wantUpstreamBody(t, r, "/bad")
			noSessionResponseHeaders(t, r)
			for _, line := range setCookieFor(r, "__session") {
				if isExpiry(t, line) {
					t.Errorf("a malformed header destroyed the session: %q", line)
				}
			}
			wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"a":1}`)
			wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: before.Header()}), http.StatusOK, `{"a":1}`)
			if !waitLog(c, mark, regexp.MustCompile(`"level":"error"`)) {
				t.Errorf("no error logged for %s", tc.header)
			}
		})
	}

	// One bad header among good ones: the good ones apply.
	r := b.Get(t, "/mixed", `X-Test-Resp: X-Session-Set: {"b":2}`, "X-Test-Resp: X-Session-Set: nope")
	wantUpstreamBody(t, r, "/mixed")
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"a":1,"b":2}`)
}

// TestWriteBackOnUpstreamError: writes on redirects apply, and the
// upstream's error answers pass as they are, without X-Session-* headers.
func TestWriteBackOnUpstreamError(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: wbSession})
	b := c.NewBrowser()
	r := b.Get(t, "/fail", `X-Test-Resp: X-Session-Set: {"x":1}`, "X-Test-Status: 500")
	if r.Status != http.StatusInternalServerError || r.Header.Get("X-Upstream") != "1" {
		t.Fatalf("want the upstream's 500:\n%s", r)
	}
	noSessionResponseHeaders(t, r)
	r = b.Get(t, "/redirect", `X-Test-Resp: X-Session-Set: {"y":2}`, "X-Test-Resp: Location: /next", "X-Test-Status: 302")
	if r.Status != http.StatusFound {
		t.Fatalf("want the upstream's 302:\n%s", r)
	}
	noSessionResponseHeaders(t, r)
	// The redirect's write applies (login then redirect is the common
	// case); whether a 500's write applies is the module's choice.
	m := jsonObject(t, b.API(t, "GET", ""))
	if m["y"] != float64(2) {
		t.Errorf("the write of a 302 response was not applied: %v", m)
	}
}

// TestWriteBackLargeBody: a write on a large, streamed response applies and
// the body arrives whole.
func TestWriteBackLargeBody(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: wbSession})
	b := c.NewBrowser()
	const n = 3 << 20
	r := b.Get(t, "/download", `X-Test-Resp: X-Session-Set: {"downloaded":true}`, "X-Test-Body-Size: 3145728")
	if r.Status != http.StatusOK || len(r.Body) < n || strings.Count(string(r.Body), "x") != n {
		t.Fatalf("large body: status %d, %d bytes", r.Status, len(r.Body))
	}
	noSessionResponseHeaders(t, r)
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"downloaded":true}`)
}

// TestWriteBackEarlyHints: a 103 from the upstream passes, carries no
// X-Session-* header, and the final response's write applies.
func TestWriteBackEarlyHints(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: wbSession})
	b := c.NewBrowser()
	b.Seed(t, `{"a":1}`)

	conn, err := net.DialTimeout("tcp", c.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /hints HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nConnection: close\r\n"+
		"X-Test-103: Link: </app.css>; rel=preload\r\n"+
		"X-Test-103: X-Session-Set: {\"early\":1}\r\n"+
		"X-Test-Resp: X-Session-Set: {\"b\":2}\r\n\r\n", c.Host, b.Jar.Header())
	br := bufio.NewReader(conn)
	var final *http.Response
	sawHint := false
	for final == nil {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading responses: %v", err)
		}
		for k, v := range resp.Header {
			if sessionName(k) {
				t.Errorf("a %d response carries %s: %q", resp.StatusCode, k, v)
			}
		}
		if resp.StatusCode == http.StatusEarlyHints {
			sawHint = sawHint || resp.Header.Get("Link") != ""
			continue
		}
		final = resp
	}
	defer final.Body.Close()
	body, _ := io.ReadAll(final.Body)
	if final.StatusCode != http.StatusOK || !strings.Contains(string(body), "/hints") {
		t.Fatalf("final response %d %q", final.StatusCode, body)
	}
	if !sawHint {
		t.Errorf("the 103 Early Hints response did not reach the client")
	}
	b.Jar.Update(t, &Resp{Status: final.StatusCode, Header: final.Header})
	m := jsonObject(t, b.API(t, "GET", ""))
	if m["a"] != float64(1) || m["b"] != float64(2) {
		t.Errorf("after a 103 then a 200 with X-Session-Set: session %v, want a=1 and b=2", m)
	}
}

// TestWriteBackTooLargeForCookie: an upstream write that cannot fit in the
// cookie store's chunks is refused; the old session stays, the response
// goes out, no Set-Cookie line reaches 4096 bytes.
func TestWriteBackTooLargeForCookie(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: wbSession})
	b := c.NewBrowser()
	b.Seed(t, `{"a":1}`)
	r := b.Get(t, "/big", `X-Test-Resp: X-Session-Set: {"big":"`+randomString(20000)+`"}`)
	wantUpstreamBody(t, r, "/big")
	noSessionResponseHeaders(t, r)
	for _, line := range r.SetCookies() {
		if len(line) >= 4096 {
			t.Errorf("Set-Cookie line of %d bytes", len(line))
		}
	}
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"a":1}`)
}
