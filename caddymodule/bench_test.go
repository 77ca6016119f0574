package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-session/caddy-session/cookie"
	"github.com/caddy-session/caddy-session/storage"
)

const testSecret = "bench-secret-0123456789abcdef0123456789abcdef"

// newTestHandler provisions a handler from its JSON config, outside a
// running Caddy.
func newTestHandler(tb testing.TB, config string) *Handler {
	tb.Helper()
	h := new(Handler)
	if err := json.Unmarshal([]byte(config), h); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	tb.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		tb.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		tb.Fatal(err)
	}
	return h
}

// okHandler stands for the upstream: it reads what it was given and answers.
var okHandler = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write([]byte("ok"))
	return err
})

// newRequest builds a request as Caddy hands it to a handler.
func newRequest(method, target, body string) *http.Request {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	return r.WithContext(ctx)
}

// establish creates a session through the API and returns its Cookie
// header.
func establish(tb testing.TB, h *Handler, body string) string {
	tb.Helper()
	return establishOn(tb, h, "example.com", body)
}

// establishOn is establish for a request to host: a session belongs to
// the host that issued it.
func establishOn(tb testing.TB, h *Handler, host, body string) string {
	tb.Helper()
	r := newRequest("POST", "/__session", body)
	r.Host = host
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, okHandler); err != nil || w.Code != 200 {
		tb.Fatalf("establishing a session: %v %d %s", err, w.Code, w.Body)
	}
	var pairs []string
	for _, c := range w.Result().Cookies() {
		pairs = append(pairs, c.Name+"="+c.Value)
	}
	return strings.Join(pairs, "; ")
}

const fiveKeys = `{"countryCode":"DE","currency":"EUR","cart":{"items":[{"sku":"mug","qty":2}]},"locale":"de-DE","theme":"dark"}`

func benchConfig(store string) string {
	return `{"secrets":["` + testSecret + `"],"store":` + store + `,
		"client_writable":["countryCode","currency","cart","locale","theme","n"]}`
}

func BenchmarkServeHTTP(b *testing.B) {
	fileStore, _ := json.Marshal(map[string]string{"backend": "file", "dir": b.TempDir()})
	for _, tc := range []struct{ name, store string }{
		{"cookie", `{"backend":"cookie"}`},
		{"memory", `{"backend":"memory","name":"bench"}`},
		{"file", string(fileStore)},
	} {
		h := newTestHandler(b, benchConfig(tc.store))
		// Production logs at info: debug lines must not count here.
		h.logger = zap.NewNop()
		h.ops.debugLog = nil
		b.Run(tc.name+"/no-session", func(b *testing.B) {
			benchRequests(b, h, "", "GET", "/products", "")
		})
		cookie := establish(b, h, fiveKeys)
		b.Run(tc.name+"/hit", func(b *testing.B) {
			benchRequests(b, h, cookie, "GET", "/products", "")
		})
		b.Run(tc.name+"/api-write", func(b *testing.B) {
			benchRequests(b, h, cookie, "POST", "/__session", `{"n":1}`)
		})
	}
}

func benchRequests(b *testing.B, h *Handler, cookie, method, target, body string) {
	b.ReportAllocs()
	for b.Loop() {
		r := newRequest(method, target, body)
		r.Header.Set("Accept", "text/html")
		r.Header.Set("User-Agent", "bench")
		if cookie != "" {
			r.Header.Set("Cookie", cookie)
		}
		if body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, okHandler); err != nil || w.Code != 200 {
			b.Fatalf("%v %d", err, w.Code)
		}
	}
}

// BenchmarkBaseline is the cost of the benchmark's own request and
// recorder, to subtract from BenchmarkServeHTTP.
func BenchmarkBaseline(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		r := newRequest("GET", "/products", "")
		r.Header.Set("Accept", "text/html")
		r.Header.Set("User-Agent", "bench")
		r.Header.Set("Cookie", "x=y")
		w := httptest.NewRecorder()
		_ = okHandler.ServeHTTP(w, r)
	}
}

// BenchmarkStripAndForward: removing the client's reserved headers and
// setting the session's, with 0, 5 and 50 client headers of which a fifth
// are spoofed X-Session-* spellings.
func BenchmarkStripAndForward(b *testing.B) {
	h := newTestHandler(b, benchConfig(`{"backend":"cookie"}`))
	var s session
	s.values = map[string]json.RawMessage{}
	if err := json.Unmarshal([]byte(fiveKeys), &s.values); err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{0, 5, 50} {
		base := make(http.Header, n)
		for i := range n {
			name := "X-Client-Header-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
			if i%5 == 0 {
				name = []string{"X-Session-Customerid", "X_Session_Role", "x.session.admin"}[i%3] + string(rune('a'+i%26))
			}
			base[name] = []string{"value"}
		}
		b.Run("headers="+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			r := httptest.NewRequest("GET", "/", nil)
			for b.Loop() {
				b.StopTimer()
				r.Header = base.Clone()
				s.headers = nil
				b.StartTimer()
				stripRequest(r)
				h.forward(r, &s)
			}
		})
	}
}

// BenchmarkManySessions is a memory-store hit when the store holds 1k or
// 1M sessions and every request brings another one, chosen at random: at
// 1M neither the store nor the verified-cookie cache (16k entries) is warm,
// as on a busy storefront. The performance issue asks for the cost to be
// flat in the number of sessions; sessions=1000/baseline and
// sessions=1000000/baseline are the harness alone (building the request,
// picking the cookie from the same slice), to subtract.
func BenchmarkManySessions(b *testing.B) {
	var values map[string]json.RawMessage
	if err := json.Unmarshal([]byte(fiveKeys), &values); err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1000, 1000000} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			if n > 1000 && testing.Short() {
				b.Skip("a million sessions take a while to set up; drop -short")
			}
			h := newTestHandler(b, benchConfig(fmt.Sprintf(`{"backend":"memory","name":"bench-many-%d","max_sessions":%d}`, n, n)))
			h.logger = zap.NewNop()
			h.ops.debugLog = nil
			codec, err := h.codecFor(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			cookies := make([]string, n)
			for i := range cookies {
				id := cookie.NewID()
				if _, err := h.ops.raw.Merge(b.Context(), storage.Key(id), values, storage.MergeOptions{
					Create: true, Now: now, Deadline: now.Add(24 * time.Hour),
				}); err != nil {
					b.Fatal(err)
				}
				v, err := codec.Encode(h.opts.Name, "example.com", id) // httptest requests are for example.com
				if err != nil {
					b.Fatal(err)
				}
				cookies[i] = h.opts.Name + "=" + v
			}
			for _, mode := range []string{"baseline", "hit"} {
				b.Run(mode, func(b *testing.B) {
					b.ReportAllocs()
					x := uint64(88172645463325252)
					for b.Loop() {
						x ^= x << 13
						x ^= x >> 7
						x ^= x << 17
						r := newRequest("GET", "/products", "")
						r.Header.Set("Accept", "text/html")
						r.Header.Set("User-Agent", "bench")
						r.Header.Set("Cookie", cookies[x%uint64(n)])
						w := httptest.NewRecorder()
						if mode == "baseline" {
							_ = okHandler.ServeHTTP(w, r)
							continue
						}
						if err := h.ServeHTTP(w, r, okHandler); err != nil || w.Code != 200 {
							b.Fatalf("%v %d", err, w.Code)
						}
						if w.Header().Get("Vary") == "" || r.Header.Get("X-Session-Countrycode") != "DE" {
							b.Fatal("the session was not forwarded")
						}
					}
				})
			}
		})
	}
}
