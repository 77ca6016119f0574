package integration

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Flash keys (X-Session-Flash: S49) and expiring keys (X-Session-Expire),
// through a real Caddy on every store.

const flashSession = "client_writable cart promo\nclient_readable *\n"

// flashUpstream answers /set-flash with a flash value, /set-promo with an
// expiring promo code, /set-promo-again with the promo set again without
// an expiry, /keep-promo with X-Session-Expire: promo=0.
func flashUpstream(t *testing.T) *Upstream {
	up := NewUpstream(t)
	up.Handle("/set-flash", func(_ *Recorded, h http.Header) int {
		h.Set("X-Session-Set", `{"cart":["mug"]}`)
		h.Set("X-Session-Flash", `{"notice":"Added to cart"}`)
		return 0
	})
	up.Handle("/set-promo", func(_ *Recorded, h http.Header) int {
		h.Set("X-Session-Set", `{"promo":"SPRING"}`)
		h.Set("X-Session-Expire", "promo=2")
		return 0
	})
	up.Handle("/set-promo-again", func(_ *Recorded, h http.Header) int {
		h.Set("X-Session-Set", `{"promo":"SUMMER"}`)
		return 0
	})
	up.Handle("/keep-promo", func(_ *Recorded, h http.Header) int {
		h.Set("X-Session-Expire", "promo=0")
		return 0
	})
	return up
}

// noticeCount counts the upstream requests whose path starts with prefix
// that carried the flash notice.
func noticeCount(up *Upstream, prefix string) int {
	n := 0
	for _, rec := range up.Requests() {
		if strings.HasPrefix(rec.Path, prefix) && rec.Header.Get("X-Session-Notice") == "Added to cart" {
			n++
		}
	}
	return n
}

// TestFlashExactlyOnce (S49): a flash value set by the upstream reaches
// exactly one later upstream request, even when ten race for it; it is
// never returned by the API, and it is gone afterwards.
func TestFlashExactlyOnce(t *testing.T) {
	t.Parallel()
	for name, store := range versionStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			up := flashUpstream(t)
			c := StartCaddy(t, CaddyOpts{Upstream: up, Session: "secret " + secretA + "\n" + flashSession + store})
			for round := range 3 {
				b := c.NewBrowser()
				b.Get(t, "/set-flash")
				wantObject(t, b.API(t, "GET", ""), 200, `{"cart":["mug"]}`)
				if name == "cookie" {
					// The cookie store: the next request gets it, and the
					// cookie it gets back no longer holds it.
					b.Get(t, fmt.Sprintf("/r%d/next", round))
					b.Get(t, fmt.Sprintf("/r%d/after", round))
				} else {
					var wg sync.WaitGroup
					cookie := b.Jar.Header()
					for i := range 10 {
						wg.Add(1)
						go func() {
							defer wg.Done()
							if _, err := c.DoErr(Req{Path: fmt.Sprintf("/r%d/race/%d", round, i), Cookie: cookie}); err != nil {
								t.Error(err)
							}
						}()
					}
					wg.Wait()
					b.Get(t, fmt.Sprintf("/r%d/after", round))
				}
				if n := noticeCount(up, fmt.Sprintf("/r%d/", round)); n != 1 {
					t.Fatalf("round %d: the flash notice reached %d upstream requests, want exactly 1", round, n)
				}
				wantObject(t, b.API(t, "GET", ""), 200, `{"cart":["mug"]}`)
			}
		})
	}
}

// TestExpiringKeys: X-Session-Expire ends a key after its time on every
// store: neither forwarded nor returned, the ETag changes; a later write
// of the key without an expiry clears it, and so does promo=0. On the
// file and Redis stores the expiry survives a Caddy restart.
func TestExpiringKeys(t *testing.T) {
	t.Parallel()
	for name, store := range versionStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			up := flashUpstream(t)
			c := StartCaddy(t, CaddyOpts{Upstream: up, Session: "secret " + secretA + "\n" + flashSession + store})
			promoUpstream := func(b *Browser, path string) string {
				b.Get(t, path)
				return c.Up.Last(t).Header.Get("X-Session-Promo")
			}

			// Ends after its time.
			b := c.NewBrowser()
			b.API(t, "POST", `{"cart":[1]}`)
			b.Get(t, "/set-promo")
			r := b.API(t, "GET", "")
			wantObject(t, r, 200, `{"cart":[1],"promo":"SPRING"}`)
			before := etagOf(t, r)
			if got := promoUpstream(b, "/with-promo"); got != "SPRING" {
				t.Fatalf("before its end the upstream got promo %q", got)
			}
			if name == "file" || name == "redis" || name == "postgres" {
				c.Restart(t)
			}
			time.Sleep(2500 * time.Millisecond)
			if got := promoUpstream(b, "/without-promo"); got != "" {
				t.Fatalf("after its end the upstream still got promo %q", got)
			}
			r = b.API(t, "GET", "")
			wantObject(t, r, 200, `{"cart":[1]}`)
			if etagOf(t, r) == before {
				t.Fatal("the ETag did not change when the promo ended")
			}
			r = b.API(t, "POST", `{"promo":"back"}`)
			wantObject(t, r, 200, `{"cart":[1],"promo":"back"}`)

			// A later write of the key without an expiry clears it.
			b2 := c.NewBrowser()
			b2.API(t, "POST", `{"cart":[2]}`)
			b2.Get(t, "/set-promo")
			b2.Get(t, "/set-promo-again")
			// And promo=0 clears it too.
			b3 := c.NewBrowser()
			b3.API(t, "POST", `{"cart":[3]}`)
			b3.Get(t, "/set-promo")
			b3.Get(t, "/keep-promo")
			time.Sleep(2500 * time.Millisecond)
			wantObject(t, b2.API(t, "GET", ""), 200, `{"cart":[2],"promo":"SUMMER"}`)
			wantObject(t, b3.API(t, "GET", ""), 200, `{"cart":[3],"promo":"SPRING"}`)
		})
	}
}
