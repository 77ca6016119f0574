package integration

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// randomString returns n incompressible URL-safe characters.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}

func TestForwardValues(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA})
	b := c.NewBrowser()
	b.Seed(t, `{"countryCode":"CA","cart_id":"c1","customer-token":"t","n":42,"f":1.5,"flag":false,"obj":{"a":1},"arr":[1,"x"],"quoted":"\"q\""}`)

	r := b.Get(t, "/page")
	if r.Status != http.StatusOK {
		t.Fatalf("GET /page:\n%s", r)
	}
	wantSessionHeaders(t, c.Up.Last(t), map[string]string{
		"X-Session-Countrycode":    "CA",
		"X-Session-Cart-Id":        "c1",
		"X-Session-Customer-Token": "t",
		"X-Session-N":              "42",
		"X-Session-F":              "1.5",
		"X-Session-Flag":           "false",
		"X-Session-Obj":            `{"a":1}`,
		"X-Session-Arr":            `[1,"x"]`,
		"X-Session-Quoted":         `"q"`,
	})
}

func TestForwardUnsafeValues(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable crlf nul accent tab sep del lf bell"})
	b := c.NewBrowser()
	values := map[string]string{
		"crlf":   "line1\r\nX-Injected: yes",
		"lf":     "a\nX-Injected: yes",
		"nul":    "nul\x00byte",
		"accent": "café",
		"tab":    "tab\there",
		"sep":    "a\u2028b",
		"del":    "del\x7f",
		"bell":   "\a",
	}
	body, _ := json.Marshal(values)
	if r := b.API(t, "POST", string(body)); r.Status != http.StatusOK {
		t.Fatalf("storing values:\n%s", r)
	}
	r := b.Get(t, "/page")
	if r.Status != http.StatusOK {
		t.Fatalf("a session with unsafe values must not break the request:\n%s", r)
	}
	rec := c.Up.Last(t)
	if _, ok := rec.Header["X-Injected"]; ok {
		t.Errorf("a stored value split a header: X-Injected reached the upstream")
	}
	for k, want := range values {
		name := "X-Session-" + strings.ToUpper(k[:1]) + k[1:]
		got := rec.Header[http.CanonicalHeaderKey(name)]
		if len(got) != 1 {
			t.Errorf("%s: want exactly one header, got %q", name, got)
			continue
		}
		for _, ch := range []byte(got[0]) {
			if ch < 0x20 || ch > 0x7e {
				t.Errorf("%s: value %q has byte %#x; forwarded values must be printable ASCII", name, got[0], ch)
				break
			}
		}
		var s string
		if err := json.Unmarshal([]byte(got[0]), &s); err != nil || s != want {
			t.Errorf("%s: %q is not the JSON encoding of %q", name, got[0], want)
		}
	}
}

func TestForwardOnlyListedKeys(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tforward countryCode cart_id"})
	b := c.NewBrowser()
	b.Seed(t, `{"countryCode":"CA","cart_id":"c1","customerId":"c_42"}`)
	b.Get(t, "/page", "X-Session-Customerid: spoofed")
	wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Countrycode": "CA", "X-Session-Cart-Id": "c1"})
}

func TestForwardOversizeValue(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tstore cookie {\n\t\tmax_chunks 8\n\t}\n\tclient_writable big small"})
	b := c.NewBrowser()
	big := randomString(9000)
	if r := b.API(t, "POST", `{"big":"`+big+`","small":"s"}`); r.Status != http.StatusOK {
		t.Fatalf("storing a 9000-byte value:\n%s", r)
	}
	mark := len(c.Logs())
	r := b.Get(t, "/page")
	if r.Status != http.StatusOK {
		t.Fatalf("an oversize value must not break the request:\n%s", r)
	}
	wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Small": "s"})
	if !waitLog(c, mark, regexp.MustCompile(`"level":"warn`)) {
		t.Errorf("no warning logged for a value too large to forward")
	}
	if strings.Contains(c.FinalLogs(), big[:64]) {
		t.Errorf("the oversize value was logged")
	}
}

func TestForwardNoSession(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA})
	for _, cookie := range []string{"", "__session=", "__session=garbage", "a=1"} {
		c.Do(t, Req{Path: "/page", Cookie: cookie})
		noSessionHeaders(t, c.Up.Last(t))
	}
}

func TestForwardCookieStripped(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme big"})
	b := c.NewBrowser()
	if r := b.API(t, "POST", `{"theme":"dark","big":"`+randomString(4000)+`"}`); r.Status != http.StatusOK {
		t.Fatalf("storing a large session:\n%s", r)
	}
	names := b.Jar.Names()
	if len(names) < 2 {
		t.Fatalf("a 4000-byte session should take several chunks, got cookies %v", names)
	}
	var parts []string
	parts = append(parts, "a=1")
	for i, n := range names {
		parts = append(parts, n+"="+b.Jar.Get(n))
		if i == 0 {
			parts = append(parts, "b=2")
		}
	}
	parts = append(parts, "__session_pref=p", "__sessionx=q", `z="quoted"`)
	c.Do(t, Req{Path: "/page", Cookie: strings.Join(parts, "; ")})

	rec := c.Up.Last(t)
	if got := rec.Header.Get("X-Session-Theme"); got != "dark" {
		t.Fatalf("the session was not recognised (X-Session-Theme %q)", got)
	}
	var got []string
	for _, ck := range rec.Cookies() {
		got = append(got, ck.Name+"="+ck.Value)
	}
	want := []string{"a=1", "b=2", "__session_pref=p", "__sessionx=q", "z=quoted"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("upstream cookies %q, want %q", got, want)
	}
	if raw := strings.Join(rec.Header["Cookie"], "; "); !strings.Contains(raw, `z="quoted"`) {
		t.Errorf("other cookies must pass as sent; upstream Cookie %q", raw)
	}
	// The credential appears nowhere upstream.
	for k, vs := range rec.Header {
		for _, v := range vs {
			for _, n := range names {
				if val := b.Jar.Get(n); len(val) > 20 && strings.Contains(v, val[:20]) {
					t.Errorf("upstream header %s carries the %s cookie value", k, n)
				}
			}
		}
	}

	// Several Cookie header lines (as HTTP/2 sends them).
	lines := []string{"Cookie: a=1"}
	for _, n := range names {
		lines = append(lines, "Cookie: "+n+"="+b.Jar.Get(n))
	}
	lines = append(lines, "Cookie: b=2; __session_pref=p")
	c.Do(t, Req{Path: "/page", Header: lines})
	rec = c.Up.Last(t)
	if got := rec.Header.Get("X-Session-Theme"); got != "dark" {
		t.Errorf("session in several Cookie lines not recognised (X-Session-Theme %q)", got)
	}
	got = nil
	for _, ck := range rec.Cookies() {
		got = append(got, ck.Name+"="+ck.Value)
	}
	if strings.Join(got, "; ") != "a=1; b=2; __session_pref=p" {
		t.Errorf("several Cookie lines: upstream cookies %q", got)
	}

	// Only the session cookie: nothing of it upstream.
	c.Do(t, Req{Path: "/page", Cookie: b.Jar.Header()})
	rec = c.Up.Last(t)
	for _, ck := range rec.Cookies() {
		t.Errorf("upstream got cookie %s with only session cookies sent", ck.Name)
	}
}

// TestPlaceholders checks {http.session.*} through header_up.
func TestPlaceholders(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{
		Session: "\tsecret " + secretA + "\n\tclient_writable theme",
		Site: `session {
{{SESSION}}
}
reverse_proxy {{UPSTREAM}} {
	header_up X-Ph-Theme {http.session.theme}
	header_up X-Ph-Exists {http.session.exists}
	header_up X-Ph-Ref {http.session.ref}
}`})
	b := c.NewBrowser()

	b.Get(t, "/page")
	rec := c.Up.Last(t)
	if rec.Header.Get("X-Ph-Exists") == "true" || rec.Header.Get("X-Ph-Theme") != "" || rec.Header.Get("X-Ph-Ref") != "" {
		t.Errorf("no session: placeholders exists=%q theme=%q ref=%q",
			rec.Header.Get("X-Ph-Exists"), rec.Header.Get("X-Ph-Theme"), rec.Header.Get("X-Ph-Ref"))
	}

	b.API(t, "POST", `{"theme":"dark"}`)
	b.Get(t, "/page")
	rec = c.Up.Last(t)
	if rec.Header.Get("X-Ph-Exists") != "true" || rec.Header.Get("X-Ph-Theme") != "dark" {
		t.Fatalf("with a session: exists=%q theme=%q", rec.Header.Get("X-Ph-Exists"), rec.Header.Get("X-Ph-Theme"))
	}
	ref := rec.Header.Get("X-Ph-Ref")
	if ref == "" || strings.Contains(b.Jar.Get("__session"), ref) {
		t.Fatalf("bad session ref %q", ref)
	}
	b.API(t, "PATCH", `{"theme":"light"}`)
	b.Get(t, "/page")
	if got := c.Up.Last(t).Header.Get("X-Ph-Ref"); got != ref {
		t.Errorf("ref changed within one session: %q then %q", ref, got)
	}

	other := c.NewBrowser()
	other.API(t, "POST", `{"theme":"dark"}`)
	other.Get(t, "/page")
	if got := c.Up.Last(t).Header.Get("X-Ph-Ref"); got == ref || got == "" {
		t.Errorf("two sessions share ref %q", got)
	}

	b.Get(t, "/login", "X-Test-Resp: X-Session-Rotate: 1")
	b.Get(t, "/page")
	rec = c.Up.Last(t)
	if got := rec.Header.Get("X-Ph-Ref"); got == ref || got == "" {
		t.Errorf("ref %q did not change with the session ID (rotation)", got)
	}
	if rec.Header.Get("X-Ph-Theme") != "light" {
		t.Errorf("rotation lost data: theme %q", rec.Header.Get("X-Ph-Theme"))
	}

	// Placeholders use the header encoding: an unsafe value cannot break
	// the request.
	b.API(t, "PATCH", `{"theme":"a\r\nX-Injected: 1"}`)
	r := b.Get(t, "/page")
	if r.Status != http.StatusOK {
		t.Fatalf("unsafe value through a placeholder:\n%s", r)
	}
	rec = c.Up.Last(t)
	var s string
	if err := json.Unmarshal([]byte(rec.Header.Get("X-Ph-Theme")), &s); err != nil || s != "a\r\nX-Injected: 1" {
		t.Errorf("{http.session.theme} = %q, want the JSON encoding of the value", rec.Header.Get("X-Ph-Theme"))
	}
	if rec.Header.Get("X-Injected") != "" {
		t.Errorf("a placeholder split a header")
	}
}
