package ops

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// caddyBin is the Caddy that TestMain builds from ./cmd/caddy.
var caddyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "caddy-session-ops-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		caddyBin = filepath.Join(dir, "caddy")
		cmd := exec.Command("go", "build", "-o", caddyBin, "./cmd/caddy")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "ops: go build ./cmd/caddy: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// freePort returns a loopback port that was free a moment ago and that no
// other test of this process got (never 2019, Caddy's default admin port:
// the kernel hands out ephemeral ports well above it).
func freePort(t testing.TB) int {
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
		if !dup && p != 2019 {
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Caddy is one Caddy process: the built binary on a Caddyfile of the test.
type Caddy struct {
	t         testing.TB
	Dir       string
	Config    string // the Caddyfile's path
	HTTPPort  int
	AdminPort int
	Base      string // http://127.0.0.1:<port>
	Admin     string // http://localhost:<admin port>
	Up        *Upstream

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs syncBuffer
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
	c := &Caddy{t: t, Dir: t.TempDir(), Up: NewUpstream(t)}
	c.HTTPPort, c.AdminPort = freePort(t), freePort(t)
	c.Base = fmt.Sprintf("http://127.0.0.1:%d", c.HTTPPort)
	c.Admin = fmt.Sprintf("http://localhost:%d", c.AdminPort)
	c.Config = filepath.Join(c.Dir, "Caddyfile")
	c.write(t, global, site)
	t.Cleanup(func() {
		c.Stop()
		logs := c.Logs()
		if strings.Contains(logs, "WARNING: DATA RACE") || strings.Contains(logs, "panic:") {
			t.Errorf("the Caddy process raced or panicked")
		}
		if t.Failed() {
			b, _ := os.ReadFile(c.Config)
			t.Logf("Caddyfile:\n%s\nCaddy logs:\n%s", b, logs)
		}
	})
	c.Start(t)
	return c
}

func (c *Caddy) write(t testing.TB, global, site string) {
	t.Helper()
	if err := os.WriteFile(c.Config, []byte(c.caddyfile(global, site)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// env is the environment of the test's Caddy processes: a home of their
// own, so that nothing reads or writes the user's Caddy data.
func (c *Caddy) env() []string {
	return append(os.Environ(),
		"HOME="+filepath.Join(c.Dir, "home"),
		"XDG_CONFIG_HOME="+filepath.Join(c.Dir, "home", "config"),
		"XDG_DATA_HOME="+filepath.Join(c.Dir, "home", "data"),
	)
}

// Start runs the process and waits until it serves.
func (c *Caddy) Start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(caddyBin, "run", "--config", c.Config, "--adapter", "caddyfile")
	cmd.Env = c.env()
	cmd.Stdout, cmd.Stderr = &c.logs, &c.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	c.mu.Lock()
	c.cmd, c.done = cmd, done
	c.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("caddy exited before serving:\n%s", c.Logs())
		default:
		}
		// The site's port alone is not proof: another test's freePort
		// probe may hold it for an instant. Caddy's admin endpoint
		// answering is; by then the site is bound too, or Caddy has
		// exited saying why.
		if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.HTTPPort), 200*time.Millisecond); err == nil {
			conn.Close()
			if adminUp(c.Admin) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy did not listen:\n%s", c.Logs())
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// adminUp reports whether Caddy's admin endpoint at base answers.
func adminUp(base string) bool {
	client := http.Client{Timeout: 500 * time.Millisecond}
	resp, err := client.Get(base + "/config/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Stop ends the process (SIGTERM, then SIGKILL after a few seconds).
func (c *Caddy) Stop() {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Reload writes a new Caddyfile and loads it with `caddy reload`.
func (c *Caddy) Reload(t testing.TB, global, site string) {
	t.Helper()
	c.write(t, global, site)
	out, err := c.Run(t, "reload", "--config", c.Config, "--adapter", "caddyfile",
		"--address", fmt.Sprintf("localhost:%d", c.AdminPort), "--force")
	if err != nil {
		t.Fatalf("caddy reload: %v\n%s", err, out)
	}
}

// Run runs a caddy subcommand in the test's environment and returns its
// standard output (standard error is added to the error).
func (c *Caddy) Run(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return runCaddy(t, c.env(), args...)
}

func runCaddy(t testing.TB, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(caddyBin, args...)
	cmd.Env = env
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return stdout.String(), fmt.Errorf("%w\nstderr:\n%s", err, stderr.String())
		}
		return stdout.String(), nil
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("caddy %s did not finish:\n%s%s", strings.Join(args, " "), stdout.String(), stderr.String())
		return "", nil
	}
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
func (c *Caddy) Logs() string { return c.logs.String() }

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
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		msg := "redis-server is not in PATH: install Redis (Debian: apt-get install redis-server) to run the Redis admin tests"
		if os.Getenv("CI") != "" {
			t.Fatal(msg + " (CI is set: a failure, not a skip)")
		}
		t.Skip(msg)
	}
	for attempt := 0; attempt < 5; attempt++ {
		port := freePort(t)
		dir := t.TempDir()
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir)
		var log syncBuffer
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		addr := "127.0.0.1:" + strconv.Itoa(port)
		for i := 0; i < 100; i++ {
			select {
			case <-done:
				i = 100 // exited: port taken, try another
				continue
			default:
			}
			if conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
				conn.Close()
				t.Cleanup(func() {
					_ = cmd.Process.Kill()
					<-done
				})
				return addr
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = cmd.Process.Kill()
		<-done
	}
	t.Fatal("could not start redis-server")
	return ""
}
