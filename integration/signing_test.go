package integration

// sign_headers end to end: a real Caddy signs, and the verification
// snippets of docs/signing.md (examples/verify: Go, Node, PHP) run as the
// upstream and judge what they receive, through the gateway and around it.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/examples/verify"
	"github.com/caddy-session/caddy-session/internal/testkit"
)

const signKey = "signing-key-for-tests-0123456789abcdefghij"

// verdict is what a verifying upstream answers.
type verdict struct {
	Valid   bool       `json:"valid"`
	Error   string     `json:"error"`
	Host    string     `json:"host"`
	Headers [][]string `json:"headers"`
}

// goVerifier is an upstream that judges requests with examples/verify.
func goVerifier(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		v := verdict{Host: r.Host, Headers: [][]string{}}
		if err := verify.Verify(r, []byte(signKey), time.Minute, time.Now()); err != nil {
			v.Error = err.Error()
		} else {
			v.Valid = true
		}
		for name, values := range r.Header {
			if sessionName(name) {
				for _, val := range values {
					v.Headers = append(v.Headers, []string{name, val})
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// verifyDir is examples/verify.
func verifyDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "examples", "verify"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// startProcessUpstream runs a verifying upstream process on a free port and
// waits until it accepts connections.
func startProcessUpstream(t testing.TB, name string, args func(port int) []string, env ...string) string {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(name, args(port)...)
	cmd.Dir = verifyDir(t)
	cmd.Env = append(os.Environ(), env...)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	testkit.StartProgram(t, cmd, addr, 15*time.Second)
	return addr
}

// needTool returns the path of a tool, or skips the test saying why.
func needTool(t testing.TB, name, why string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed: %s is not run (install %s to run it)", name, why, name)
	}
	return p
}

// rawVerdict sends a raw request to addr and decodes the verdict.
func rawVerdict(t testing.TB, addr, raw string) verdict {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
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
		t.Fatalf("reading the verdict: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v verdict
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("not a verdict (%d): %s", resp.StatusCode, body)
	}
	return v
}

// testSigning runs the signing scenario against a verifying upstream at
// addr.
func testSigning(t *testing.T, upstream string) {
	c := StartCaddy(t, CaddyOpts{
		Session: "\tsecret " + secretA + "\n\tclient_writable countryCode customer_id cart\n\tsign_headers " + signKey,
		Site:    "session {\n{{SESSION}}\n}\nreverse_proxy " + upstream,
	})
	b := c.NewBrowser()
	// S45: values with white space an HTTP parser trims ("DE ", a tab
	// before the customer) travel JSON-encoded, so the upstream reads, and
	// verifies, exactly what was signed.
	if r := b.API(t, "POST", `{"countryCode":"DE ","customer_id":"\tc_42","cart":{"items":[1,2],"note":"café"}}`); r.Status != http.StatusOK {
		t.Fatalf("creating the session:\n%s", r)
	}

	var captured []verdict
	paths := []string{"/", "/cart?x=1", "/products/%C3%A9t%C3%A9?q=%20", "/a%2Fb/c", "/~user/a+b;c=1", "/x//y/./z", "/%7Euser"}
	for _, withSession := range []bool{true, false} {
		for _, p := range paths {
			for _, m := range []string{"GET", "POST", "DELETE", "OPTIONS"} {
				cookie := ""
				if withSession {
					cookie = "Cookie: " + b.Jar.Header() + "\r\n"
				}
				body := ""
				if m == "POST" {
					body = `{"a":1}`
				}
				raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\n%sX-Session-Countrycode: spoof\r\nX_Session_Role: admin\r\n"+
					"X-Session-Signature: t=1,v1=forged\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", m, p, c.Host, cookie, len(body), body)
				v := rawVerdict(t, c.Host, raw)
				if !v.Valid {
					t.Errorf("%s %s (session %v) through the gateway: the verifier refused it (%s); headers %q", m, p, withSession, v.Error, v.Headers)
				}
				n := 0
				for _, h := range v.Headers {
					if !strings.EqualFold(h[0], "X-Session-Signature") {
						n++
					}
					if strings.Contains(h[1], "spoof") || strings.Contains(h[1], "admin") || strings.Contains(h[1], "forged") {
						t.Errorf("%s %s: the upstream got the client's %s: %s", m, p, h[0], h[1])
					}
				}
				if withSession {
					for _, h := range v.Headers {
						if strings.EqualFold(h[0], "X-Session-Countrycode") && h[1] != `"DE "` ||
							strings.EqualFold(h[0], "X-Session-Customer-Id") && h[1] != `"\tc_42"` {
							t.Errorf("%s %s: the upstream read %s: %q, want the JSON-encoded value", m, p, h[0], h[1])
						}
					}
				}
				if withSession && n != 3 || !withSession && n != 0 {
					t.Errorf("%s %s (session %v): %d session headers upstream: %q", m, p, withSession, n, v.Headers)
				}
				if m == "GET" {
					captured = append(captured, v)
				}
			}
		}
	}

	// Around the gateway: the headers of a signed request, sent straight to
	// the upstream, verify only unchanged (a replay within the window is
	// the documented limit), never changed.
	direct := func(method, path string, headers [][]string, host string) verdict {
		var hb strings.Builder
		for _, h := range headers {
			fmt.Fprintf(&hb, "%s: %s\r\n", h[0], h[1])
		}
		return rawVerdict(t, upstream, fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n", method, path, host, hb.String()))
	}
	sess := captured[1] // GET /cart?x=1 with the session
	if v := direct("GET", "/cart?y=2", sess.Headers, sess.Host); !v.Valid {
		t.Errorf("an exact replay (another query string) should verify within the window (documented); got %s", v.Error)
	}
	with := func(extra ...[]string) [][]string {
		return append(append([][]string{}, sess.Headers...), extra...)
	}
	changed := func(name, value string) [][]string {
		var out [][]string
		for _, h := range sess.Headers {
			if strings.EqualFold(h[0], name) {
				h = []string{h[0], value}
			}
			out = append(out, h)
		}
		return out
	}
	without := func(name string) [][]string {
		var out [][]string
		for _, h := range sess.Headers {
			if !strings.EqualFold(h[0], name) {
				out = append(out, h)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name, method, path, host string
		headers                  [][]string
	}{
		{"a header added", "GET", "/cart", sess.Host, with([]string{"X-Session-Role", "admin"})},
		{"a header added with _", "GET", "/cart", sess.Host, with([]string{"X_Session_Role", "admin"})},
		{"a header repeated", "GET", "/cart", sess.Host, with([]string{"X-Session-Countrycode", "US"})},
		{"a value changed", "GET", "/cart", sess.Host, changed("X-Session-Customer-Id", "c_1")},
		{"a header removed", "GET", "/cart", sess.Host, without("X-Session-Cart")},
		{"another path", "GET", "/admin", sess.Host, sess.Headers},
		{"another method", "POST", "/cart", sess.Host, sess.Headers},
		{"another host", "GET", "/cart", "evil.example", sess.Headers},
		{"no signature", "GET", "/cart", sess.Host, without("X-Session-Signature")},
		{"no session's signature with session headers", "GET", "/cart", sess.Host,
			append(changed("X-Session-Signature", captured[len(paths)+1].signature()), []string{"X-Session-Customer-Id", "c_1"})},
	} {
		if v := direct(tc.method, tc.path, tc.headers, tc.host); v.Valid {
			t.Errorf("around the gateway, %s: the verifier accepted it", tc.name)
		}
	}
}

// signature returns the X-Session-Signature a verdict reports.
func (v verdict) signature() string {
	for _, h := range v.Headers {
		if strings.EqualFold(h[0], "X-Session-Signature") {
			return h[1]
		}
	}
	return ""
}

// TestSigningGoVerifier: the Go snippet (examples/verify) behind a real
// Caddy with sign_headers.
func TestSigningGoVerifier(t *testing.T) {
	t.Parallel()
	testSigning(t, goVerifier(t))
}

// TestSigningNodeVerifier: the Node snippet (examples/verify/verify.js),
// run by node as the upstream.
func TestSigningNodeVerifier(t *testing.T) {
	t.Parallel()
	node := needTool(t, "node", "the Node verification snippet of docs/signing.md")
	addr := startProcessUpstream(t, node, func(port int) []string {
		return []string{filepath.Join("testdata", "node-server.js"), fmt.Sprint(port), signKey}
	})
	testSigning(t, addr)
}

// TestSigningPHPVerifier: the PHP snippet (examples/verify/verify.php),
// run by PHP's built-in server as the upstream.
func TestSigningPHPVerifier(t *testing.T) {
	t.Parallel()
	php := needTool(t, "php", "the PHP verification snippet of docs/signing.md")
	addr := startProcessUpstream(t, php, func(port int) []string {
		return []string{"-S", fmt.Sprintf("127.0.0.1:%d", port), filepath.Join("testdata", "php-router.php")}
	}, "SIGN_KEY="+signKey)
	testSigning(t, addr)
}
