package integration

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// caddyBin is the Caddy binary TestMain builds from ./cmd/caddy.
var caddyBin string

// haveModule is true when that binary lists http.handlers.session.
var haveModule bool

// buildInfo says why haveModule is false.
var buildInfo string

func TestMain(m *testing.M) {
	flag.Parse()
	// Most tests spend their time waiting on a Caddy process or on a
	// timeout, not on the CPU: run more of them at once than the default
	// GOMAXPROCS, unless the caller chose.
	parallelSet := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "test.parallel" {
			parallelSet = true
		}
	})
	if !parallelSet {
		_ = flag.Set("test.parallel", "8")
	}

	dir, err := os.MkdirTemp("", "caddy-session-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		root, err := filepath.Abs("..")
		if err == nil {
			_, err = os.Stat(filepath.Join(root, "go.mod"))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "integration: cannot find the module root:", err)
			return 1
		}
		caddyBin = filepath.Join(dir, "caddy")
		args := []string{"build", "-o", caddyBin}
		if os.Getenv("CADDY_SESSION_RACE") != "" {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/caddy")
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "integration: go %s: %v\n%s", strings.Join(args, " "), err, out)
			return 1
		}
		out, err := exec.Command(caddyBin, "list-modules").CombinedOutput()
		switch {
		case err != nil:
			buildInfo = fmt.Sprintf("caddy list-modules: %v\n%s", err, out)
		case !bytes.Contains(out, []byte("http.handlers.session")):
			buildInfo = "the Caddy built from ./cmd/caddy does not list http.handlers.session (is caddymodule blank-imported?)"
		default:
			haveModule = true
		}
		return m.Run()
	}()
	os.Exit(code)
}

func requireModule(t testing.TB) {
	t.Helper()
	if !haveModule {
		t.Fatal(buildInfo)
	}
}

// ---------------------------------------------------------------------------
// Ports and logs

var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// portLockDir holds one lock file per port handed out, so that test
// processes running at the same time (Caddy binds with SO_REUSEPORT, so a
// shared port would not fail, it would split the traffic) never share one.
var portLockDir = filepath.Join(os.TempDir(), "caddy-session-integration-ports")

// freePort returns a loopback TCP port that was free a moment ago and that
// no other test, of this process or of another one, holds.
func freePort(t testing.TB) int {
	t.Helper()
	if err := os.MkdirAll(portLockDir, 0o777); err != nil {
		t.Fatal(err)
	}
	for range 100 {
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
		if dup {
			continue
		}
		f, err := os.OpenFile(filepath.Join(portLockDir, strconv.Itoa(p)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		t.Cleanup(func() { f.Close() })
		return p
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

// ---------------------------------------------------------------------------
// Caddy processes

// CaddyOpts describe one test's Caddy.
type CaddyOpts struct {
	// Session is the body of the session block in the default site.
	Session string
	// Site replaces the default site body. {{SESSION}} and {{UPSTREAM}}
	// are replaced by Session and the upstream's host:port.
	Site string
	// Global holds extra lines for the global options block.
	Global string
	// Env holds extra environment variables (KEY=value).
	Env []string
	// Upstream is the echo upstream; nil starts a new one.
	Upstream *Upstream
	// StorageDir is Caddy's storage; empty means a new directory.
	StorageDir string
	// TLS serves https://127.0.0.1:<port> with Caddy's internal CA.
	TLS bool
	// Sites, when set, replaces the whole site block: several site blocks,
	// each with its own address. {{PORT}}, {{SESSION}} and {{UPSTREAM}}
	// are replaced.
	Sites string
}

const defaultSite = `session {
{{SESSION}}
}
reverse_proxy {{UPSTREAM}}`

// Caddy is one Caddy process run by a test.
type Caddy struct {
	t          testing.TB
	Dir        string // the test's directory
	StorageDir string // Caddy's storage (generated secrets land here)
	ConfigPath string
	HTTPPort   int
	AdminPort  int
	Base       string // http://127.0.0.1:<port>
	Host       string // 127.0.0.1:<port>, the Host header clients send
	Up         *Upstream
	opts       CaddyOpts

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	mark int // where the current process's logs start
	logs syncBuffer
}

// StartCaddy writes a Caddyfile for o and runs Caddy on it until the test
// ends.
func StartCaddy(t testing.TB, o CaddyOpts) *Caddy {
	t.Helper()
	return StartCaddies(t, o)[0]
}

// StartCaddies starts one Caddy per opts at the same moment, then waits for
// all of them.
func StartCaddies(t testing.TB, opts ...CaddyOpts) []*Caddy {
	t.Helper()
	cs := make([]*Caddy, len(opts))
	for i, o := range opts {
		cs[i] = newCaddy(t, o)
	}
	for _, c := range cs {
		c.launch(t)
	}
	for _, c := range cs {
		// A port found free may be taken since, as the source port of
		// some connection: then start again on new ports.
		for attempt := 1; !c.waitReady(t); attempt++ {
			if attempt == 5 {
				t.Fatalf("caddy could not bind its ports:\n%s", c.Logs())
			}
			c.setPorts(t)
			c.writeConfig(t, c.opts)
			c.launch(t)
		}
	}
	return cs
}

// newCaddy prepares a Caddy (config, ports, cleanup) without starting it.
func newCaddy(t testing.TB, o CaddyOpts) *Caddy {
	t.Helper()
	requireModule(t)
	if o.Upstream == nil {
		o.Upstream = NewUpstream(t)
	}
	c := &Caddy{t: t, Dir: t.TempDir(), Up: o.Upstream, opts: o}
	c.setPorts(t)
	c.StorageDir = o.StorageDir
	if c.StorageDir == "" {
		c.StorageDir = filepath.Join(c.Dir, "storage")
	}
	c.ConfigPath = filepath.Join(c.Dir, "Caddyfile")
	c.writeConfig(t, o)
	t.Cleanup(func() {
		c.stop(false)
		logs := c.Logs()
		if strings.Contains(logs, "WARNING: DATA RACE") {
			t.Errorf("the Caddy process reported a data race")
		}
		if strings.Contains(logs, "panic serving") || strings.Contains(logs, "goroutine ") && strings.Contains(logs, "panic:") {
			t.Errorf("the Caddy process panicked")
		}
		if t.Failed() {
			t.Logf("Caddyfile:\n%s\nCaddy logs:\n%s", c.caddyfile(), logs)
		}
	})
	return c
}

// setPorts picks new ports for c.
func (c *Caddy) setPorts(t testing.TB) {
	c.HTTPPort = freePort(t)
	c.AdminPort = freePort(t)
	c.Host = fmt.Sprintf("127.0.0.1:%d", c.HTTPPort)
	c.Base = "http://" + c.Host
	if c.opts.TLS {
		c.Base = "https://" + c.Host
	}
}

// renderCaddyfile returns the Caddyfile for o on the given ports.
func renderCaddyfile(o CaddyOpts, httpPort, adminPort int, storage, upstream string) string {
	site := o.Site
	if site == "" {
		site = defaultSite
	}
	site = strings.ReplaceAll(site, "{{SESSION}}", o.Session)
	site = strings.ReplaceAll(site, "{{UPSTREAM}}", upstream)
	autoHTTPS, address := "off", fmt.Sprintf("http://:%d", httpPort)
	if o.TLS {
		autoHTTPS, address = "disable_redirects\n\tskip_install_trust", fmt.Sprintf("https://127.0.0.1:%d", httpPort)
		site = "tls internal\n" + site
	}
	sites := fmt.Sprintf("%s {\n%s\n}\n", address, site)
	if o.Sites != "" {
		sites = strings.ReplaceAll(o.Sites, "{{PORT}}", strconv.Itoa(httpPort))
		sites = strings.ReplaceAll(sites, "{{SESSION}}", o.Session)
		sites = strings.ReplaceAll(sites, "{{UPSTREAM}}", upstream)
	}
	return fmt.Sprintf(`{
	admin localhost:%d
	storage file_system %s
	auto_https %s
	persist_config off
	default_bind 127.0.0.1
	grace_period 1s
%s
}

%s`, adminPort, storage, autoHTTPS, o.Global, sites)
}

func (c *Caddy) writeConfig(t testing.TB, o CaddyOpts) {
	t.Helper()
	src := renderCaddyfile(o, c.HTTPPort, c.AdminPort, c.StorageDir, c.Up.Addr)
	if err := os.WriteFile(c.ConfigPath, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (c *Caddy) caddyfile() string {
	b, _ := os.ReadFile(c.ConfigPath)
	return string(b)
}

// caddyEnv is the environment of Caddy processes: a home of their own so no
// test reads or writes the user's Caddy data, plus extra.
func caddyEnv(dir string, extra []string) []string {
	env := append(os.Environ(),
		"HOME="+filepath.Join(dir, "home"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "home", "config"),
		"XDG_DATA_HOME="+filepath.Join(dir, "home", "data"),
	)
	return append(env, extra...)
}

// start runs Caddy again on its config and ports (after a stop).
func (c *Caddy) start(t testing.TB) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c.launch(t)
		if c.waitReady(t) {
			return
		}
		if attempt == 10 {
			t.Fatalf("caddy could not bind its ports again:\n%s", c.Logs())
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func (c *Caddy) launch(t testing.TB) {
	t.Helper()
	cmd := exec.Command(caddyBin, "run", "--config", c.ConfigPath, "--adapter", "caddyfile")
	cmd.Env = caddyEnv(c.Dir, c.opts.Env)
	cmd.Stdout = &c.logs
	cmd.Stderr = &c.logs
	c.mu.Lock()
	c.mark = len(c.logs.String())
	c.mu.Unlock()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	c.mu.Lock()
	c.cmd, c.done = cmd, done
	c.mu.Unlock()
}

// waitReady waits until Caddy listens. It returns false when Caddy exited
// because a port was taken, and fails the test on any other exit.
func (c *Caddy) waitReady(t testing.TB) bool {
	t.Helper()
	c.mu.Lock()
	done, mark := c.done, c.mark
	c.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			c.mu.Lock()
			c.cmd = nil
			c.mu.Unlock()
			if strings.Contains(c.Logs()[mark:], "address already in use") {
				return false
			}
			t.Fatalf("caddy exited before serving:\n%s\nCaddyfile:\n%s", c.Logs(), c.caddyfile())
		default:
		}
		// Ready when this process says so and the port answers.
		if strings.Contains(c.Logs()[mark:], "serving initial configuration") {
			conn, err := net.DialTimeout("tcp", c.Host, 200*time.Millisecond)
			if err == nil {
				conn.Close()
				return true
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy did not get ready on %s:\n%s", c.Host, c.Logs())
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// stop ends the process: SIGTERM then, after a few seconds, SIGKILL when
// graceful; SIGKILL at once otherwise.
func (c *Caddy) stop(graceful bool) {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	if graceful {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
			return
		case <-time.After(5 * time.Second):
		}
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart stops Caddy gracefully and starts it again on the same config,
// ports and storage. env, when given, replaces the extra environment.
func (c *Caddy) Restart(t testing.TB, env ...string) {
	t.Helper()
	c.stop(true)
	if env != nil {
		c.opts.Env = env
	}
	c.start(t)
}

// KillRestart stops Caddy with SIGKILL (as a crash would) and starts it
// again on the same config, ports and storage.
func (c *Caddy) KillRestart(t testing.TB) {
	t.Helper()
	c.stop(false)
	c.start(t)
}

// Reload loads o (same ports, storage and upstream) into the running Caddy
// with `caddy reload`.
func (c *Caddy) Reload(t testing.TB, o CaddyOpts) {
	t.Helper()
	o.Upstream = c.Up
	o.StorageDir = c.StorageDir
	o.Env = c.opts.Env
	c.opts = o
	c.writeConfig(t, o)
	out, err := runCaddy(t, c.Dir, nil, "reload", "--config", c.ConfigPath, "--adapter", "caddyfile",
		"--address", fmt.Sprintf("localhost:%d", c.AdminPort), "--force")
	if err != nil {
		t.Fatalf("caddy reload: %v\n%s", err, out)
	}
}

// Logs returns everything the process wrote so far, across restarts.
func (c *Caddy) Logs() string { return c.logs.String() }

// FinalLogs stops Caddy gracefully and returns all it wrote, flushed.
func (c *Caddy) FinalLogs() string {
	c.stop(true)
	return c.logs.String()
}

// waitLog waits up to a second for a log line matching re after offset
// mark of the logs.
func waitLog(c *Caddy, mark int, re *regexp.Regexp) bool {
	for range 20 {
		if re.MatchString(c.Logs()[mark:]) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// runCaddy runs a caddy subcommand with its home under dir and returns its
// combined output.
func runCaddy(t testing.TB, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	stdout, stderr, err := runCaddySplit(t, dir, env, args...)
	return stdout + stderr, err
}

// runCaddySplit runs a caddy subcommand and returns its stdout and stderr.
func runCaddySplit(t testing.TB, dir string, env []string, args ...string) (string, string, error) {
	t.Helper()
	requireModule(t)
	cmd := exec.Command(caddyBin, args...)
	cmd.Env = caddyEnv(dir, env)
	var stdout, stderr syncBuffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return stdout.String(), stderr.String(), err
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("caddy %s did not finish:\n%s%s", strings.Join(args, " "), stdout.String(), stderr.String())
		return "", "", nil
	}
}

// ---------------------------------------------------------------------------
// The echo upstream

// Recorded is a request the upstream received.
type Recorded struct {
	Method     string
	Path       string
	RequestURI string
	Host       string
	Header     http.Header
	Trailer    http.Header
	Body       []byte
}

// sessionName reports whether a header name is one the module reserves:
// lowercased, with '_' and '.' read as '-', it starts with "x-session".
func sessionName(name string) bool {
	n := strings.ToLower(name)
	n = strings.NewReplacer("_", "-", ".", "-").Replace(n)
	return strings.HasPrefix(n, "x-session")
}

// SessionHeaders returns the reserved headers the upstream got, by name as
// received.
func (r *Recorded) SessionHeaders() http.Header {
	out := http.Header{}
	for k, v := range r.Header {
		if sessionName(k) {
			out[k] = v
		}
	}
	return out
}

// Cookies returns the cookies of the request's Cookie headers.
func (r *Recorded) Cookies() []*http.Cookie {
	return (&http.Request{Header: r.Header}).Cookies()
}

// UpstreamFunc may set response headers and returns the status (0: 200).
type UpstreamFunc func(rec *Recorded, h http.Header) int

// Upstream is an in-process HTTP/1.1 server behind Caddy that records every
// request. Any request may carry "X-Test-Resp: Name: value" headers: the
// upstream adds each as a response header (so tests drive write-back from
// the client side); "X-Test-Status: n" sets the status, "X-Test-103:
// Name: value" lines go out in a 103 response first, "X-Test-Body-Size: n"
// adds n bytes to the body.
type Upstream struct {
	Addr string
	URL  string

	mu     sync.Mutex
	reqs   []*Recorded
	routes map[string]UpstreamFunc
}

// NewUpstream starts an upstream for the test.
func NewUpstream(t testing.TB) *Upstream {
	u := &Upstream{routes: map[string]UpstreamFunc{}}
	srv := httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(srv.Close)
	u.URL = srv.URL
	u.Addr = strings.TrimPrefix(srv.URL, "http://")
	return u
}

func (u *Upstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := &Recorded{
		Method:     r.Method,
		Path:       r.URL.Path,
		RequestURI: r.RequestURI,
		Host:       r.Host,
		Header:     r.Header.Clone(),
		Trailer:    r.Trailer.Clone(),
		Body:       body,
	}
	u.mu.Lock()
	u.reqs = append(u.reqs, rec)
	fn := u.routes[r.URL.Path]
	u.mu.Unlock()

	// X-Test-103 lines go out in a 103 Early Hints response only.
	if early := r.Header.Values("X-Test-103"); len(early) > 0 {
		var names []string
		for _, line := range early {
			if name, value, ok := strings.Cut(line, ":"); ok {
				name = strings.TrimSpace(name)
				w.Header().Add(name, strings.TrimSpace(value))
				names = append(names, name)
			}
		}
		w.WriteHeader(http.StatusEarlyHints)
		for _, n := range names {
			w.Header().Del(n)
		}
	}
	status := http.StatusOK
	for _, line := range r.Header.Values("X-Test-Resp") {
		name, value, ok := strings.Cut(line, ":")
		if ok {
			w.Header().Add(strings.TrimSpace(name), strings.TrimSpace(value))
		}
	}
	if s := r.Header.Get("X-Test-Status"); s != "" {
		fmt.Sscan(s, &status)
	}
	if fn != nil {
		if s := fn(rec, w.Header()); s != 0 {
			status = s
		}
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	w.Header().Set("X-Upstream", "1")
	w.WriteHeader(status)
	fmt.Fprintf(w, "upstream %s %s\n", r.Method, r.URL.Path)
	// X-Test-Body-Size: n appends n bytes of 'x', through io.Copy (and so
	// ReadFrom where the writer has it).
	if s := r.Header.Get("X-Test-Body-Size"); s != "" {
		var n int64
		fmt.Sscan(s, &n)
		_, _ = io.Copy(w, io.LimitReader(repeatReader('x'), n))
	}
}

// repeatReader reads an endless run of one byte.
type repeatReader byte

func (b repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

// Handle sets the response function for a path.
func (u *Upstream) Handle(path string, fn UpstreamFunc) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.routes[path] = fn
}

// Requests returns what the upstream received so far.
func (u *Upstream) Requests() []*Recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*Recorded(nil), u.reqs...)
}

// Count returns how many requests the upstream received.
func (u *Upstream) Count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// Last returns the latest request, failing the test when there is none.
func (u *Upstream) Last(t testing.TB) *Recorded {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("the upstream received no request")
	}
	return u.reqs[len(u.reqs)-1]
}

// ---------------------------------------------------------------------------
// The client

// client has no cookie jar, no keep-alive (Caddy restarts under it), no
// transparent decompression and does not follow redirects.
var client = &http.Client{
	Transport: &http.Transport{
		Proxy:              nil,
		DisableKeepAlives:  true,
		DisableCompression: true,
		// Only TLS tests' Caddy, with its internal CA, is reached over
		// https.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       15 * time.Second,
}

// Req is a request as a test means it, header names sent with their exact
// spelling.
type Req struct {
	Method string
	Path   string
	Body   string
	// BodyReader, when set, replaces Body (ContentLength -1: chunked).
	BodyReader io.Reader
	CT         string   // Content-Type, when not empty
	Cookie     string   // the exact Cookie header, when not empty
	Host       string   // the Host header, when not empty (else Caddy's address)
	Header     []string // "Name: value" lines, exact name spelling, repeats kept
}

// Resp is a response with its body read.
type Resp struct {
	Status int
	Header http.Header
	Body   []byte
}

// SetCookies returns the raw Set-Cookie lines.
func (r *Resp) SetCookies() []string { return r.Header["Set-Cookie"] }

func (r *Resp) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n", r.Status)
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range r.Header[k] {
			if len(v) > 200 {
				v = v[:200] + "…"
			}
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	body := string(r.Body)
	if len(body) > 500 {
		body = body[:500] + "…"
	}
	b.WriteString("\n" + body)
	return b.String()
}

// Do sends q to Caddy.
func (c *Caddy) Do(t testing.TB, q Req) *Resp {
	t.Helper()
	r, err := c.DoErr(q)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// DoErr sends q to Caddy; safe to call from any goroutine.
func (c *Caddy) DoErr(q Req) (*Resp, error) {
	if q.Method == "" {
		q.Method = http.MethodGet
	}
	var body io.Reader
	if q.BodyReader != nil {
		body = q.BodyReader
	} else if q.Body != "" {
		body = strings.NewReader(q.Body)
	}
	req, err := http.NewRequest(q.Method, c.Base+q.Path, body)
	if err != nil {
		return nil, err
	}
	if q.BodyReader != nil {
		req.ContentLength = -1
	}
	if q.Host != "" {
		req.Host = q.Host
	}
	if q.CT != "" {
		req.Header.Set("Content-Type", q.CT)
	}
	if q.Cookie != "" {
		req.Header.Set("Cookie", q.Cookie)
	}
	for _, line := range q.Header {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("bad header line %q", line)
		}
		req.Header[name] = append(req.Header[name], strings.TrimSpace(value))
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", q.Method, q.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading body: %w", q.Method, q.Path, err)
	}
	return &Resp{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// Raw writes raw to a new connection to Caddy and reads one response.
func (c *Caddy) Raw(t testing.TB, raw string) *Resp {
	t.Helper()
	conn, err := net.DialTimeout("tcp", c.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading raw response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &Resp{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// RawUpload writes head, then body from another goroutine (ignoring write
// errors: the server may answer and close early), and reads one response.
func (c *Caddy) RawUpload(t testing.TB, head string, body []byte) *Resp {
	t.Helper()
	conn, err := net.DialTimeout("tcp", c.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = conn.Write(body) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading raw response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &Resp{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Jar is a minimal cookie jar under the test's control: it applies
// Set-Cookie lines (deleting on Max-Age<=0 or a past Expires) and never
// expires anything by itself, so the server's own checks are what is
// tested.
type Jar struct {
	m map[string]string
}

// NewJar returns an empty jar.
func NewJar() *Jar { return &Jar{m: map[string]string{}} }

// Update applies r's Set-Cookie lines.
func (j *Jar) Update(t testing.TB, r *Resp) {
	t.Helper()
	for _, line := range r.SetCookies() {
		ck, err := http.ParseSetCookie(line)
		if err != nil {
			t.Fatalf("unparsable Set-Cookie %q: %v", line, err)
		}
		if ck.MaxAge < 0 || (!ck.Expires.IsZero() && ck.Expires.Before(time.Now()) && ck.MaxAge == 0) {
			delete(j.m, ck.Name)
			continue
		}
		j.m[ck.Name] = ck.Value
	}
}

// Header returns the Cookie header value for the jar's cookies.
func (j *Jar) Header() string {
	names := make([]string, 0, len(j.m))
	for n := range j.m {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, n+"="+j.m[n])
	}
	return strings.Join(parts, "; ")
}

// Get returns one cookie's value.
func (j *Jar) Get(name string) string { return j.m[name] }

// Set sets one cookie.
func (j *Jar) Set(name, value string) { j.m[name] = value }

// Names returns the cookie names, sorted.
func (j *Jar) Names() []string {
	names := make([]string, 0, len(j.m))
	for n := range j.m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Clone copies the jar.
func (j *Jar) Clone() *Jar {
	n := NewJar()
	for k, v := range j.m {
		n.m[k] = v
	}
	return n
}

// Browser sends the jar's cookies and keeps what comes back.
type Browser struct {
	C   *Caddy
	Jar *Jar
}

// NewBrowser returns a browser with an empty jar.
func (c *Caddy) NewBrowser() *Browser { return &Browser{C: c, Jar: NewJar()} }

// Do sends q with the jar's cookies (unless q.Cookie is set) and updates
// the jar.
func (b *Browser) Do(t testing.TB, q Req) *Resp {
	t.Helper()
	if q.Cookie == "" {
		q.Cookie = b.Jar.Header()
	}
	r := b.C.Do(t, q)
	b.Jar.Update(t, r)
	return r
}

// Get is a GET of path with extra header lines.
func (b *Browser) Get(t testing.TB, path string, header ...string) *Resp {
	t.Helper()
	return b.Do(t, Req{Method: http.MethodGet, Path: path, Header: header})
}

// API calls the default API path; a non-empty body goes as application/json.
func (b *Browser) API(t testing.TB, method, body string, header ...string) *Resp {
	t.Helper()
	q := Req{Method: method, Path: "/__session", Body: body, Header: header}
	if body != "" {
		q.CT = "application/json"
	}
	return b.Do(t, q)
}

// Seed makes the upstream write data into the session (X-Session-Set) on a
// normal request, and returns the response.
func (b *Browser) Seed(t testing.TB, data string) *Resp {
	t.Helper()
	r := b.Get(t, "/_test/seed", "X-Test-Resp: X-Session-Set: "+data)
	if r.Status != http.StatusOK {
		t.Fatalf("seeding the session: %s", r)
	}
	return r
}

// ---------------------------------------------------------------------------
// Assertions

// jsonObject decodes an API answer, checking it is a JSON object.
func jsonObject(t testing.TB, r *Resp) map[string]any {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want application/json; response:\n%s", ct, r)
	}
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil || m == nil {
		t.Fatalf("body is not a JSON object (%v):\n%s", err, r)
	}
	return m
}

// normJSON returns v as it reads back from JSON.
func normJSON(t testing.TB, v any) any {
	t.Helper()
	if s, ok := v.(string); ok {
		var out any
		if err := json.Unmarshal([]byte(s), &out); err != nil {
			t.Fatalf("bad JSON in test: %s", s)
		}
		return out
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// wantObject checks an API answer: status, JSON object equal to want (a JSON
// text).
func wantObject(t testing.TB, r *Resp, status int, want string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; response:\n%s", r.Status, status, r)
	}
	got := jsonObject(t, r)
	if w := normJSON(t, want); !reflect.DeepEqual(any(got), w) {
		t.Fatalf("body %s, want %s", r.Body, want)
	}
}

// wantError checks an error answer: status, JSON {"error": "<non-empty>"}.
func wantError(t testing.TB, r *Resp, status int) string {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; response:\n%s", r.Status, status, r)
	}
	m := jsonObject(t, r)
	msg, _ := m["error"].(string)
	if strings.TrimSpace(msg) == "" {
		t.Fatalf("error body without a message: %s", r.Body)
	}
	return msg
}

// noSetCookie checks that r sets no cookie.
func noSetCookie(t testing.TB, r *Resp) {
	t.Helper()
	if sc := r.SetCookies(); len(sc) > 0 {
		t.Fatalf("unexpected Set-Cookie %q; response:\n%s", sc, r)
	}
}

// setCookieFor returns the Set-Cookie lines for name.
func setCookieFor(r *Resp, name string) []string {
	var out []string
	for _, line := range r.SetCookies() {
		if n, _, _ := strings.Cut(line, "="); strings.TrimSpace(n) == name {
			out = append(out, line)
		}
	}
	return out
}

// parseSetCookie parses one Set-Cookie line.
func parseSetCookie(t testing.TB, line string) *http.Cookie {
	t.Helper()
	ck, err := http.ParseSetCookie(line)
	if err != nil {
		t.Fatalf("unparsable Set-Cookie %q: %v", line, err)
	}
	return ck
}

// attrs returns a Set-Cookie line's attributes, lowercased name to value
// ("" for flags).
func attrs(line string) map[string]string {
	out := map[string]string{}
	parts := strings.Split(line, ";")
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		out[strings.ToLower(k)] = v
	}
	return out
}

// isExpiry reports whether a Set-Cookie line deletes its cookie.
func isExpiry(t testing.TB, line string) bool {
	ck := parseSetCookie(t, line)
	return ck.MaxAge < 0 || (ck.MaxAge == 0 && !ck.Expires.IsZero() && ck.Expires.Before(time.Now()))
}

// noSessionHeaders checks that the upstream got no reserved header.
func noSessionHeaders(t testing.TB, rec *Recorded) {
	t.Helper()
	if h := rec.SessionHeaders(); len(h) > 0 {
		t.Fatalf("upstream got session headers %v for %s %s", h, rec.Method, rec.Path)
	}
}

// wantSessionHeaders checks that the reserved headers the upstream got are
// exactly want (canonical name to single value).
func wantSessionHeaders(t testing.TB, rec *Recorded, want map[string]string) {
	t.Helper()
	got := rec.SessionHeaders()
	gotFlat := map[string][]string{}
	for k, v := range got {
		gotFlat[http.CanonicalHeaderKey(k)] = append(gotFlat[http.CanonicalHeaderKey(k)], v...)
	}
	wantFlat := map[string][]string{}
	for k, v := range want {
		wantFlat[http.CanonicalHeaderKey(k)] = []string{v}
	}
	if !reflect.DeepEqual(gotFlat, wantFlat) {
		t.Fatalf("upstream session headers\n got %q\nwant %q", gotFlat, wantFlat)
	}
}

// Secrets used by tests (at least 32 bytes each).
const (
	secretA = "secret-A-0123456789abcdefghijklmnopqrstuvwxyz"
	secretB = "secret-B-ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210"
)
