package integration

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// apiSession is a session block for API tests: a fixed secret and a few
// writable keys, all readable.
const apiSession = `	secret ` + secretA + `
	client_writable theme n flag obj note
	client_readable *`

func wantNoStore(t testing.TB, r *Resp) {
	t.Helper()
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(strings.ToLower(cc), "no-store") {
		t.Errorf("Cache-Control %q, want no-store; response:\n%s", cc, r)
	}
}

func TestAPIGetWithoutSession(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: apiSession})

	r := c.Do(t, Req{Path: "/__session"})
	wantObject(t, r, http.StatusOK, `{}`)
	wantNoStore(t, r)
	if got := r.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options %q, want nosniff", got)
	}
	noSetCookie(t, r)

	// A cross-site GET is safe, still answered, and carries no CORS grant.
	r = c.Do(t, Req{Path: "/__session", Header: []string{"Origin: http://evil.example", "Sec-Fetch-Site: cross-site"}})
	wantObject(t, r, http.StatusOK, `{}`)
	for k := range r.Header {
		if strings.HasPrefix(strings.ToLower(k), "access-control-") {
			t.Errorf("API answer carries CORS header %s: %q", k, r.Header[k])
		}
	}
	noSetCookie(t, r)
	if n := c.Up.Count(); n != 0 {
		t.Errorf("API requests reached the upstream (%d requests)", n)
	}
}

func TestAPICreateReadMerge(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: apiSession})
	b := c.NewBrowser()

	r := b.API(t, "POST", `{"theme":"dark","n":1}`)
	wantObject(t, r, http.StatusOK, `{"theme":"dark","n":1}`)
	wantNoStore(t, r)
	if len(setCookieFor(r, "__session")) != 1 {
		t.Fatalf("creating a session: want one Set-Cookie for __session, got %q", r.SetCookies())
	}

	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"dark","n":1}`)

	r = b.API(t, "PATCH", `{"n":2,"flag":true}`)
	wantObject(t, r, http.StatusOK, `{"theme":"dark","n":2,"flag":true}`)

	// null deletes a key; a null nested in a value is data.
	r = b.API(t, "POST", `{"theme":null,"obj":{"a":[1,2,{"b":null}]}}`)
	wantObject(t, r, http.StatusOK, `{"n":2,"flag":true,"obj":{"a":[1,2,{"b":null}]}}`)
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"n":2,"flag":true,"obj":{"a":[1,2,{"b":null}]}}`)

	// Deleting every key leaves an empty session, read as {}.
	r = b.API(t, "PATCH", `{"n":null,"flag":null,"obj":null}`)
	wantObject(t, r, http.StatusOK, `{}`)
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{}`)

	if n := c.Up.Count(); n != 0 {
		t.Errorf("API requests reached the upstream (%d requests)", n)
	}
}

func TestAPIDelete(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: apiSession})
	b := c.NewBrowser()

	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)

	r := b.API(t, "DELETE", "")
	if r.Status != http.StatusNoContent {
		t.Fatalf("DELETE: status %d, want 204:\n%s", r.Status, r)
	}
	if len(r.Body) != 0 {
		t.Errorf("DELETE: 204 with a body %q", r.Body)
	}
	wantNoStore(t, r)
	lines := setCookieFor(r, "__session")
	if len(lines) != 1 || !isExpiry(t, lines[0]) {
		t.Fatalf("DELETE: want the __session cookie expired, got %q", r.SetCookies())
	}
	a := attrs(lines[0])
	if _, ok := a["httponly"]; !ok {
		t.Errorf("expiring Set-Cookie without HttpOnly: %q", lines[0])
	}
	if a["path"] != "/" {
		t.Errorf("expiring Set-Cookie with Path %q, want /: %q", a["path"], lines[0])
	}
	if !strings.EqualFold(a["samesite"], "lax") {
		t.Errorf("expiring Set-Cookie without SameSite=Lax: %q", lines[0])
	}
	if len(b.Jar.Names()) != 0 {
		t.Fatalf("cookies left after DELETE: %v", b.Jar.Names())
	}
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{}`)

	// Idempotent: no session is still 204.
	r = c.Do(t, Req{Method: "DELETE", Path: "/__session"})
	if r.Status != http.StatusNoContent {
		t.Fatalf("DELETE without a session: status %d, want 204:\n%s", r.Status, r)
	}
	for _, line := range r.SetCookies() {
		if !isExpiry(t, line) {
			t.Errorf("DELETE without a session set a live cookie: %q", line)
		}
	}
}

func TestAPIHead(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: apiSession})
	b := c.NewBrowser()

	r := c.Do(t, Req{Method: "HEAD", Path: "/__session"})
	if r.Status != http.StatusOK || len(r.Body) != 0 {
		t.Fatalf("HEAD without session:\n%s", r)
	}
	noSetCookie(t, r)

	b.API(t, "POST", `{"theme":"dark"}`)
	r = b.Do(t, Req{Method: "HEAD", Path: "/__session"})
	if r.Status != http.StatusOK {
		t.Fatalf("HEAD with session: status %d:\n%s", r.Status, r)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("HEAD: Content-Type %q, want application/json", ct)
	}
	wantNoStore(t, r)
	if c.Up.Count() != 0 {
		t.Errorf("HEAD reached the upstream")
	}
}

func TestAPIMethodNotAllowed(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: apiSession})
	b := c.NewBrowser()
	b.API(t, "POST", `{"theme":"dark"}`)

	for _, q := range []Req{
		{Method: "OPTIONS"},
		{Method: "OPTIONS", Header: []string{"Origin: http://evil.example", "Access-Control-Request-Method: POST"}},
		{Method: "PUT", Body: `{"theme":"put"}`, CT: "application/json"},
		{Method: "PROPFIND"},
	} {
		t.Run(q.Method, func(t *testing.T) {
			q.Path = "/__session"
			r := b.Do(t, q)
			wantError(t, r, http.StatusMethodNotAllowed)
			allow := r.Header.Get("Allow")
			for _, m := range []string{"GET", "POST", "PATCH", "DELETE"} {
				if !strings.Contains(allow, m) {
					t.Errorf("Allow %q lacks %s", allow, m)
				}
			}
			for k := range r.Header {
				if strings.HasPrefix(strings.ToLower(k), "access-control-") {
					t.Errorf("405 carries CORS header %s", k)
				}
			}
			noSetCookie(t, r)
		})
	}
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"dark"}`)
	if c.Up.Count() != 0 {
		t.Errorf("API requests reached the upstream")
	}
}

func TestAPIBadRequest(t *testing.T) {
	t.Parallel()
	long64 := strings.Repeat("k", 64)
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme " + long64 + "\n\tclient_readable *"})
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
	before := b.Jar.Clone()

	for _, tc := range []struct{ name, body string }{
		{"invalid JSON", `{"theme":`},
		{"trailing garbage", `{"theme":"x"} x`},
		{"array", `[{"theme":"x"}]`},
		{"string", `"theme"`},
		{"number", `42`},
		{"null", `null`},
		{"empty body", ``},
		{"digit first", `{"1abc":"x"}`},
		{"space in key", `{"a b":"x"}`},
		{"empty key", `{"":"x"}`},
		{"dash first", `{"-theme":"x"}`},
		{"dot in key", `{"a.b":"x"}`},
		{"non-ASCII key", `{"thème":"x"}`},
		{"key of 65 chars", `{"` + strings.Repeat("k", 65) + `":"x"}`},
		{"bad key next to a good one", `{"theme":"light","1abc":"x"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.Do(t, Req{Method: "POST", Path: "/__session", Body: tc.body, CT: "application/json", Cookie: before.Header()})
			wantError(t, r, http.StatusBadRequest)
			noSetCookie(t, r)
			wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: before.Header()}), http.StatusOK, `{"theme":"dark"}`)
		})
	}

	// A key of exactly 64 characters is valid.
	r := b.API(t, "PATCH", `{"`+long64+`":1}`)
	wantObject(t, r, http.StatusOK, `{"theme":"dark","`+long64+`":1}`)
}

func TestAPIKeyCollision(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: `	secret ` + secretA + `
	client_writable cart-id Cart
	client_readable *`})
	b := c.NewBrowser()
	// The upstream (trusted, any key) writes cart_id and cart.
	b.Seed(t, `{"cart_id":"u1","cart":"u2"}`)
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"cart_id":"u1","cart":"u2"}`)

	for _, tc := range []struct{ body, key, other string }{
		{`{"cart-id":"x"}`, "cart-id", "cart_id"},
		{`{"Cart":"x"}`, "Cart", "cart"},
	} {
		r := b.API(t, "POST", tc.body)
		msg := wantError(t, r, http.StatusBadRequest)
		if !strings.Contains(msg, tc.key) || !strings.Contains(msg, tc.other) {
			t.Errorf("collision error %q should name both %q and %q", msg, tc.key, tc.other)
		}
		noSetCookie(t, r)
	}
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"cart_id":"u1","cart":"u2"}`)
}

func TestAPIForbiddenKeys(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: `	secret ` + secretA + `
	client_writable theme
	client_readable *`})
	b := c.NewBrowser()
	b.Seed(t, `{"customerId":"c_1"}`)
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"customerId":"c_1","theme":"dark"}`)

	for _, body := range []string{
		`{"customerId":"evil"}`,
		`{"customerId":null}`,
		`{"theme":"light","customerId":"evil"}`,
		`{"theme":"light","other":"x"}`,
	} {
		for _, m := range []string{"POST", "PATCH"} {
			r := b.API(t, m, body)
			wantError(t, r, http.StatusForbidden)
			noSetCookie(t, r)
		}
	}
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"customerId":"c_1","theme":"dark"}`)

	// No spelling of a trusted key gets through, with no session either.
	for _, k := range []string{"customerId", "customer-id", "customer_id", "CustomerId", "CUSTOMERID"} {
		r := c.Do(t, Req{Method: "POST", Path: "/__session", Body: `{"` + k + `":"evil"}`, CT: "application/json"})
		wantError(t, r, http.StatusForbidden)
		noSetCookie(t, r)
	}

	b.Get(t, "/page")
	wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Customerid": "c_1", "X-Session-Theme": "dark"})
}

func TestAPICrossOrigin(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: `	secret ` + secretA + `
	client_writable theme
	trusted_origins http://shop.example`})
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"v0"}`), http.StatusOK, `{"theme":"v0"}`)
	current := "v0"

	otherPort := fmt.Sprintf("http://127.0.0.1:%d", c.HTTPPort+1)
	for i, tc := range []struct {
		name   string
		method string
		header []string
		ok     bool
	}{
		{"POST Sec-Fetch-Site cross-site", "POST", []string{"Sec-Fetch-Site: cross-site"}, false},
		{"POST Sec-Fetch-Site same-site", "POST", []string{"Sec-Fetch-Site: same-site"}, false},
		{"PATCH Sec-Fetch-Site cross-site", "PATCH", []string{"Sec-Fetch-Site: cross-site", "Origin: " + c.Base}, false},
		{"DELETE Sec-Fetch-Site cross-site", "DELETE", []string{"Sec-Fetch-Site: cross-site"}, false},
		{"POST foreign Origin", "POST", []string{"Origin: http://evil.example"}, false},
		{"POST Origin other port", "POST", []string{"Origin: " + otherPort}, false},
		{"POST Origin null", "POST", []string{"Origin: null"}, false},
		{"DELETE foreign Origin", "DELETE", []string{"Origin: http://evil.example"}, false},
		{"POST Sec-Fetch-Site same-origin", "POST", []string{"Sec-Fetch-Site: same-origin"}, true},
		{"POST Sec-Fetch-Site none", "POST", []string{"Sec-Fetch-Site: none"}, true},
		{"POST same Origin", "POST", []string{"Origin: " + c.Base}, true},
		{"POST no Origin, no Fetch Metadata", "POST", nil, true},
		{"POST trusted origin", "POST", []string{"Origin: http://shop.example"}, true},
		{"PATCH trusted origin cross-site", "PATCH", []string{"Origin: http://shop.example", "Sec-Fetch-Site: cross-site"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			val := fmt.Sprintf("v%d", i+1)
			body := `{"theme":"` + val + `"}`
			if tc.method == "DELETE" {
				body = ""
			}
			q := Req{Method: tc.method, Path: "/__session", Body: body, Header: tc.header, Cookie: b.Jar.Header()}
			if body != "" {
				q.CT = "application/json"
			}
			r := c.Do(t, q)
			if tc.ok {
				wantObject(t, r, http.StatusOK, `{"theme":"`+val+`"}`)
				b.Jar.Update(t, r)
				current = val
			} else {
				wantError(t, r, http.StatusForbidden)
				noSetCookie(t, r)
			}
			wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"`+current+`"}`)
		})
	}
}

func TestAPITooLarge(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: `	secret ` + secretA + `
	client_writable k1 k2 k3 k4 big
	max_body 1KiB
	max_keys 3`})
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"k1":1}`), http.StatusOK, `{"k1":1}`)
	saved := b.Jar.Clone()

	check := func(t *testing.T, r *Resp) {
		t.Helper()
		wantError(t, r, http.StatusRequestEntityTooLarge)
		noSetCookie(t, r)
		wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: saved.Header()}), http.StatusOK, `{"k1":1}`)
	}
	t.Run("body over max_body", func(t *testing.T) {
		check(t, c.Do(t, Req{Method: "POST", Path: "/__session", CT: "application/json", Cookie: saved.Header(),
			Body: `{"big":"` + strings.Repeat("x", 2000) + `"}`}))
	})
	t.Run("chunked body over max_body", func(t *testing.T) {
		check(t, c.Do(t, Req{Method: "POST", Path: "/__session", CT: "application/json", Cookie: saved.Header(),
			BodyReader: strings.NewReader(`{"big":"` + strings.Repeat("x", 5000) + `"}`)}))
	})
	t.Run("2 MB body", func(t *testing.T) {
		body := []byte(`{"big":"` + strings.Repeat("x", 2<<20) + `"}`)
		check(t, c.RawUpload(t, fmt.Sprintf("POST /__session HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", c.Host, saved.Header(), len(body)), body))
	})
	t.Run("over max_keys in one write", func(t *testing.T) {
		check(t, c.Do(t, Req{Method: "POST", Path: "/__session", CT: "application/json", Cookie: saved.Header(),
			Body: `{"k2":1,"k3":1,"k4":1}`}))
	})

	wantObject(t, b.API(t, "POST", `{"k2":2,"k3":3}`), http.StatusOK, `{"k1":1,"k2":2,"k3":3}`)
	r := b.API(t, "PATCH", `{"k4":4}`)
	wantError(t, r, http.StatusRequestEntityTooLarge)
	noSetCookie(t, r)
	// Replacing a key keeps the count: fine.
	wantObject(t, b.API(t, "PATCH", `{"k1":null,"k4":4}`), http.StatusOK, `{"k2":2,"k3":3,"k4":4}`)

	// The upstream is bounded by max_keys too: its write is refused, the
	// response goes out.
	r = b.Get(t, "/x", `X-Test-Resp: X-Session-Set: {"u1":1}`)
	if r.Status != http.StatusOK || r.Header.Get("X-Upstream") != "1" {
		t.Fatalf("upstream write over max_keys:\n%s", r)
	}
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"k2":2,"k3":3,"k4":4}`)
}

func TestAPIUnsupportedMediaType(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: apiSession})
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)

	body := `{"theme":"light"}`
	for _, ct := range []string{
		"", "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
		"multipart/form-data; boundary=xyz", "application/jsonp", "text/json",
	} {
		for _, m := range []string{"POST", "PATCH"} {
			t.Run(m+" "+ct, func(t *testing.T) {
				r := c.Do(t, Req{Method: m, Path: "/__session", Body: body, CT: ct, Cookie: b.Jar.Header()})
				wantError(t, r, http.StatusUnsupportedMediaType)
				noSetCookie(t, r)
			})
		}
		// Without a session: 415 and no session created.
		r := c.Do(t, Req{Method: "POST", Path: "/__session", Body: body, CT: ct})
		wantError(t, r, http.StatusUnsupportedMediaType)
		noSetCookie(t, r)
	}
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"dark"}`)

	for i, ct := range []string{"application/json; charset=utf-8", "application/json;charset=UTF-8", "Application/JSON"} {
		val := fmt.Sprintf("ok%d", i)
		r := b.Do(t, Req{Method: "POST", Path: "/__session", Body: `{"theme":"` + val + `"}`, CT: ct})
		wantObject(t, r, http.StatusOK, `{"theme":"`+val+`"}`)
	}
}

func TestAPIClientReadable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, cfg, want string
	}{
		{"listed", "client_writable theme note\n\tclient_readable theme", `{"theme":"dark"}`},
		{"default is the writable keys", "client_writable theme note", `{"theme":"dark","note":"hi"}`},
		{"star", "client_writable theme note\n\tclient_readable *", `{"theme":"dark","note":"hi","customerId":"c_42"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\t" + tc.cfg})
			b := c.NewBrowser()
			b.Seed(t, `{"customerId":"c_42","theme":"dark"}`)
			r := b.API(t, "POST", `{"note":"hi"}`)
			wantObject(t, r, http.StatusOK, tc.want)
			wantObject(t, b.API(t, "GET", ""), http.StatusOK, tc.want)
			// Whatever the client may read, the upstream gets everything.
			b.Get(t, "/page")
			wantSessionHeaders(t, c.Up.Last(t), map[string]string{
				"X-Session-Customerid": "c_42", "X-Session-Theme": "dark", "X-Session-Note": "hi"})
		})
	}
}

func TestAPIPathMoved(t *testing.T) {
	t.Parallel()
	t.Run("custom path", func(t *testing.T) {
		t.Parallel()
		c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme\n\tapi_path /_s"})
		b := c.NewBrowser()
		wantObject(t, b.Do(t, Req{Path: "/_s"}), http.StatusOK, `{}`)
		wantObject(t, b.Do(t, Req{Method: "POST", Path: "/_s", Body: `{"theme":"x"}`, CT: "application/json"}), http.StatusOK, `{"theme":"x"}`)
		if c.Up.Count() != 0 {
			t.Fatalf("the moved API path reached the upstream")
		}
		r := b.Get(t, "/__session")
		if r.Header.Get("X-Upstream") != "1" || c.Up.Count() != 1 {
			t.Fatalf("/__session should go to the upstream when api_path moved:\n%s", r)
		}
		wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Theme": "x"})
	})
	t.Run("off", func(t *testing.T) {
		t.Parallel()
		c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme\n\tapi_path off"})
		r := c.Do(t, Req{Method: "POST", Path: "/__session", Body: `{"theme":"x"}`, CT: "application/json", Header: spoofLines})
		if r.Status != http.StatusOK || r.Header.Get("X-Upstream") != "1" {
			t.Fatalf("with api_path off, /__session should reach the upstream:\n%s", r)
		}
		noSetCookie(t, r)
		rec := c.Up.Last(t)
		if rec.Path != "/__session" || string(rec.Body) != `{"theme":"x"}` {
			t.Fatalf("upstream got %s %s %q", rec.Method, rec.Path, rec.Body)
		}
		noSessionHeaders(t, rec)
	})
}

// TestAPIPathVariants: spellings of the API path are either handled by the
// module with the same checks or never reach the upstream (S13).
func TestAPIPathVariants(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: apiSession})
	for _, p := range []string{
		"/__session/", "//__session", "/%5F_session", "/%5f%5fsession", "/__session%2F",
		"/x/../__session", "/./__session", "/__session/.", "/__session?x=1",
	} {
		t.Run(p, func(t *testing.T) {
			before := c.Up.Count()
			r := c.Raw(t, "GET "+p+" HTTP/1.1\r\nHost: "+c.Host+"\r\nConnection: close\r\n\r\n")
			if r.Status >= 500 {
				t.Errorf("GET %s: status %d", p, r.Status)
			}
			body := `{"theme":"cross"}`
			r = c.Raw(t, "POST "+p+" HTTP/1.1\r\nHost: "+c.Host+"\r\nConnection: close\r\n"+
				"Sec-Fetch-Site: cross-site\r\nOrigin: http://evil.example\r\nContent-Type: application/json\r\n"+
				fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body))
			if r.Status/100 == 2 && r.Header.Get("X-Upstream") == "" {
				t.Errorf("cross-site POST %s accepted by the module: %d", p, r.Status)
			}
			for _, line := range r.SetCookies() {
				if strings.HasPrefix(line, "__session") && !isExpiry(t, line) {
					t.Errorf("cross-site POST %s set a session cookie: %q", p, line)
				}
			}
			if n := c.Up.Count(); n != before {
				rec := c.Up.Last(t)
				t.Errorf("%s reached the upstream as %s %s", p, rec.Method, rec.RequestURI)
			}
		})
	}
}

// TestAPIInputBounds: deep nesting is refused without harm (S16).
func TestAPIInputBounds(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: apiSession})
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)

	deep := `{"obj":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`
	r := b.API(t, "POST", deep)
	if r.Status != http.StatusBadRequest && r.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("a value nested 5000 deep: status %d, want 400 or 413:\n%s", r.Status, r)
	} else {
		wantError(t, r, r.Status)
	}
	noSetCookie(t, r)
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"dark"}`)
}

// TestAPIBodiesEndWithNewline (#14): every JSON answer of the API ends
// with a newline, as json.Encoder writes and as a terminal after curl
// wants: the read, the write, the error.
func TestAPIBodiesEndWithNewline(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "client_writable cart"})
	b := c.NewBrowser()
	for _, r := range []*Resp{
		b.API(t, "GET", ""),
		b.API(t, "POST", `{"cart":[1]}`),
		b.API(t, "POST", `{"customerId":"c_1"}`), // 403
		b.API(t, "POST", `[1]`),                  // 400
	} {
		if len(r.Body) == 0 || r.Body[len(r.Body)-1] != '\n' || strings.Count(string(r.Body), "\n") != 1 {
			t.Errorf("body %q does not end with exactly one newline", r.Body)
		}
		if cl := r.Header.Get("Content-Length"); cl != strconv.Itoa(len(r.Body)) {
			t.Errorf("Content-Length %s for a body of %d bytes", cl, len(r.Body))
		}
	}
}
