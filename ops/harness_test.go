package ops

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/internal/testkit"
)

// caddyBin is the Caddy that TestMain builds from ./cmd/caddy (with -race
// when CADDY_SESSION_RACE=1).
var caddyBin string

func TestMain(m *testing.M) {
	caddyBin = testkit.MustBuildCaddy("ops", testkit.DefaultCaddy)
	os.Exit(m.Run())
}

// freePort is testkit.FreePort: a loopback port no other test holds.
func freePort(t testing.TB) int { return testkit.FreePort(t) }

// Caddy is one Caddy process: the built binary on a Caddyfile of the test.
type Caddy struct {
	Dir       string
	Config    string // the Caddyfile's path
	HTTPPort  int
	AdminPort int
	Base      string // http://127.0.0.1:<port>
	Admin     string // http://localhost:<admin port>
	Up        *Upstream
	proc      *testkit.Caddy
}

// caddyfile renders a Caddyfile: global options (admin on its own port,
// storage in the test's directory) plus extra global lines, and one site
// whose body is site with {{UPSTREAM}} replaced.
func (c *Caddy) caddyfile(global, site string) string {
	site = strings.ReplaceAll(site, "{{UPSTREAM}}", c.Up.Addr)
	return fmt.Sprintf(`{
	admin localhost:%d
	storage file_system %s
	auto_https off
	persist_config off
	default_bind 127.0.0.1
	grace_period 1s
%s
}

http://:%d {
%s
}
`, c.AdminPort, filepath.Join(c.Dir, "storage"), global, c.HTTPPort, site)
}

// StartCaddy runs Caddy on a Caddyfile made of global and site until the
// test ends.
func StartCaddy(t testing.TB, global, site string) *Caddy {
	t.Helper()
	c := &Caddy{Up: NewUpstream(t), proc: testkit.NewCaddy(t, caddyBin)}
	c.Dir, c.Config, c.AdminPort = c.proc.Dir, c.proc.ConfigPath, c.proc.AdminPort
	c.HTTPPort = freePort(t)
	c.Base = fmt.Sprintf("http://127.0.0.1:%d", c.HTTPPort)
	c.Admin = "http://" + c.proc.AdminAddr()
	c.write(t, global, site)
	c.Start(t)
	return c
}

func (c *Caddy) write(t testing.TB, global, site string) {
	t.Helper()
	if err := c.proc.WriteConfig(c.caddyfile(global, site)); err != nil {
		t.Fatal(err)
	}
}

// Start runs the process and waits until it serves.
func (c *Caddy) Start(t testing.TB) {
	t.Helper()
	if err := c.proc.Start(); err != nil {
		t.Fatal(err)
	}
}

// Stop ends the process (SIGTERM, then SIGKILL after a few seconds).
func (c *Caddy) Stop() { c.proc.Stop() }

// Reload writes a new Caddyfile and loads it with `caddy reload`.
func (c *Caddy) Reload(t testing.TB, global, site string) {
	t.Helper()
	c.write(t, global, site)
	if err := c.proc.Reload(); err != nil {
		t.Fatal(err)
	}
}

// Run runs a caddy subcommand in the test's environment and returns its
// standard output (standard error is added to the error).
func (c *Caddy) Run(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return runCaddy(t, c.Dir, args...)
}

// runCaddy runs a caddy subcommand with its home under dir and returns its
// standard output (standard error is added to the error).
func runCaddy(t testing.TB, dir string, args ...string) (string, error) {
	t.Helper()
	stdout, stderr, err := testkit.RunCaddy(caddyBin, dir, nil, 60*time.Second, args...)
	if errors.Is(err, testkit.ErrTimedOut) || errors.Is(err, testkit.ErrBadOutput) {
		t.Fatalf("%v\n%s%s", err, stdout, stderr)
	}
	if err != nil {
		return stdout, fmt.Errorf("%w\nstderr:\n%s", err, stderr)
	}
	return stdout, nil
}

// moduleLogs returns the log lines of the session module (its handler and
// admin API), which log through the handler's logger.
func moduleLogs(logs string) string {
	var out strings.Builder
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"logger":"http.handlers.session`) {
			out.WriteString(line + "\n")
		}
	}
	return out.String()
}

// writeFile writes content to a new file of the test and returns its path.
func writeFile(t testing.TB, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Logs returns what the process wrote so far.
func (c *Caddy) Logs() string { return c.proc.Logs() }

// ---------------------------------------------------------------------------
// The upstream

// Upstream stands for the shop behind the gateway:
//   - /login?c=<customer> signs a customer in: X-Session-Set with the
//     customer ID and X-Session-Rotate, as an app does at login;
//   - any other path answers with the customer ID it was given
//     (X-Session-Customerid), or "anonymous".
type Upstream struct {
	Addr string
}

// NewUpstream starts an upstream for the test.
func NewUpstream(t testing.TB) *Upstream {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/login" {
			id, _ := json.Marshal(map[string]string{"customerId": r.URL.Query().Get("c")})
			w.Header().Set("X-Session-Set", string(id))
			w.Header().Set("X-Session-Rotate", "1")
			io.WriteString(w, "welcome")
			return
		}
		who := r.Header.Get("X-Session-Customerid")
		if who == "" {
			who = "anonymous"
		}
		io.WriteString(w, who)
	}))
	t.Cleanup(srv.Close)
	return &Upstream{Addr: strings.TrimPrefix(srv.URL, "http://")}
}

// ---------------------------------------------------------------------------
// Clients

var client = &http.Client{
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
	Timeout: 30 * time.Second,
}

// Resp is a response with its body read.
type Resp struct {
	Status int
	Header http.Header
	Body   string
}

// do sends a request; header holds "Name: value" lines.
func do(t testing.TB, method, url, body string, header ...string) *Resp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, line := range header {
		k, v, _ := strings.Cut(line, ":")
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &Resp{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

// Browser keeps one session cookie.
type Browser struct {
	c      *Caddy
	Name   string // the cookie's name
	Cookie string // its value
}

// NewBrowser returns a browser with no cookie.
func (c *Caddy) NewBrowser() *Browser { return &Browser{c: c, Name: "__session"} }

// Do sends a request with the browser's cookie and keeps a new one.
func (b *Browser) Do(t testing.TB, method, path, body string) *Resp {
	t.Helper()
	var hdr []string
	if b.Cookie != "" {
		hdr = append(hdr, "Cookie: "+b.Name+"="+b.Cookie)
	}
	r := do(t, method, b.c.Base+path, body, hdr...)
	for _, line := range r.Header["Set-Cookie"] {
		ck, err := http.ParseSetCookie(line)
		if err != nil || ck.Name != b.Name {
			continue
		}
		if ck.MaxAge < 0 {
			b.Cookie = ""
		} else {
			b.Cookie = ck.Value
		}
	}
	return r
}

// Login signs the browser in as customer.
func (b *Browser) Login(t testing.TB, customer string) {
	t.Helper()
	if r := b.Do(t, "GET", "/login?c="+customer, ""); r.Status != 200 || b.Cookie == "" {
		t.Fatalf("login as %s: %d %q, cookie %q", customer, r.Status, r.Body, b.Cookie)
	}
}

// Who returns the customer the upstream sees for the browser.
func (b *Browser) Who(t testing.TB) string {
	t.Helper()
	r := b.Do(t, "GET", "/whoami", "")
	if r.Status != 200 {
		t.Fatalf("GET /whoami: %d %q", r.Status, r.Body)
	}
	return r.Body
}

// adminJSON calls the admin API and decodes a JSON answer into a map.
func (c *Caddy) adminJSON(t testing.TB, method, path, body string, want int, header ...string) map[string]any {
	t.Helper()
	r := do(t, method, c.Admin+path, body, header...)
	if r.Status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.Body), &m); err != nil {
		t.Fatalf("%s %s: not a JSON object: %s", method, path, r.Body)
	}
	return m
}

// number reads a JSON number field as an int.
func number(t testing.TB, m map[string]any, key string) int {
	t.Helper()
	f, ok := m[key].(float64)
	if !ok {
		t.Fatalf("no number %q in %v", key, m)
	}
	return int(f)
}

// ---------------------------------------------------------------------------
// Redis

// startRedis runs a redis-server of the test's own on a spare loopback
// port, without persistence, and returns its address. Without
// redis-server the test is skipped, or fails when CI is set.
func startRedis(t testing.TB) string {
	t.Helper()
	return testkit.StartRedis(t).Addr()
}
