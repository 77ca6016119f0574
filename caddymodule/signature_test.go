package caddymodule

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// verify is what an upstream does, written from the documented canonical
// form, independently of sign.
func verify(key []byte, r *http.Request) bool {
	sig := r.Header.Get("X-Session-Signature")
	var ts, mac string
	for _, part := range strings.Split(sig, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			mac = v
		}
	}
	var lines []string
	for name, values := range r.Header {
		l := strings.ToLower(name)
		if strings.HasPrefix(l, "x-session-") && l != "x-session-signature" {
			lines = append(lines, l+":"+values[0])
		}
	}
	sort.Strings(lines)
	text := "caddy-session-v1\n" + ts + "\n" + r.Method + "\n" + r.Host + "\n" + r.URL.EscapedPath() + "\n"
	for _, l := range lines {
		text += l + "\n"
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(text))
	want := hex.EncodeToString(m.Sum(nil))
	return ts != "" && hmac.Equal([]byte(want), []byte(mac))
}

func TestSignHeaders(t *testing.T) {
	key := "signing-key-0123456789abcdef0123456789abcdef"
	h := newTestHandler(t, `{"secrets":["`+testSecret+`"],"sign_headers":"`+key+`","client_writable":["countryCode","cart"]}`)
	cookie := establishOn(t, h, "shop.example", `{"countryCode":"DE","cart":{"n":2}}`)

	var got *http.Request
	capture := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		got = r.Clone(r.Context())
		return nil
	})
	for _, withCookie := range []bool{true, false} {
		r := newRequest("GET", "/products/%C3%A9t%C3%A9?x=1", "")
		r.Host = "shop.example"
		r.Header.Set("X-Session-Signature", "t=1,v1=forged")
		if withCookie {
			r.Header.Set("Cookie", cookie)
		}
		if err := h.ServeHTTP(httptest.NewRecorder(), r, capture); err != nil {
			t.Fatal(err)
		}
		if got.Header.Get("X-Session-Signature") == "t=1,v1=forged" {
			t.Fatal("the client's signature reached the upstream")
		}
		if !verify([]byte(key), got) {
			t.Errorf("signature does not verify (cookie=%v): %v", withCookie, got.Header)
		}
		if withCookie && got.Header.Get("X-Session-Countrycode") != "DE" {
			t.Errorf("session not forwarded: %v", got.Header)
		}
		// A forged or changed header breaks it.
		forged := got.Clone(got.Context())
		forged.Header.Set("X-Session-Customerid", "c_1")
		if verify([]byte(key), forged) {
			t.Error("an added header still verifies")
		}
		other := got.Clone(got.Context())
		other.Method = "POST"
		if verify([]byte(key), other) {
			t.Error("another method still verifies")
		}
		if verify([]byte("another-key-0123456789abcdef0123456789abcdef"), got) {
			t.Error("another key verifies")
		}
	}
}
