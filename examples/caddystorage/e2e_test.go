package caddystorage_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/internal/testkit"
)

// TestEndToEnd builds Caddy with caddy-session and this store, and runs it
// the way an operator would: sessions written through the API land in
// Caddy's storage under hashed names, reach the upstream, survive a
// restart, are shared by a second instance on the same storage, and are
// gone for good once destroyed.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs Caddy")
	}
	dir := t.TempDir()
	bin := testkit.CaddyBinary(t, "./examples/caddystorage/cmd/caddy")

	var mu sync.Mutex
	var seen []http.Header // the headers of each request the upstream got
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		io.WriteString(w, "upstream")
	}))
	t.Cleanup(upstream.Close)
	lastSeen := func() http.Header {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			t.Fatal("the upstream got no request")
		}
		return seen[len(seen)-1]
	}

	storageDir := filepath.Join(dir, "storage")
	sessionsDir := filepath.Join(storageDir, "caddy-session", "sessions")
	a := newCaddy(t, bin, "a", storageDir, upstream.Listener.Addr().String())

	// caddy validate provisions the store: it must write nothing.
	if stdout, stderr, err := a.proc.Run(time.Minute, "validate", "--config", a.proc.ConfigPath, "--adapter", "caddyfile"); err != nil {
		t.Fatalf("caddy validate: %v\n%s%s", err, stdout, stderr)
	}
	if _, err := os.Stat(sessionsDir); !os.IsNotExist(err) {
		t.Fatalf("caddy validate wrote to the sessions folder (%v)", err)
	}

	a.start(t)

	// The browser writes a key through the API: a session is created.
	resp, body := a.do(t, "POST", "/__session", `{"countryCode":"DE"}`, nil)
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(body) != `{"countryCode":"DE"}` {
		t.Fatalf("POST /__session = %d %s", resp.StatusCode, body)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "__session" {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatalf("POST /__session set no session cookie: %v", resp.Header["Set-Cookie"])
	}

	// The upstream gets the session as a header.
	wantCountry := func(c *caddyProc, step, want string) {
		t.Helper()
		resp, body := c.do(t, "GET", "/products", "", cookie)
		if resp.StatusCode != http.StatusOK || body != "upstream" {
			t.Fatalf("%s: GET /products = %d %q", step, resp.StatusCode, body)
		}
		h := lastSeen()
		if got := h.Get("X-Session-Countrycode"); got != want {
			t.Fatalf("%s: the upstream got X-Session-Countrycode %q, want %q", step, got, want)
		}
		if strings.Contains(h.Get("Cookie"), cookie.Value) {
			t.Fatalf("%s: the session cookie reached the upstream", step)
		}
	}
	wantCountry(a, "after POST", "DE")

	// One record, under the prefix, named by a hash: not the session ID,
	// which sits encrypted in the cookie, nor anything of the cookie.
	entries, err := os.ReadDir(sessionsDir)
	if err != nil {
		t.Fatalf("no sessions folder in Caddy's storage: %v", err)
	}
	if len(entries) != 1 || !regexp.MustCompile(`^[0-9a-f]{64}\.json$`).MatchString(entries[0].Name()) {
		t.Fatalf("files under the prefix: %v, want one <sha256 hex>.json", entries)
	}
	record := filepath.Join(sessionsDir, entries[0].Name())
	data, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"countryCode":"DE"`)) || bytes.Contains(data, []byte(cookie.Value)) {
		t.Fatalf("record %s", data)
	}

	// A second instance on the same storage shares the session.
	b := newCaddy(t, bin, "b", storageDir, upstream.Listener.Addr().String())
	b.start(t)
	wantCountry(b, "on a second instance", "DE")

	// A restart keeps it.
	a.proc.Stop()
	a.start(t)
	wantCountry(a, "after a restart", "DE")
	if resp, body := a.do(t, "GET", "/__session", "", cookie); strings.TrimSpace(body) != `{"countryCode":"DE"}` {
		t.Fatalf("GET /__session after a restart = %d %s", resp.StatusCode, body)
	}

	// Destroyed: the record goes, and the cookie, replayed anywhere, is no
	// session.
	if resp, body := a.do(t, "DELETE", "/__session", "", cookie); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE /__session = %d %s", resp.StatusCode, body)
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Fatalf("the record survived DELETE (%v)", err)
	}
	for _, c := range []*caddyProc{a, b} {
		wantCountry(c, "replayed cookie after DELETE on "+c.name, "")
		if _, body := c.do(t, "GET", "/__session", "", cookie); strings.TrimSpace(body) != `{}` {
			t.Fatalf("GET /__session with the replayed cookie on %s = %s, want {}", c.name, body)
		}
	}
}

// caddyProc is one Caddy instance of the test.
type caddyProc struct {
	name string
	host string // 127.0.0.1:<port>
	proc *testkit.Caddy
}

var secret = "kVq3sXz9Lm2Pw8Rt6Yb1Nc4Hd7Jf0Ga5Ue2Io9Kl3Mn6Bv8C" // 48 characters

// newCaddy writes a Caddyfile for one instance: its own admin and site
// ports, the shared storage, and Caddy stopped when the test ends.
func newCaddy(t *testing.T, bin, name, storageDir, upstream string) *caddyProc {
	t.Helper()
	c := &caddyProc{name: name, proc: testkit.NewCaddy(t, bin)}
	c.host = fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	src := fmt.Sprintf(`{
	admin %s
	storage file_system %s
	auto_https off
	persist_config off
	default_bind 127.0.0.1
	grace_period 1s
}

http://%s {
	session {
		secret %s
		client_writable countryCode
		store caddy_storage
	}
	reverse_proxy %s
}
`, c.proc.AdminAddr(), storageDir, c.host, secret, upstream)
	if err := c.proc.WriteConfig(src); err != nil {
		t.Fatal(err)
	}
	return c
}

// start runs Caddy and waits until it serves.
func (c *caddyProc) start(t *testing.T) {
	t.Helper()
	if err := c.proc.Start(); err != nil {
		t.Fatalf("Caddy %s: %v", c.name, err)
	}
}

// do sends one request, with the session cookie when given.
func (c *caddyProc) do(t *testing.T, method, path, body string, cookie *http.Cookie) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+c.host+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if cookie != nil {
		req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s on Caddy %s: %v", method, path, c.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}
