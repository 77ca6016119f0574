package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
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
	r := newRequest("POST", "/__session", body)
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
	for _, tc := range []struct{ name, store string }{
		{"cookie", `{"backend":"cookie"}`},
		{"memory", `{"backend":"memory","name":"bench"}`},
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
