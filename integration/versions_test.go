package integration

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/caddy-session/caddy-session/internal/testkit"
)

// Versions (#14): ETag on every answer about a session, If-Match and
// If-None-Match on writes (412 with the current object), 304 on GET, and
// {http.session.version} upstream; S48: of writers with one If-Match,
// exactly one wins.

// versionStores is every store's session-block line.
func versionStores(t *testing.T) map[string]string {
	stores := raceStores(t)
	stores["cookie"] = "store cookie"
	return stores
}

const versionSite = `session {
{{SESSION}}
}
reverse_proxy {{UPSTREAM}} {
	header_up X-Test-Version {http.session.version}
}`

// etagOf returns a response's ETag, failing the test without one.
func etagOf(t testing.TB, r *Resp) string {
	t.Helper()
	e := r.Header.Get("ETag")
	if e == "" || !strings.HasPrefix(e, `"`) || !strings.HasSuffix(e, `"`) || strings.HasPrefix(e, "W/") {
		t.Fatalf("no strong ETag on an answer about a session (%q):\n%s", e, r)
	}
	return e
}

func TestVersionsAndConditionalWrites(t *testing.T) {
	t.Parallel()
	for name, store := range versionStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Site: versionSite, Session: "secret " + secretA +
				"\nclient_writable cart note\nclient_readable *\n" + store})
			b := c.NewBrowser()
			api := func(method, body string, header ...string) *Resp {
				return b.API(t, method, body, header...)
			}

			// No session: no ETag; If-Match of anything fails; POST {} with
			// If-Match creates nothing either.
			r := api("GET", "")
			wantObject(t, r, 200, `{}`)
			if e := r.Header.Get("ETag"); e != "" {
				t.Fatalf("ETag %q without a session", e)
			}
			wantObject(t, api("POST", `{"cart":[1]}`, `If-Match: *`), 412, `{}`)
			wantObject(t, api("POST", `{}`, `If-Match: *`), 412, `{}`)
			if len(b.Jar.Names()) != 0 {
				t.Fatalf("a refused conditional write set cookies %v", b.Jar.Names())
			}

			// Created with If-None-Match: *; then that precondition fails.
			r = api("POST", `{"cart":[1]}`, `If-None-Match: *`)
			wantObject(t, r, 200, `{"cart":[1]}`)
			e1 := etagOf(t, r)
			r = api("POST", `{"cart":[9]}`, `If-None-Match: *`)
			wantObject(t, r, 412, `{"cart":[1]}`)
			if etagOf(t, r) != e1 {
				t.Fatalf("412 carries ETag %s, want the current %s", r.Header.Get("ETag"), e1)
			}

			// GET: the same ETag, 304 when it matches, the version upstream.
			r = api("GET", "")
			if etagOf(t, r) != e1 {
				t.Fatalf("GET ETag %s, want %s (a read, a confirmation or a re-issue is no change)", r.Header.Get("ETag"), e1)
			}
			r = api("GET", "", "If-None-Match: "+e1)
			if r.Status != http.StatusNotModified || len(r.Body) != 0 || r.Header.Get("ETag") != e1 {
				t.Fatalf("GET with a matching If-None-Match:\n%s", r)
			}
			wantObject(t, api("GET", "", `If-None-Match: "abc"`), 200, `{"cart":[1]}`)
			b.Get(t, "/v")
			if got := c.Up.Last(t).Header.Get("X-Test-Version"); `"`+got+`"` != e1 {
				t.Fatalf("{http.session.version} = %q upstream, want %s unquoted", got, e1)
			}

			// If-Match: the current version writes, a stale one is 412 with
			// the current object and changes nothing.
			r = api("POST", `{"cart":[1,2]}`, "If-Match: "+e1)
			wantObject(t, r, 200, `{"cart":[1,2]}`)
			e2 := etagOf(t, r)
			if e2 == e1 {
				t.Fatal("a write kept the ETag")
			}
			r = api("PATCH", `{"cart":["stale"]}`, "If-Match: "+e1)
			wantObject(t, r, 412, `{"cart":[1,2]}`)
			if etagOf(t, r) != e2 {
				t.Fatalf("412 ETag %s, want %s", r.Header.Get("ETag"), e2)
			}
			wantObject(t, api("GET", ""), 200, `{"cart":[1,2]}`)
			wantObject(t, api("POST", `{"cart":[0]}`, `If-Match: W/`+e2), 412, `{"cart":[1,2]}`)
			wantObject(t, api("POST", `{"cart":[0]}`, `If-Match: "zz"`), 412, `{"cart":[1,2]}`)
			r = api("POST", `{"note":"x"}`, `If-Match: "1", `+e2)
			wantObject(t, r, 200, `{"cart":[1,2],"note":"x"}`)
			e3 := etagOf(t, r)

			// An upstream write changes the version: a stale If-Match after
			// it is 412.
			b.Seed(t, `{"note":"from the upstream"}`)
			r = api("POST", `{"cart":[]}`, "If-Match: "+e3)
			wantObject(t, r, 412, `{"cart":[1,2],"note":"from the upstream"}`)
			e4 := etagOf(t, r)
			if e4 == e3 {
				t.Fatal("an upstream write kept the ETag")
			}

			// DELETE honours If-Match.
			r = api("DELETE", "", "If-Match: "+e3)
			wantObject(t, r, 412, `{"cart":[1,2],"note":"from the upstream"}`)
			if len(r.SetCookies()) != 0 {
				t.Fatalf("a refused DELETE touched the cookie: %q", r.SetCookies())
			}
			wantObject(t, api("GET", ""), 200, `{"cart":[1,2],"note":"from the upstream"}`)
			if r = api("DELETE", "", "If-Match: "+e4); r.Status != http.StatusNoContent {
				t.Fatalf("DELETE with the current If-Match:\n%s", r)
			}
			wantObject(t, api("GET", ""), 200, `{}`)
			wantObject(t, api("DELETE", "", "If-Match: *"), 412, `{}`)
		})
	}
}

// TestConditionalWritersOneWins (S48): twenty writers that read one
// version and write with it: exactly one 200, the rest 412, and the
// session holds the winner's write, on every server store.
func TestConditionalWritersOneWins(t *testing.T) {
	t.Parallel()
	stores := serverStores(t)
	stores["redis"] = "store redis " + startRedis(t).URL()
	stores["postgres"] = "store postgres " + testkit.StartPostgres(t).URL()
	for name, store := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Session: "secret " + secretA + "\nclient_writable cart\n" + store})
			b := c.NewBrowser()
			b.API(t, "POST", `{"cart":[]}`)
			for round := range 5 {
				tag := etagOf(t, b.API(t, "GET", ""))
				var wins atomic.Int32
				var winner atomic.Value
				var wg sync.WaitGroup
				for i := range 20 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						body := fmt.Sprintf(`{"cart":["w%d"]}`, i)
						r, err := c.DoErr(Req{Method: "POST", Path: "/__session", CT: "application/json",
							Cookie: b.Jar.Header(), Body: body, Header: []string{"If-Match: " + tag}})
						switch {
						case err != nil:
							t.Error(err)
						case r.Status == 200:
							wins.Add(1)
							winner.Store(fmt.Sprintf(`["w%d"]`, i))
						case r.Status != 412:
							t.Errorf("writer %d: %s", i, r)
						}
					}()
				}
				wg.Wait()
				if t.Failed() {
					return
				}
				if n := wins.Load(); n != 1 {
					t.Fatalf("round %d: %d of 20 writers with If-Match %s succeeded, want exactly 1", round, n, tag)
				}
				wantObject(t, b.API(t, "GET", ""), 200, `{"cart":`+winner.Load().(string)+`}`)
			}
		})
	}
}
