package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// maxAgeStores returns the session-block body for each store the
// X-Session-Max-Age tests run against: the cookie store, memory, and a
// private redis-server.
func maxAgeStores(t *testing.T, extra string) map[string]string {
	rs := startRedis(t)
	base := "\tsecret " + secretA + "\n\tclient_readable *\n" + extra
	return map[string]string{
		"cookie": base,
		"memory": base + "\n\tstore memory",
		"redis":  strings.Replace(redisPatientSession(rs.URL()), "\tsecret "+secretA, base, 1),
	}
}

// inspectDeadline asks Caddy's admin API (POST /session/__session/inspect)
// for the absolute deadline of the session the jar's cookie holds: for a
// server store, what the store's record says.
func inspectDeadline(t *testing.T, c *Caddy, b *Browser) time.Time {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"cookie": b.Jar.Get("__session"), "audience": "127.0.0.1"})
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://localhost:%d/session/__session/inspect", c.AdminPort), strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct {
		Deadline time.Time `json:"deadline"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || resp.StatusCode != http.StatusOK || info.Deadline.IsZero() {
		t.Fatalf("inspect: status %d, %v, deadline %v", resp.StatusCode, err, info.Deadline)
	}
	return info.Deadline
}

// wantNear fails unless got is within a minute of want.
func wantNear(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if d := got.Sub(want); d < -time.Minute || d > time.Minute {
		t.Errorf("%s = %s, want about %s (off by %s)", what, got.UTC().Format(time.RFC3339), want.UTC().Format(time.RFC3339), d)
	}
}

// sessionCookieLine returns the one live (not expiring) __session line of
// r.
func sessionCookieLine(t *testing.T, r *Resp) string {
	t.Helper()
	var live []string
	for _, l := range setCookieFor(r, "__session") {
		if !isExpiry(t, l) {
			live = append(live, l)
		}
	}
	if len(live) != 1 {
		t.Fatalf("want one __session cookie set, got %q", r.SetCookies())
	}
	return live[0]
}

// cookieMaxAge returns a Set-Cookie line's Max-Age, -1 without one; and
// whether it has Expires.
func cookieMaxAge(line string) (int, bool) {
	a := attrs(line)
	_, exp := a["expires"]
	v, ok := a["max-age"]
	if !ok {
		return -1, exp
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -2, exp
	}
	return n, exp
}

// TestMaxAgeRememberMe: a sign-in response with X-Session-Max-Age:
// 31536000 gives a cookie whose Max-Age is a year and a session whose
// deadline (the store's record, for server stores) moved a year out; a
// later request still has the session; the header never reaches the
// client; a value above max_age_limit is clamped to it.
func TestMaxAgeRememberMe(t *testing.T) {
	t.Parallel()
	const year = 365 * 24 * 3600
	for name, cfg := range maxAgeStores(t, "\tmax_age_limit 500d") {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Session: cfg})
			b := c.NewBrowser()

			// A plain sign-in first: the default 30 days.
			r := b.Seed(t, `{"cart":"k1"}`)
			if ma, _ := cookieMaxAge(sessionCookieLine(t, r)); ma < 30*24*3600-10 || ma > 30*24*3600 {
				t.Fatalf("default Max-Age %d", ma)
			}
			wantNear(t, "default deadline", inspectDeadline(t, c, b), time.Now().Add(30*24*time.Hour))

			r = b.Get(t, "/login", `X-Test-Resp: X-Session-Set: {"customerId":"c_1"}`, "X-Test-Resp: X-Session-Max-Age: 31536000")
			wantUpstreamBody(t, r, "/login")
			noSessionResponseHeaders(t, r)
			line := sessionCookieLine(t, r)
			ma, exp := cookieMaxAge(line)
			if ma < year-10 || ma > year || !exp {
				t.Fatalf("remember me: Max-Age %d (Expires %v), want about %d: %q", ma, exp, year, line)
			}
			wantNear(t, "deadline after X-Session-Max-Age", inspectDeadline(t, c, b), time.Now().Add(year*time.Second))

			b.Get(t, "/account")
			wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Cart": "k1", "X-Session-Customerid": "c_1"})

			// Rotation keeps the lifetime: the re-issued cookie's Max-Age is
			// still about a year.
			r = b.Get(t, "/elevate", "X-Test-Resp: X-Session-Rotate: 1")
			if ma, _ := cookieMaxAge(sessionCookieLine(t, r)); ma < year-10 || ma > year {
				t.Fatalf("after rotation: Max-Age %d", ma)
			}
			wantNear(t, "deadline after rotation", inspectDeadline(t, c, b), time.Now().Add(year*time.Second))

			// Above max_age_limit (500 days here): clamped, not refused.
			r = b.Get(t, "/login", "X-Test-Resp: X-Session-Max-Age: 999999999")
			noSessionResponseHeaders(t, r)
			if ma, _ := cookieMaxAge(sessionCookieLine(t, r)); ma < 500*24*3600-10 || ma > 500*24*3600 {
				t.Fatalf("clamped: Max-Age %d, want about %d", ma, 500*24*3600)
			}
			wantNear(t, "clamped deadline", inspectDeadline(t, c, b), time.Now().Add(500*24*time.Hour))

			// Shorter works too: an hour.
			r = b.Get(t, "/login", "X-Test-Resp: X-Session-Max-Age: 3600")
			if ma, _ := cookieMaxAge(sessionCookieLine(t, r)); ma < 3590 || ma > 3600 {
				t.Fatalf("an hour: Max-Age %d", ma)
			}
			wantNear(t, "deadline an hour out", inspectDeadline(t, c, b), time.Now().Add(time.Hour))

			// Malformed values: logged at error level, ignored, the
			// response goes out, the session and its cookie stay.
			for _, bad := range []string{"-5", "soon", "0", "1e9"} {
				r = b.Get(t, "/bad", "X-Test-Resp: X-Session-Max-Age: "+bad)
				wantUpstreamBody(t, r, "/bad")
				noSessionResponseHeaders(t, r)
				if len(setCookieFor(r, "__session")) != 0 {
					t.Errorf("X-Session-Max-Age: %s changed the cookie: %q", bad, r.SetCookies())
				}
			}
			wantNear(t, "deadline after malformed values", inspectDeadline(t, c, b), time.Now().Add(time.Hour))
			b.Get(t, "/account")
			wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Cart": "k1", "X-Session-Customerid": "c_1"})
			logs := c.Logs()
			if n := strings.Count(logs, "ignored a malformed X-Session-Max-Age"); n != 4 {
				t.Errorf("%d malformed-value log lines, want 4", n)
			}
		})
	}
}

// TestMaxAgeBrowserSession: X-Session-Max-Age: session gives a cookie
// without Max-Age and Expires, keeps the session's deadline, and the
// cookie stays a browser-session cookie when it is re-issued later
// (rotation; for the cookie store, its idle refresh too).
func TestMaxAgeBrowserSession(t *testing.T) {
	t.Parallel()
	for name, cfg := range maxAgeStores(t, "\tidle_timeout 2s") {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Session: cfg})
			b := c.NewBrowser()
			b.Seed(t, `{"cart":"k1"}`)
			before := inspectDeadline(t, c, b)

			r := b.Get(t, "/login", `X-Test-Resp: X-Session-Set: {"customerId":"c_1"}`, "X-Test-Resp: X-Session-Max-Age: session")
			wantUpstreamBody(t, r, "/login")
			noSessionResponseHeaders(t, r)
			wantBrowserSession := func(what string, r *Resp) {
				t.Helper()
				line := sessionCookieLine(t, r)
				if ma, exp := cookieMaxAge(line); ma != -1 || exp {
					t.Fatalf("%s: want a cookie without Max-Age and Expires, got %q", what, line)
				}
			}
			wantBrowserSession("X-Session-Max-Age: session", r)
			if got := inspectDeadline(t, c, b); !got.Equal(before) {
				t.Errorf("the deadline moved from %s to %s", before, got)
			}

			r = b.Get(t, "/elevate", "X-Test-Resp: X-Session-Rotate: 1")
			wantBrowserSession("re-issued by X-Session-Rotate", r)
			b.Get(t, "/account")
			wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Cart": "k1", "X-Session-Customerid": "c_1"})

			if name == "cookie" {
				// The idle refresh re-issues the cookie store's cookie
				// after a quarter of idle_timeout.
				time.Sleep(700 * time.Millisecond)
				wantBrowserSession("re-issued by the idle refresh", b.Get(t, "/later"))
			}

			// A number makes it a persistent cookie again.
			r = b.Get(t, "/remember", "X-Test-Resp: X-Session-Max-Age: 86400")
			if ma, exp := cookieMaxAge(sessionCookieLine(t, r)); ma < 86390 || ma > 86400 || !exp {
				t.Fatalf("after X-Session-Max-Age: 86400: Max-Age %d, Expires %v", ma, exp)
			}
			r = b.Get(t, "/elevate", "X-Test-Resp: X-Session-Rotate: 1")
			if ma, _ := cookieMaxAge(sessionCookieLine(t, r)); ma < 86390 || ma > 86400 {
				t.Fatalf("rotated after X-Session-Max-Age: 86400: Max-Age %d", ma)
			}
		})
	}
}

// TestMaxAgeOrder: in one response, Destroy then Set then Max-Age: the
// fresh session the Set starts gets the lifetime; a Max-Age without any
// session is ignored and sets no cookie.
func TestMaxAgeOrder(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tstore memory"})
	b := c.NewBrowser()
	r := b.Get(t, "/anon", "X-Test-Resp: X-Session-Max-Age: 31536000")
	noSessionResponseHeaders(t, r)
	if len(r.SetCookies()) != 0 {
		t.Fatalf("X-Session-Max-Age without a session set a cookie: %q", r.SetCookies())
	}
	b.Seed(t, `{"a":1}`)
	r = b.Get(t, "/login", "X-Test-Resp: X-Session-Destroy: 1", `X-Test-Resp: X-Session-Set: {"b":2}`, "X-Test-Resp: X-Session-Max-Age: 31536000")
	noSessionResponseHeaders(t, r)
	if ma, _ := cookieMaxAge(sessionCookieLine(t, r)); ma < 365*24*3600-10 {
		t.Fatalf("Max-Age %d", ma)
	}
	wantNear(t, "deadline", inspectDeadline(t, c, b), time.Now().Add(365*24*time.Hour))
	b.Get(t, "/page")
	wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-B": "2"})
}
