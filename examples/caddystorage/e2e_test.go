package caddystorage_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
	bin := buildCaddy(t, dir)

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
	a := newCaddy(t, bin, dir, "a", storageDir, upstream.Listener.Addr().String())

	// caddy validate provisions the store: it must write nothing.
	if out, err := a.run("validate", "--config", a.config, "--adapter", "caddyfile"); err != nil {
		t.Fatalf("caddy validate: %v\n%s", err, out)
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
	b := newCaddy(t, bin, dir, "b", storageDir, upstream.Listener.Addr().String())
	b.start(t)
	wantCountry(b, "on a second instance", "DE")

	// A restart keeps it.
	a.stop(true)
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

// buildCaddy builds examples/caddystorage/cmd/caddy from the module root.
func buildCaddy(t *testing.T, dir string) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("cannot find the module root: %v", err)
	}
	bin := filepath.Join(dir, "caddy")
	cmd := exec.Command("go", "build", "-o", bin, "./examples/caddystorage/cmd/caddy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// caddyProc is one Caddy instance of the test.
type caddyProc struct {
	name, bin, dir, config string
	host                   string // 127.0.0.1:<port>
	cmd                    *exec.Cmd
	done                   chan struct{}
	logs                   *bytes.Buffer
	logsMu                 *sync.Mutex
}

var secret = "kVq3sXz9Lm2Pw8Rt6Yb1Nc4Hd7Jf0Ga5Ue2Io9Kl3Mn6Bv8C" // 48 characters

// newCaddy writes a Caddyfile for one instance: its own admin and site
// ports, the shared storage, and Caddy killed when the test ends.
func newCaddy(t *testing.T, bin, dir, name, storageDir, upstream string) *caddyProc {
	t.Helper()
	c := &caddyProc{name: name, bin: bin, dir: filepath.Join(dir, name), logs: new(bytes.Buffer), logsMu: new(sync.Mutex)}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c.host = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c.config = filepath.Join(c.dir, "Caddyfile")
	src := fmt.Sprintf(`{
	admin localhost:%d
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
`, freePort(t), storageDir, c.host, secret, upstream)
	if err := os.WriteFile(c.config, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.stop(false)
		if t.Failed() {
			t.Logf("Caddy %s logs:\n%s", c.name, c.output())
		}
	})
	return c
}

// env keeps Caddy away from the user's own Caddy data.
func (c *caddyProc) env() []string {
	home := filepath.Join(c.dir, "home")
	return append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home+"/config", "XDG_DATA_HOME="+home+"/data")
}

// run runs a caddy subcommand to completion.
func (c *caddyProc) run(args ...string) ([]byte, error) {
	cmd := exec.Command(c.bin, args...)
	cmd.Env = c.env()
	return cmd.CombinedOutput()
}

func (c *caddyProc) output() string {
	c.logsMu.Lock()
	defer c.logsMu.Unlock()
	return c.logs.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// start runs Caddy and waits until it serves.
func (c *caddyProc) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(c.bin, "run", "--config", c.config, "--adapter", "caddyfile")
	cmd.Env = c.env()
	cmd.Stdout = lockedWriter{c.logsMu, c.logs}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.cmd, c.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		close(done)
	}(c.done)
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-c.done:
			t.Fatalf("Caddy %s exited before serving:\n%s", c.name, c.output())
		default:
		}
		if conn, err := net.DialTimeout("tcp", c.host, 200*time.Millisecond); err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Caddy %s does not listen on %s:\n%s", c.name, c.host, c.output())
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// stop ends Caddy: SIGTERM first when graceful, SIGKILL otherwise or when
// it lingers.
func (c *caddyProc) stop(graceful bool) {
	if c.cmd == nil {
		return
	}
	if graceful {
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
			c.cmd = nil
			return
		case <-time.After(5 * time.Second):
		}
	}
	c.cmd.Process.Kill()
	<-c.done
	c.cmd = nil
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

var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// freePort returns a loopback port that was free a moment ago and that
// this test process has not handed out before (Caddy binds with
// SO_REUSEPORT, so two instances on one port would both start).
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		portsMu.Lock()
		dup := ports[p]
		ports[p] = true
		portsMu.Unlock()
		if !dup {
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}
