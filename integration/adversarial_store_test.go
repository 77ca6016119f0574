package integration

// The adversarial suite, part 4: the store down. A real redis-server on a
// spare loopback port is stalled (SIGSTOP) and killed under a running
// Caddy; spoofed headers are still stripped, nothing leaks, the cookie is
// never cleared, on_store_error decides, and recovery is automatic (S18,
// S29, S30).

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAdversarialStoreDown: with Redis stalled and then killed, every
// request still has the client's X-Session-* headers removed, none reaches
// the client, requests stay bounded in time, API calls answer 503, the
// cookie is never cleared, fail_open forwards without session headers and
// fail_closed answers 503; Redis back, everything works again.
func TestAdversarialStoreDown(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{"fail_open", "fail_closed"} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			rs := startRedis(t, "--protected-mode", "no")
			c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme\n\tclient_readable *" +
				"\n\tstore redis redis://" + rs.Addr() + "/0\n\ton_store_error " + policy})
			b := c.NewBrowser()
			wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
			b.Seed(t, `{"customerId":"c_1"}`)
			cookie := b.Jar.Header()
			spoof := []string{"X-Session-Customerid: spoof-s1", "x_session_theme: spoof-s2", "X-Session-Set: {\"x\":\"spoof-s3\"}"}
			ctl := `X-Test-Resp: X-Session-Set: {"customerId":"canary-upstream-set"}`

			check := func(t *testing.T, phase string) {
				t.Helper()
				timed := func(q Req) *Resp {
					t.Helper()
					start := time.Now()
					r := c.Do(t, q)
					if d := time.Since(start); d > 5*time.Second {
						t.Errorf("%s: %s %s took %v with the store down", phase, q.Method, q.Path, d)
					}
					noSessionResponseHeaders(t, r)
					if q.Method == "DELETE" {
						// A sign-out always reaches the browser (S44):
						// the cookie is expired, store or no store.
						if lines := setCookieFor(r, "__session"); len(lines) != 1 || !strings.Contains(lines[0], "Max-Age=0") {
							t.Errorf("%s: DELETE /__session did not expire the session cookie with the store down: %q", phase, lines)
						}
						return r
					}
					for _, line := range r.SetCookies() {
						if strings.HasPrefix(line, "__session") {
							t.Errorf("%s: %s %s touched the session cookie with the store down: %.80q", phase, q.Method, q.Path, line)
						}
					}
					return r
				}
				// Pages.
				before := c.Up.Count()
				r := timed(Req{Path: "/page", Cookie: cookie, Header: append([]string{ctl}, spoof...)})
				if policy == "fail_open" {
					wantUpstreamBody(t, r, "/page")
					rec := c.Up.Last(t)
					noSpoofValues(t, rec)
					noSessionHeaders(t, rec)
				} else if r.Status != http.StatusServiceUnavailable || c.Up.Count() != before {
					t.Errorf("%s: fail_closed: want 503 and nothing upstream, got:\n%s", phase, r)
				}
				// A request without a session needs no store: both serve.
				r = timed(Req{Path: "/anon", Header: spoof})
				wantUpstreamBody(t, r, "/anon")
				noSpoofValues(t, c.Up.Last(t))
				noSessionHeaders(t, c.Up.Last(t))
				// The API: 503 for reads and writes, never the upstream.
				before = c.Up.Count()
				for _, q := range []Req{
					{Method: "GET", Path: "/__session"},
					{Method: "HEAD", Path: "/__session"},
					{Method: "POST", Path: "/__session", Body: `{"theme":"x"}`, CT: "application/json"},
					{Method: "PATCH", Path: "/__session", Body: `{"theme":"x"}`, CT: "application/json"},
					{Method: "DELETE", Path: "/__session"},
				} {
					q.Cookie, q.Header = cookie, spoof
					r := timed(q)
					if r.Status != http.StatusServiceUnavailable {
						t.Errorf("%s: %s /__session: status %d, want 503", phase, q.Method, r.Status)
					}
				}
				if c.Up.Count() != before {
					t.Errorf("%s: API requests reached the upstream", phase)
				}
			}

			t.Run("stalled", func(t *testing.T) {
				_ = rs.Signal(syscall.SIGSTOP)
				check(t, "stalled")
				_ = rs.Signal(syscall.SIGCONT)
				// Recovered: the session is whole, the dropped upstream
				// write left no trace.
				deadline := time.Now().Add(5 * time.Second)
				for {
					r := c.Do(t, Req{Path: "/__session", Cookie: cookie})
					if r.Status == http.StatusOK {
						wantObject(t, r, http.StatusOK, `{"customerId":"c_1","theme":"dark"}`)
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("no recovery after SIGCONT:\n%s", r)
					}
					time.Sleep(100 * time.Millisecond)
				}
				b.Get(t, "/page", spoof...)
				wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Customerid": "c_1", "X-Session-Theme": "dark"})
			})
			t.Run("killed", func(t *testing.T) {
				rs.Kill()
				check(t, "killed")
				if err := rs.Start(); err != nil {
					t.Fatalf("restarting redis-server on its port: %v", err)
				}
				// Recovered: the data went with the process; a write makes
				// a fresh session, the old cookie is no session.
				deadline := time.Now().Add(5 * time.Second)
				for {
					r := c.Do(t, Req{Path: "/__session", Cookie: cookie})
					if r.Status == http.StatusOK {
						wantObject(t, r, http.StatusOK, `{}`)
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("no recovery after a restart:\n%s", r)
					}
					time.Sleep(100 * time.Millisecond)
				}
				nb := c.NewBrowser()
				wantObject(t, nb.API(t, "POST", `{"theme":"back"}`), http.StatusOK, `{"theme":"back"}`)
				nb.Get(t, "/page", spoof...)
				wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Theme": "back"})
			})
		})
	}
}
