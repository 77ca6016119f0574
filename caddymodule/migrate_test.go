package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// TestMigrateHydrogenV1 feeds cookies in the exact format Hydrogen 1.0's
// CookieSessionStorage wrote: encodeURIComponent(JSON.stringify(data)).
func TestMigrateHydrogenV1(t *testing.T) {
	for _, store := range []string{`{"backend":"cookie"}`, `{"backend":"memory","name":"migrate-test"}`} {
		h := newTestHandler(t, `{"secrets":["`+testSecret+`"],"store":`+store+`,"client_writable":["countryCode","cart"],"migrate_from":"hydrogen_v1"}`)
		var got http.Header
		capture := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			got = r.Header.Clone()
			return nil
		})
		r := newRequest("GET", "/", "")
		// {"countryCode":"DE","customerId":"c_1","cart":{"n":1},"bad key":1}
		r.Header.Set("Cookie", "__session=%7B%22countryCode%22%3A%22DE%22%2C%22customerId%22%3A%22c_1%22%2C%22cart%22%3A%7B%22n%22%3A1%7D%2C%22bad%20key%22%3A1%7D; other=1")
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, capture); err != nil {
			t.Fatal(err)
		}
		if got.Get("X-Session-Countrycode") != "DE" || got.Get("X-Session-Cart") != `{"n":1}` {
			t.Errorf("%s: writable keys not imported: %v", store, got)
		}
		if got.Get("X-Session-Customerid") != "" {
			t.Errorf("%s: a key that is not client-writable was imported from an unsigned cookie", store)
		}
		if strings.Contains(got.Get("Cookie"), "__session") || got.Get("Cookie") != "other=1" {
			t.Errorf("%s: Cookie upstream = %q", store, got.Get("Cookie"))
		}
		set := w.Header().Values("Set-Cookie")
		if len(set) != 1 || !strings.HasPrefix(set[0], "__session=") || strings.Contains(set[0], "%7B") {
			t.Fatalf("%s: the Hydrogen cookie was not replaced by a session cookie: %q", store, set)
		}
		// The new cookie is a real session.
		r = newRequest("GET", "/__session", "")
		r.Header.Set("Cookie", strings.SplitN(set[0], ";", 2)[0])
		w = httptest.NewRecorder()
		h.ServeHTTP(w, r, capture)
		if body := strings.TrimSpace(w.Body.String()); body != `{"cart":{"n":1},"countryCode":"DE"}` {
			t.Errorf("%s: session after import = %s", store, body)
		}
	}
}

// TestMigrateUnencodedJSON: a Hydrogen cookie written as raw JSON, which
// net/http's cookie parser refuses, is imported too.
func TestMigrateUnencodedJSON(t *testing.T) {
	h := newTestHandler(t, `{"secrets":["`+testSecret+`"],"client_writable":["countryCode"],"migrate_from":"hydrogen_v1"}`)
	var got http.Header
	r := newRequest("GET", "/", "")
	r.Header.Set("Cookie", `a=1; __session={"countryCode":"FR","customerId":"c_9"}`)
	h.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		got = r.Header.Clone()
		return nil
	}))
	if got.Get("X-Session-Countrycode") != "FR" || got.Get("X-Session-Customerid") != "" {
		t.Errorf("raw JSON Hydrogen cookie: upstream got %v", got)
	}
}

func TestMigrateOffIgnoresHydrogenCookie(t *testing.T) {
	h := newTestHandler(t, `{"secrets":["`+testSecret+`"],"client_writable":["countryCode"]}`)
	r := newRequest("GET", "/", "")
	r.Header.Set("Cookie", "__session=%7B%22countryCode%22%3A%22DE%22%7D")
	var got http.Header
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		got = r.Header.Clone()
		return nil
	}))
	if got.Get("X-Session-Countrycode") != "" || w.Header().Get("Set-Cookie") != "" {
		t.Errorf("imported with migrate_from off: %v %v", got, w.Header())
	}
}
