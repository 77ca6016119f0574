package integration

import (
	"fmt"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/internal/testkit"
)

// S47: a request that raced a sign-in (X-Session-Set + X-Session-Rotate)
// can neither create a session nor set the session cookie, so the browser
// always ends signed in.

// raceStores is the session-block store line of every server store, with
// the servers they need started for the test.
func raceStores(t *testing.T) map[string]string {
	stores := serverStores(t)
	stores["redis"] = "store redis " + startRedis(t).URL()
	stores["postgres"] = "store postgres " + testkit.StartPostgres(t).URL()
	return stores
}

// timedResp is a response and when it arrived, as a browser applies
// Set-Cookie lines: in the order responses come back.
type timedResp struct {
	r    *Resp
	at   time.Time
	what string
}

// TestSignInRaceKeepsTheBrowserSignedIn: a sign-in whose upstream takes a
// little while races 20 API writes sent with the pre-login cookie, some
// before, some during, some after it. Writes that land after the
// rotation answer 409 and set no cookie; the browser, applying every
// Set-Cookie in the order the responses arrive, ends with the signed-in
// session, every round, on every server store.
func TestSignInRaceKeepsTheBrowserSignedIn(t *testing.T) {
	t.Parallel()
	for name, store := range raceStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			up := NewUpstream(t)
			up.Handle("/login", func(_ *Recorded, h http.Header) int {
				time.Sleep(30 * time.Millisecond) // checking the password
				h.Set("X-Session-Set", `{"customerId":"c_42"}`)
				h.Set("X-Session-Rotate", "1")
				return 0
			})
			up.Handle("/late-set", func(_ *Recorded, h http.Header) int {
				h.Set("X-Session-Set", `{"note":"from a request that raced the sign-in"}`)
				return 0
			})
			c := StartCaddy(t, CaddyOpts{Upstream: up, Session: "secret " + secretA +
				"\nclient_writable cart n note\nclient_readable *\n" + store})

			for round := range 5 {
				b := c.NewBrowser()
				wantObject(t, b.API(t, "POST", `{"cart":["mug"]}`), 200, `{"cart":["mug"]}`)
				pre := b.Jar.Header()

				var mu sync.Mutex
				var got []timedResp
				record := func(what string, r *Resp) {
					mu.Lock()
					got = append(got, timedResp{r, time.Now(), what})
					mu.Unlock()
				}
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := c.DoErr(Req{Path: "/login", Cookie: pre})
					if err != nil {
						t.Error(err)
						return
					}
					record("login", r)
				}()
				for i := range 20 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						time.Sleep(time.Duration(i) * 3 * time.Millisecond) // before, during, after
						r, err := c.DoErr(Req{Method: "POST", Path: "/__session", CT: "application/json",
							Cookie: pre, Body: fmt.Sprintf(`{"n":%d}`, i)})
						if err != nil {
							t.Error(err)
							return
						}
						record(fmt.Sprintf("write %d", i), r)
					}()
				}
				wg.Wait()
				if t.Failed() {
					return
				}
				sort.Slice(got, func(i, j int) bool { return got[i].at.Before(got[j].at) })
				conflicts := 0
				for _, g := range got {
					switch {
					case g.what == "login":
						if g.r.Status != 200 || sessionCookie(t, g.r) == "" {
							t.Fatalf("round %d: the sign-in answered without a new session cookie:\n%s", round, g.r)
						}
					case g.r.Status == 409:
						conflicts++
						if len(g.r.SetCookies()) != 0 {
							t.Fatalf("round %d: %s answered 409 with Set-Cookie %q: it would sign the browser out", round, g.what, g.r.SetCookies())
						}
						wantError(t, g.r, 409)
					case g.r.Status == 503 && len(g.r.SetCookies()) == 0:
						// The store timed out under a loaded machine: a
						// failed write, harmless to the sign-in.
						t.Logf("round %d: %s: 503 (the store timed out)", round, g.what)
					case g.r.Status != 200:
						t.Fatalf("round %d: %s: %s", round, g.what, g.r)
					case sessionCookie(t, g.r) != "":
						t.Fatalf("round %d: %s set a new session cookie: it would replace the signed-in one:\n%s", round, g.what, g.r)
					}
					b.Jar.Update(t, g.r)
				}
				// Signed in: the upstream sees the customer, the cart is
				// still there.
				r := b.API(t, "GET", "")
				if m := jsonObject(t, r); m["customerId"] != "c_42" || fmt.Sprint(m["cart"]) != "[mug]" {
					t.Fatalf("round %d: after the race the browser's session is %s, want signed in with its cart (%d writes got 409)", round, r.Body, conflicts)
				}
				t.Logf("%s, round %d: %d of 20 racing writes answered 409", name, round, conflicts)

				// An upstream write in answer to the pre-login cookie is
				// dropped, and sets no cookie; the API's DELETE with it is a
				// 409 that does not sign the browser out.
				r = c.Do(t, Req{Path: "/late-set", Cookie: pre})
				if r.Status != 200 || len(setCookieFor(r, "__session")) != 0 {
					t.Fatalf("round %d: an upstream Set with the pre-login cookie: %d, Set-Cookie %q", round, r.Status, r.SetCookies())
				}
				r = c.Do(t, Req{Method: "DELETE", Path: "/__session", Cookie: pre})
				if r.Status != 409 || len(r.SetCookies()) != 0 {
					t.Fatalf("round %d: DELETE with the pre-login cookie: %d, Set-Cookie %q; want 409 and no cookie", round, r.Status, r.SetCookies())
				}
				r = c.Do(t, Req{Path: "/__session", Cookie: pre})
				wantObject(t, r, 200, `{}`)
				noSetCookie(t, r)
				if m := jsonObject(t, b.API(t, "GET", "")); m["customerId"] != "c_42" || m["note"] != nil {
					t.Fatalf("round %d: the signed-in session changed through the pre-login cookie: %v", round, m)
				}
			}
		})
	}
}
