package integration

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func storeVariants(t *testing.T) map[string]string {
	return map[string]string{
		"cookie": "",
		"memory": "\n\tstore memory",
		"file":   "\n\tstore file " + t.TempDir() + "/sessions",
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	for name, store := range storeVariants(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme\n\tidle_timeout 2s" + store})
			b := c.NewBrowser()
			wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)

			// Used every 0.8 s (under half the idle timeout) for 4 s: alive.
			for range 5 {
				time.Sleep(800 * time.Millisecond)
				b.Get(t, "/page")
				wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Theme": "dark"})
			}
			// Idle for longer than the timeout: gone.
			time.Sleep(2600 * time.Millisecond)
			b.Get(t, "/page")
			noSessionHeaders(t, c.Up.Last(t))
			wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{}`)
		})
	}
}

// TestAbsoluteMaxAge: activity never extends max_age, and re-issued cookies
// carry the remaining life, not a fresh max_age.
func TestAbsoluteMaxAge(t *testing.T) {
	t.Parallel()
	for name, store := range storeVariants(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme\n\tidle_timeout 2s" +
				"\n\tcookie {\n\t\tmax_age 3s\n\t}" + store})
			b := c.NewBrowser()
			start := time.Now()
			r := b.API(t, "POST", `{"theme":"dark"}`)
			created := time.Now() // the session was created before this
			wantObject(t, r, http.StatusOK, `{"theme":"dark"}`)

			// checkMaxAge: a cookie sent in answer to a request sent at
			// sent has at most the session's remaining life, rounded up.
			checkMaxAge := func(r *Resp, sent time.Time) {
				t.Helper()
				left := 3 - sent.Sub(created).Seconds()
				for _, line := range setCookieFor(r, "__session") {
					if isExpiry(t, line) {
						continue
					}
					ma, err := strconv.Atoi(attrs(line)["max-age"])
					if err != nil || float64(ma) > math.Ceil(left)+0.001 {
						t.Errorf("%.2fs after creation, a cookie with Max-Age %q; the session had at most %.2fs left",
							sent.Sub(created).Seconds(), attrs(line)["max-age"], left)
					}
				}
			}
			checkMaxAge(r, start)
			for time.Since(start) < 4100*time.Millisecond {
				time.Sleep(500 * time.Millisecond)
				sent := time.Now()
				r := b.Get(t, "/page")
				checkMaxAge(r, sent)
				if time.Since(start) < 1800*time.Millisecond {
					wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Theme": "dark"})
				}
			}
			b.Get(t, "/page")
			noSessionHeaders(t, c.Up.Last(t))
			wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{}`)
		})
	}
}

func varyTokens(h http.Header) map[string]bool {
	out := map[string]bool{}
	for _, v := range h.Values("Vary") {
		for _, tok := range strings.Split(v, ",") {
			out[strings.ToLower(strings.TrimSpace(tok))] = true
		}
	}
	return out
}

func wantPrivate(t testing.TB, r *Resp) {
	t.Helper()
	cc := strings.ToLower(strings.Join(r.Header.Values("Cache-Control"), ", "))
	if !strings.Contains(cc, "private") && !strings.Contains(cc, "no-store") {
		t.Errorf("a response setting the session cookie has Cache-Control %q, want private", cc)
	}
	if strings.Contains(cc, "public") {
		t.Errorf("a response setting the session cookie has Cache-Control %q", cc)
	}
}

func TestVaryAndCacheControl(t *testing.T) {
	t.Parallel()
	t.Run("default", func(t *testing.T) {
		t.Parallel()
		c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme"})
		b := c.NewBrowser()

		r := b.Get(t, "/login", `X-Test-Resp: X-Session-Set: {"customerId":"c_1"}`, "X-Test-Resp: Cache-Control: public, max-age=600")
		if len(setCookieFor(r, "__session")) != 1 {
			t.Fatalf("no session cookie set: %q", r.SetCookies())
		}
		wantPrivate(t, r)

		r = b.Get(t, "/page", "X-Test-Resp: Vary: Accept-Encoding", "X-Test-Resp: Cache-Control: public, max-age=60")
		v := varyTokens(r.Header)
		if !v["cookie"] || !v["accept-encoding"] {
			t.Errorf("Vary %q, want Cookie added to Accept-Encoding", r.Header.Values("Vary"))
		}
		r = b.Get(t, "/page")
		if !varyTokens(r.Header)["cookie"] {
			t.Errorf("a response to a request with a session lacks Vary: Cookie: %q", r.Header.Values("Vary"))
		}

		r = b.Get(t, "/rotate", "X-Test-Resp: X-Session-Rotate: 1", "X-Test-Resp: Cache-Control: max-age=60")
		if len(setCookieFor(r, "__session")) != 1 {
			t.Fatalf("no cookie on rotation: %q", r.SetCookies())
		}
		wantPrivate(t, r)

		// no-store is stricter than private and stays.
		r = b.Get(t, "/set", `X-Test-Resp: X-Session-Set: {"x":1}`, "X-Test-Resp: Cache-Control: no-store")
		if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Errorf("upstream no-store lost: Cache-Control %q", cc)
		}
	})
	t.Run("vary_cookie off", func(t *testing.T) {
		t.Parallel()
		c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tvary_cookie off"})
		b := c.NewBrowser()
		r := b.Seed(t, `{"customerId":"c_1"}`)
		wantPrivate(t, r)
		r = b.Get(t, "/page")
		wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Customerid": "c_1"})
		if varyTokens(r.Header)["cookie"] {
			t.Errorf("vary_cookie off, yet Vary %q", r.Header.Values("Vary"))
		}
	})
}
