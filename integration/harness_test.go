package integration

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/internal/testkit"
)

// caddyBin is the Caddy binary TestMain builds from ./cmd/caddy (with
// -race when CADDY_SESSION_RACE=1).
var caddyBin string

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
	caddyBin = testkit.MustBuildCaddy("integration", testkit.DefaultCaddy)
	os.Exit(m.Run())
}

// freePort is testkit.FreePort: a loopback port no other test holds.
func freePort(t testing.TB) int { return testkit.FreePort(t) }

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

// Caddy is one Caddy process run by a test: the kit's process plus what
// the tests of this package know about it.
type Caddy struct {
	Dir        string // the test's directory
	StorageDir string // Caddy's storage (generated secrets land here)
	ConfigPath string
	HTTPPort   int
	AdminPort  int
	Base       string // http://127.0.0.1:<port>
	Host       string // 127.0.0.1:<port>, the Host header clients send
	Up         *Upstream
	opts       CaddyOpts
	proc       *testkit.Caddy
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
		untilBound(t, func(attempt int) (*Caddy, bool) {
			if attempt > 1 {
				c.setPorts(t)
				c.writeConfig(t, c.opts)
				c.launch(t)
			}
			return c, c.waitReady(t)
		})
	}
	return cs
}

// untilBound calls start until the Caddy it returns has bound its ports:
// a port found free may be taken before Caddy binds it, so each attempt
// after the first starts again on new ports. The test fails after five.
func untilBound(t testing.TB, start func(attempt int) (*Caddy, bool)) *Caddy {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c, ok := start(attempt)
		if ok {
			return c
		}
		if attempt == 5 {
			t.Fatalf("caddy could not bind its ports in 5 attempts:\n%s", c.Logs())
		}
	}
}

// newCaddy prepares a Caddy (config, ports, cleanup) without starting it.
func newCaddy(t testing.TB, o CaddyOpts) *Caddy {
	t.Helper()
	if o.Upstream == nil {
		o.Upstream = NewUpstream(t)
	}
	dir := t.TempDir()
	c := &Caddy{Dir: dir, Up: o.Upstream, opts: o}
	c.proc = &testkit.Caddy{Bin: caddyBin, Dir: dir, Adapter: "caddyfile", Env: o.Env}
	c.setPorts(t)
	c.StorageDir = o.StorageDir
	if c.StorageDir == "" {
		c.StorageDir = filepath.Join(c.Dir, "storage")
	}
	c.ConfigPath = filepath.Join(c.Dir, "Caddyfile")
	c.proc.ConfigPath = c.ConfigPath
	c.writeConfig(t, o)
	c.proc.Watch(t)
	return c
}

// setPorts picks new ports for c.
func (c *Caddy) setPorts(t testing.TB) {
	c.HTTPPort = freePort(t)
	c.AdminPort = freePort(t)
	c.proc.AdminPort = c.AdminPort
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
	if err := c.proc.WriteConfig(renderCaddyfile(o, c.HTTPPort, c.AdminPort, c.StorageDir, c.Up.Addr)); err != nil {
		t.Fatal(err)
	}
}

func (c *Caddy) caddyfile() string { return c.proc.Config() }

// runConfig runs Caddy on a config file the test wrote itself (its own
// admin port and sites), with its home under dir, until the test ends;
// host:httpPort is where clients reach it.
func runConfig(t testing.TB, dir, path string, httpPort, adminPort int, env []string) *Caddy {
	t.Helper()
	c, ok := tryRunConfig(t, dir, path, httpPort, adminPort, env)
	if !ok {
		t.Fatalf("caddy could not bind its ports:\n%s", c.Logs())
	}
	return c
}

// tryRunConfig is runConfig for callers that retry on new ports: it
// returns false when Caddy exited because a port was taken.
func tryRunConfig(t testing.TB, dir, path string, httpPort, adminPort int, env []string) (*Caddy, bool) {
	t.Helper()
	c := &Caddy{Dir: dir, ConfigPath: path, HTTPPort: httpPort, AdminPort: adminPort, opts: CaddyOpts{Env: env}}
	c.proc = &testkit.Caddy{Bin: caddyBin, Dir: dir, ConfigPath: path, Adapter: "caddyfile", AdminPort: adminPort, Env: env}
	c.Host = fmt.Sprintf("127.0.0.1:%d", httpPort)
	c.Base = "http://" + c.Host
	c.proc.Watch(t)
	c.launch(t)
	return c, c.waitReady(t)
}

// start runs Caddy again on its config and ports (after a stop).
func (c *Caddy) start(t testing.TB) {
	t.Helper()
	c.proc.Env = c.opts.Env
	if err := c.proc.Restart(false); err != nil {
		t.Fatal(err)
	}
}

func (c *Caddy) launch(t testing.TB) {
	t.Helper()
	c.proc.Env = c.opts.Env
	if err := c.proc.Launch(); err != nil {
		t.Fatal(err)
	}
}

// waitReady waits until Caddy serves. It returns false when Caddy exited
// because a port was taken, and fails the test on any other exit.
func (c *Caddy) waitReady(t testing.TB) bool {
	t.Helper()
	err := c.proc.WaitReady()
	if errors.Is(err, testkit.ErrPortTaken) {
		return false
	}
	if err != nil {
		t.Fatalf("%v\nCaddyfile:\n%s", err, c.caddyfile())
	}
	return true
}

// stop ends the process: SIGTERM then, after a few seconds, SIGKILL when
// graceful; SIGKILL at once otherwise.
func (c *Caddy) stop(graceful bool) {
	if graceful {
		c.proc.Stop()
	} else {
		c.proc.Kill()
	}
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
	if err := c.proc.Reload(); err != nil {
		t.Fatal(err)
	}
}

// Logs returns everything the process wrote so far, across restarts.
func (c *Caddy) Logs() string { return c.proc.Logs() }

// FinalLogs stops Caddy gracefully and returns all it wrote, flushed.
func (c *Caddy) FinalLogs() string {
	c.stop(true)
	return c.proc.Logs()
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
	stdout, stderr, err := testkit.RunCaddy(caddyBin, dir, env, 30*time.Second, args...)
	if errors.Is(err, testkit.ErrTimedOut) || errors.Is(err, testkit.ErrBadOutput) {
		t.Fatalf("%v\n%s%s", err, stdout, stderr)
	}
	return stdout, stderr, err
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
