package browser

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/caddy-session/caddy-session/internal/testkit"
)

const (
	// chromiumPath is where Debian's chromium package puts the browser.
	chromiumPath = "/usr/bin/chromium"
	// actionTimeout bounds every browser action and every wait.
	actionTimeout = 15 * time.Second
	// startTimeout bounds starting Chromium, opening a tab and starting
	// Caddy.
	startTimeout = 30 * time.Second
)

var (
	// repoRoot is the module root: Caddyfile.example and demo/ live there.
	repoRoot string
	// caddyBin is the Caddy that TestMain builds from ./cmd/caddy (with
	// -race when CADDY_SESSION_RACE=1).
	caddyBin string
	// buildErr says why there is no caddyBin.
	buildErr error
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err == nil {
		_, err = os.Stat(filepath.Join(root, "go.mod"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "browser: cannot find the module root:", err)
		return 1
	}
	repoRoot = root
	// Without a browser every test skips (or fails under CI): do not spend
	// time on the build.
	if findChromium() != "" {
		caddyBin, buildErr = testkit.BuildCaddy(testkit.DefaultCaddy)
	}
	code := m.Run()
	if shared != nil {
		shared.stop()
		// A race or a panic while Caddy shut down came after every
		// test's own check.
		if err := shared.caddy.Check(); err != nil && code == 0 {
			fmt.Fprintln(os.Stderr, "browser:", err)
			code = 1
		}
	}
	return code
}

// chromiumEnv names another browser binary (Chrome, Chromium) to run
// instead of Debian's.
const chromiumEnv = "CADDY_SESSION_CHROMIUM"

// findChromium returns the browser to run, or "" when there is none.
func findChromium() string {
	if p := os.Getenv(chromiumEnv); p != "" {
		if isExecutable(p) {
			return p
		}
		return ""
	}
	if isExecutable(chromiumPath) {
		return chromiumPath
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// ---------------------------------------------------------------------------
// The demo: one Caddy (gateways, storefront, another origin) and one browser,
// shared by every test of the package. Each test gets browser contexts of
// its own, so no cookie leaks from one test to another.

type demo struct {
	dir        string // Caddy's home, storage, config; the browser's profile
	caddyfile  string // the adapted copy of Caddyfile.example
	cookieBase string // gateway with the default (cookie) store: http://127.0.0.1:<port>
	memoryBase string // the same gateway with `store memory`
	evilPort   int    // another origin: a site that serves attack pages
	caddy      *testkit.Caddy
	releases   []func() // give back the reserved ports

	browserCtx    context.Context
	browserCancel context.CancelFunc
	allocCancel   context.CancelFunc
	chromeOut     testkit.Buffer

	shotsOnce sync.Once
	shotsRoot string
	shotsErr  error
	shotsMu   sync.Mutex
	shots     map[string]*shots
}

var (
	sharedOnce sync.Once
	shared     *demo
	sharedErr  error
)

// setup returns the running demo, starting it on first use. It skips the
// test when Chromium is missing, unless CI is set: then it fails.
func setup(t *testing.T) *demo {
	t.Helper()
	browser := findChromium()
	if browser == "" {
		msg := "chromium is not installed (" + chromiumPath + "; apt-get install chromium): the browser tests need it"
		if p := os.Getenv(chromiumEnv); p != "" {
			msg = chromiumEnv + "=" + p + " is not an executable: the browser tests need a browser"
		}
		if os.Getenv("CI") != "" {
			t.Fatal(msg + ", and CI is set")
		}
		t.Skip(msg)
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	sharedOnce.Do(func() {
		shared, sharedErr = startDemo(browser)
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	d := shared
	mark := d.caddy.Mark()
	t.Cleanup(func() {
		// The demo's Caddy is shared: a race or a panic it printed
		// while this test ran fails this test.
		if err := testkit.CheckOutput("Caddy", d.caddy.LogsSince(mark)); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("Caddyfile:\n%s\nCaddy logs (tail):\n%s\nChromium output (tail):\n%s",
				d.caddyfile, testkit.Tail(d.caddy.Logs(), 6000), testkit.Tail(d.chromeOut.String(), 3000))
		}
	})
	return d
}

func startDemo(browser string) (*demo, error) {
	dir, err := os.MkdirTemp("", "caddy-session-browser-")
	if err != nil {
		return nil, err
	}
	d := &demo{dir: dir, shots: map[string]*shots{}}
	if err := d.startCaddy(); err != nil {
		d.stop()
		return nil, err
	}
	if err := d.startBrowser(browser); err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

// stop ends the browser and Caddy, and removes their files (not the
// screenshots).
func (d *demo) stop() {
	if d == nil {
		return
	}
	if d.browserCancel != nil {
		d.browserCancel()
	}
	if d.allocCancel != nil {
		d.allocCancel()
	}
	if d.caddy != nil {
		d.caddy.Stop()
	}
	for _, release := range d.releases {
		release()
	}
	_ = os.RemoveAll(d.dir)
}

// ---------------------------------------------------------------------------
// Caddy

// ports are the free loopback ports of one Caddy run.
type ports struct {
	cookie, memory, upstream, evil, admin int
}

func (d *demo) startCaddy() error {
	example, err := os.ReadFile(filepath.Join(repoRoot, "Caddyfile.example"))
	if err != nil {
		return err
	}
	evilDir := filepath.Join(d.dir, "other-origin")
	if err := writeAttackPages(evilDir); err != nil {
		return err
	}
	storage := filepath.Join(d.dir, "storage")
	d.caddy = &testkit.Caddy{
		Bin:          caddyBin,
		Dir:          d.dir,
		ConfigPath:   filepath.Join(d.dir, "Caddyfile"),
		Adapter:      "caddyfile",
		StartTimeout: startTimeout,
		Ready:        d.storefrontUp,
	}
	for attempt := 1; ; attempt++ {
		p, err := d.freePorts()
		if err != nil {
			return err
		}
		src, err := adaptCaddyfile(string(example), p, storage, filepath.Join(repoRoot, "demo"), evilDir)
		if err != nil {
			return err
		}
		d.caddyfile = src
		d.cookieBase = fmt.Sprintf("http://127.0.0.1:%d", p.cookie)
		d.memoryBase = fmt.Sprintf("http://127.0.0.1:%d", p.memory)
		d.evilPort = p.evil
		d.caddy.AdminPort = p.admin
		if err := d.caddy.WriteConfig(src); err != nil {
			return err
		}
		err = d.caddy.Start()
		if err == nil {
			return nil
		}
		// A port found free may have been taken since: try new ones.
		if attempt < 3 && errors.Is(err, testkit.ErrPortTaken) {
			continue
		}
		return fmt.Errorf("%v\nCaddyfile:\n%s", err, src)
	}
}

// storefrontUp checks that the storefront answers through the gateway: the
// rewritten root and upstream address are right.
func (d *demo) storefrontUp() error {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(d.cookieBase + "/")
	if err != nil {
		return fmt.Errorf("GET %s/: %v", d.cookieBase, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`id="country"`)) {
		return fmt.Errorf("GET %s/: %s, not the storefront:\n%s", d.cookieBase, resp.Status, testkit.Tail(string(body), 2000))
	}
	return nil
}

// freePorts reserves five loopback TCP ports (testkit.ReservePort) until
// the demo stops.
func (d *demo) freePorts() (ports, error) {
	var got []int
	for len(got) < 5 {
		p, release, err := testkit.ReservePort()
		if err != nil {
			return ports{}, err
		}
		d.releases = append(d.releases, release)
		got = append(got, p)
	}
	return ports{cookie: got[0], memory: got[1], upstream: got[2], evil: got[3], admin: got[4]}, nil
}

// adaptCaddyfile turns Caddyfile.example into the test's config: the same
// sites on free loopback ports, Caddy's admin and storage in the test's
// directory, the storefront's root as an absolute path, a second gateway
// identical to the first but with `store memory`, and a site on another
// origin serving the attack pages. Every line it rewrites must be found
// exactly once, so a change to the example fails here with a clear message
// instead of testing something else.
func adaptCaddyfile(example string, p ports, storage, demoRoot, evilRoot string) (string, error) {
	lines := strings.Split(example, "\n")
	rewrites := []struct {
		line string // the whole line, spaces trimmed
		with func(indent string) []string
	}{
		{"auto_https off", func(in string) []string {
			return []string{
				in + "auto_https off",
				in + "admin localhost:" + strconv.Itoa(p.admin),
				in + "storage file_system " + quote(storage),
				in + "default_bind 127.0.0.1",
				in + "persist_config off",
				in + "grace_period 1s",
			}
		}},
		{":8080 {", func(in string) []string { return []string{in + ":" + strconv.Itoa(p.cookie) + " {"} }},
		{"reverse_proxy 127.0.0.1:9080 {", func(in string) []string {
			return []string{in + "reverse_proxy 127.0.0.1:" + strconv.Itoa(p.upstream) + " {"}
		}},
		{":9080 {", func(in string) []string { return []string{in + ":" + strconv.Itoa(p.upstream) + " {"} }},
		{"root * ./demo", func(in string) []string { return []string{in + "root * " + quote(demoRoot)} }},
	}
	for _, rw := range rewrites {
		found := -1
		for i, l := range lines {
			if strings.TrimSpace(l) == rw.line {
				if found >= 0 {
					return "", fmt.Errorf("Caddyfile.example has the line %q twice; the browser tests rewrite it and need it once", rw.line)
				}
				found = i
			}
		}
		if found < 0 {
			return "", fmt.Errorf("Caddyfile.example has no line %q; the browser tests rewrite it (update browser/harness_test.go)", rw.line)
		}
		indent := lines[found][:len(lines[found])-len(strings.TrimLeft(lines[found], " \t"))]
		repl := rw.with(indent)
		lines = append(lines[:found], append(repl, lines[found+1:]...)...)
	}

	// The gateway's site block: from its address line to the first line
	// that closes a block at the top level.
	start := -1
	for i, l := range lines {
		if l == ":"+strconv.Itoa(p.cookie)+" {" {
			start = i
		}
	}
	end := -1
	for i := start + 1; start >= 0 && i < len(lines); i++ {
		if lines[i] == "}" {
			end = i
			break
		}
	}
	if start < 0 || end < 0 {
		return "", errors.New("Caddyfile.example: cannot find the end of the :8080 site block (a line with only \"}\")")
	}
	var memory []string
	inserted := false
	for i, l := range lines[start : end+1] {
		if i == 0 {
			l = ":" + strconv.Itoa(p.memory) + " {"
		}
		memory = append(memory, l)
		if !inserted && strings.TrimSpace(l) == "session {" {
			indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
			memory = append(memory, indent+"\tstore memory")
			inserted = true
		}
	}
	if !inserted {
		return "", errors.New("Caddyfile.example: the :8080 site has no line \"session {\"")
	}

	out := strings.Join(lines, "\n")
	out += "\n# Added by the browser tests: the same gateway with the memory store.\n"
	out += strings.Join(memory, "\n") + "\n"
	out += fmt.Sprintf("\n# Added by the browser tests: another origin, serving attack pages.\n:%d {\n\troot * %s\n\tfile_server\n}\n",
		p.evil, quote(evilRoot))
	return out, nil
}

// quote makes a path one Caddyfile token.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// ---------------------------------------------------------------------------
// The browser

func (d *demo) startBrowser(path string) error {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.UserDataDir(filepath.Join(d.dir, "chromium-profile")),
		chromedp.WindowSize(1280, 900),
		chromedp.Env("HOME=" + filepath.Join(d.dir, "home")),
		chromedp.CombinedOutput(&d.chromeOut),
	}
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), opts...)
	d.allocCancel = allocCancel
	ctx, cancel := chromedp.NewContext(allocCtx)
	d.browserCtx, d.browserCancel = ctx, cancel
	// The first Do starts the browser and ties it to ctx: bound it with a
	// timer, not with a context that would end the browser with it.
	timer := time.AfterFunc(startTimeout, cancel)
	err := chromedp.Do(ctx)
	if !timer.Stop() {
		return fmt.Errorf("chromium did not start within %v\n%s", startTimeout, d.chromeOut.String())
	}
	if err != nil {
		return fmt.Errorf("starting chromium (%s): %v\n%s", path, err, d.chromeOut.String())
	}
	return nil
}

// tab is one browser tab of a test.
type tab struct {
	t     *testing.T
	d     *demo
	name  string
	ctx   context.Context
	shots *shots
}

// visitor opens a tab in a new browser context: a visitor of its own, with
// an empty cookie jar.
func (d *demo) visitor(t *testing.T, name string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(d.browserCtx, chromedp.WithNewBrowserContext())
	return d.open(t, name, ctx, cancel)
}

// another opens a second tab in tb's browser context: the same visitor, so
// the two tabs share cookies.
func (tb *tab) another(name string) *tab {
	tb.t.Helper()
	ctx, cancel := chromedp.NewContext(tb.ctx)
	return tb.d.open(tb.t, name, ctx, cancel)
}

func (d *demo) open(t *testing.T, name string, ctx context.Context, cancel context.CancelFunc) *tab {
	t.Helper()
	t.Cleanup(cancel)
	// The first Do creates the tab and ties it to ctx: bound it with a
	// timer, as for the browser.
	timer := time.AfterFunc(startTimeout, cancel)
	err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900))
	if !timer.Stop() {
		t.Fatalf("opening tab %s: not done within %v", name, startTimeout)
	}
	if err != nil {
		t.Fatalf("opening tab %s: %v", name, err)
	}
	return &tab{t: t, d: d, name: name, ctx: ctx, shots: d.shotsFor(t)}
}

// do runs browser actions, bounded by actionTimeout.
func (tb *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, actionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.t.Fatalf("%s: %s: %v", tb.name, what, err)
	}
}

// run runs one browser action that returns a value, bounded by
// actionTimeout.
func run[T any](tb *tab, what string, a chromedp.Action[T]) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, actionTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		tb.t.Fatalf("%s: %s: %v", tb.name, what, err)
	}
	return v
}

// eval evaluates a JavaScript expression in the page, awaiting a promise.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	return run(tb, "evaluate "+oneLine(expr, 80), chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// waitFor waits until a JavaScript expression is true in the page. It
// evaluates the expression again and again, so it holds across
// navigations (a page being replaced is not an error, only not yet true).
func (tb *tab) waitFor(what, expr string) {
	tb.t.Helper()
	deadline := time.Now().Add(actionTimeout)
	for {
		ctx, cancel := context.WithTimeout(tb.ctx, 2*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("Boolean("+expr+")"))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("still false")
			}
			tb.t.Fatalf("%s: waiting %v for %s (%s): %v", tb.name, actionTimeout, what, oneLine(expr, 120), err)
		}
		if tb.ctx.Err() != nil {
			tb.t.Fatalf("%s: waiting for %s: %v", tb.name, what, tb.ctx.Err())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Screenshots: kept after the run, one directory per test.

type shots struct {
	mu  sync.Mutex
	dir string
	n   int
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func (d *demo) shotsFor(t *testing.T) *shots {
	t.Helper()
	d.shotsOnce.Do(func() {
		d.shotsRoot, d.shotsErr = os.MkdirTemp("", "caddy-session-browser-shots-")
	})
	if d.shotsErr != nil {
		t.Fatal(d.shotsErr)
	}
	d.shotsMu.Lock()
	defer d.shotsMu.Unlock()
	if s, ok := d.shots[t.Name()]; ok {
		return s
	}
	s := &shots{dir: filepath.Join(d.shotsRoot, unsafeName.ReplaceAllString(t.Name(), "_"))}
	d.shots[t.Name()] = s
	return s
}

// shot saves a screenshot of the whole page.
func (tb *tab) shot(name string) {
	tb.t.Helper()
	tb.save(name, run(tb, "screenshot "+name, fullPage(1280)))
}

// save keeps a screenshot in the test's directory.
func (tb *tab) save(name string, png []byte) {
	tb.t.Helper()
	s := tb.shots
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == 0 {
		if err := os.MkdirAll(s.dir, 0o755); err != nil {
			tb.t.Fatal(err)
		}
		tb.t.Logf("screenshots: %s", s.dir)
	}
	s.n++
	path := filepath.Join(s.dir, fmt.Sprintf("%02d-%s.png", s.n, unsafeName.ReplaceAllString(name, "-")))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// screen saves a screenshot of the first screen (1280×1000), and copies it
// to the file named by CADDY_SESSION_DEMO_PNG when the test asks for the
// demo picture (docs/demo.png: CADDY_SESSION_DEMO_PNG=$PWD/docs/demo.png).
func (tb *tab) screen(name string, demoPicture bool) {
	tb.t.Helper()
	png := run(tb, "screenshot "+name, viewport())
	tb.save(name+"-first-screen", png)
	if p := os.Getenv(demoPictureEnv); demoPicture && p != "" {
		if err := os.WriteFile(p, png, 0o644); err != nil {
			tb.t.Fatal(err)
		}
		tb.t.Logf("demo picture: %s", p)
	}
}

// demoPictureEnv names the file where a test writes the demo's picture.
const demoPictureEnv = "CADDY_SESSION_DEMO_PNG"

// ---------------------------------------------------------------------------
// Small things

// oneLine shortens JavaScript for messages.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
