package integration

// Abuse resistance and sign-out, through a real Caddy: throwaway sessions
// cannot push real visitors out (S42), a sign-out always reaches the
// browser (S44), and configurations that lose protection are called out at
// load (S46).

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFloodCannotEvictConfirmed: 1,000 confirmed sessions in a memory store
// of max_sessions 5000, then 50,000 anonymous session creations from 32
// connections: every confirmed session still reads back.
func TestFloodCannotEvictConfirmed(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable n\n\tstore memory {\n\t\tname flood\n\t\tmax_sessions 5000\n\t}"})
	const confirmed, flood, workers = 1000, 50000, 32
	cookies := make([]string, confirmed)
	run := func(n int, fn func(i int) error) {
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					if err := fn(i); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	run(confirmed, func(i int) error {
		r, err := c.DoErr(Req{Method: "POST", Path: "/__session", CT: "application/json", Body: fmt.Sprintf(`{"n":%d}`, i)})
		if err != nil || r.Status != 200 {
			return fmt.Errorf("creating session %d: %v %v", i, err, r)
		}
		jar := NewJar()
		jar.Update(t, r)
		cookies[i] = jar.Header()
		// The next request that presents the cookie confirms the session.
		if r, err = c.DoErr(Req{Path: "/__session", Cookie: cookies[i]}); err != nil || !strings.Contains(string(r.Body), fmt.Sprintf(`"n":%d`, i)) {
			return fmt.Errorf("confirming session %d: %v %v", i, err, r)
		}
		return nil
	})
	start := time.Now()
	run(flood, func(i int) error {
		r, err := c.DoErr(Req{Method: "POST", Path: "/__session", CT: "application/json", Body: `{"n":-1}`})
		if err != nil || r.Status != 200 {
			return fmt.Errorf("flood request %d: %v %v", i, err, r)
		}
		return nil
	})
	t.Logf("%d anonymous creations in %s", flood, time.Since(start).Round(time.Millisecond))
	lost := 0
	for i, ck := range cookies {
		r := c.Do(t, Req{Path: "/__session", Cookie: ck})
		if !strings.Contains(string(r.Body), fmt.Sprintf(`"n":%d`, i)) {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("the flood evicted %d of %d confirmed sessions", lost, confirmed)
	}
	code, m := adminGet(t, c, "/session/__session/count")
	if code != 200 || m["confirmed"] != float64(confirmed) || m["sessions"].(float64) > 5000 {
		t.Fatalf("count after the flood: %d %v (want %d confirmed, at most 5000 in all)", code, m, confirmed)
	}
}

// TestNewSessionTTL: a session nobody comes back for ends after
// new_session_ttl; one whose cookie comes back lives on.
func TestNewSessionTTL(t *testing.T) {
	t.Parallel()
	stores := map[string]string{
		"memory": "store memory {\n\t\tname newttl\n\t}",
		"file":   "store file " + filepath.Join(t.TempDir(), "sessions"),
	}
	for name, store := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable n\n\tnew_session_ttl 2s\n\t" + store})
			create := func() string {
				r := c.Do(t, Req{Method: "POST", Path: "/__session", CT: "application/json", Body: `{"n":1}`})
				jar := NewJar()
				jar.Update(t, r)
				return jar.Header()
			}
			throwaway, kept := create(), create()
			time.Sleep(500 * time.Millisecond)
			wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: kept}), 200, `{"n":1}`) // confirms it
			time.Sleep(2500 * time.Millisecond)
			wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: kept}), 200, `{"n":1}`)
			wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: throwaway}), 200, `{}`)
		})
	}
}

// adminGet reads c's admin API.
func adminGet(t testing.TB, c *Caddy, path string) (int, map[string]any) {
	t.Helper()
	resp, err := client.Get(fmt.Sprintf("http://localhost:%d%s", c.AdminPort, path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// TestSignOutDuringOutage (S44): with Redis down, a Destroy from the
// upstream and an API DELETE both expire the session cookie; the API
// answers 503, and the log says the stored session may outlive it.
func TestSignOutDuringOutage(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	c := StartCaddy(t, CaddyOpts{Session: redisSession(srv.URL(), "client_writable customerId")})
	var jars []*Jar
	for range 2 {
		b := c.NewBrowser()
		if r := b.API(t, "POST", `{"customerId":"c_42"}`); r.Status != 200 {
			t.Fatalf("creating a session:\n%s", r)
		}
		jars = append(jars, b.Jar)
	}
	srv.Kill()

	expired := func(what string, r *Resp) {
		t.Helper()
		lines := setCookieFor(r, "__session")
		if len(lines) != 1 || !strings.Contains(lines[0], "Max-Age=0") {
			t.Errorf("%s during an outage: the session cookie is not expired: %q\n%s", what, lines, r)
		}
	}
	r := c.Do(t, Req{Path: "/logout", Cookie: jars[0].Header(), Header: []string{"X-Test-Resp: X-Session-Destroy: 1"}})
	if r.Status != 200 {
		t.Fatalf("the upstream's answer must go out:\n%s", r)
	}
	expired("X-Session-Destroy", r)
	r = c.Do(t, Req{Method: "DELETE", Path: "/__session", Cookie: jars[1].Header()})
	if msg := wantError(t, r, http.StatusServiceUnavailable); !strings.Contains(msg, "expired") {
		t.Errorf("the 503 must say the cookie is expired: %q", msg)
	}
	expired("DELETE", r)
	if !strings.Contains(c.Logs(), "the stored session may live until its TTL") {
		t.Error("the log must say the stored session may outlive the sign-out")
	}
	// Other requests keep the client's cookie during the outage.
	redisNoClearedCookie(t, "a page", c.Do(t, Req{Path: "/page", Cookie: jars[0].Header()}))
}

// TestLoadWarnings (S46): a literal secret or sign_headers key, and a
// session directive with a matcher, are called out in Caddy's log.
func TestLoadWarnings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cf := filepath.Join(dir, "Caddyfile")
	src := "http://:8080 {\n\tsession /shop/* {\n\t\tsecret " + secretA + "\n\t\tsign_headers " + signKey + "\n\t}\n\trespond ok\n}\n"
	if err := os.WriteFile(cf, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCaddy(t, dir, nil, "validate", "--config", cf, "--adapter", "caddyfile")
	if err != nil {
		t.Fatalf("caddy validate: %v\n%s", err, out)
	}
	for _, want := range []string{
		`"line":2`, "the session directive has a matcher",
		"session secret is written in the config", "sign_headers key is written in the config",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("caddy validate does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, secretA) || strings.Contains(out, signKey) {
		t.Errorf("a warning printed the secret:\n%s", out)
	}
	// With placeholders and no matcher: no warning.
	src = "http://:8080 {\n\tsession {\n\t\tsecret {env.SESSION_SECRET}\n\t}\n\trespond ok\n}\n"
	if err := os.WriteFile(cf, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runCaddy(t, dir, []string{"SESSION_SECRET=" + secretB}, "validate", "--config", cf, "--adapter", "caddyfile")
	if err != nil || strings.Contains(out, "written in the config") || strings.Contains(out, "has a matcher") {
		t.Errorf("a clean config warns: %v\n%s", err, out)
	}
}

// TestEmptyWriteCreatesNothing: POST or PATCH of {} without a session
// answers {} and creates nothing, no cookie and no stored record; with a
// stale cookie (its session gone), nothing is created either.
func TestEmptyWriteCreatesNothing(t *testing.T) {
	t.Parallel()
	for name, store := range map[string]string{
		"cookie": "store cookie",
		"memory": "store memory {\n\t\tname emptywrite\n\t}",
		"file":   "store file " + filepath.Join(t.TempDir(), "sessions"),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable n\n\t" + store})
			for _, m := range []string{"POST", "PATCH"} {
				r := c.Do(t, Req{Method: m, Path: "/__session", CT: "application/json", Body: `{}`})
				wantObject(t, r, http.StatusOK, `{}`)
				noSetCookie(t, r)
			}
			if name == "cookie" {
				return
			}
			code, m := adminGet(t, c, "/session/__session/count")
			if code != 200 || m["sessions"] != 0.0 {
				t.Fatalf("empty writes created sessions: %d %v", code, m)
			}
			// A session destroyed elsewhere: its cookie writing {} creates
			// nothing either.
			b := c.NewBrowser()
			b.API(t, "POST", `{"n":1}`)
			stale := b.Jar.Header()
			c.Do(t, Req{Method: "DELETE", Path: "/__session", Cookie: stale})
			r := c.Do(t, Req{Method: "POST", Path: "/__session", Cookie: stale, CT: "application/json", Body: `{}`})
			wantObject(t, r, http.StatusOK, `{}`)
			if lines := setCookieFor(r, "__session"); len(lines) != 0 {
				t.Fatalf("an empty write with a stale cookie set a cookie: %q", lines)
			}
			if code, m := adminGet(t, c, "/session/__session/count"); code != 200 || m["sessions"] != 0.0 {
				t.Fatalf("an empty write with a stale cookie created a session: %d %v", code, m)
			}
		})
	}
}
