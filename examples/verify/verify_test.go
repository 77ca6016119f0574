package verify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

var key = []byte("verify-test-key-0123456789abcdefghijklmnop")

// sign builds the header the gateway sends, written from docs/signing.md
// rather than from Verify.
func sign(key []byte, ts int64, method, host, path string, headers [][2]string) string {
	var lines []string
	for _, h := range headers {
		lines = append(lines, strings.ToLower(h[0])+":"+h[1])
	}
	sort.Strings(lines)
	text := "caddy-session-v1\n" + strconv.FormatInt(ts, 10) + "\n" + method + "\n" + host + "\n" + path + "\n"
	for _, l := range lines {
		text += l + "\n"
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(text))
	return "t=" + strconv.FormatInt(ts, 10) + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	headers := [][2]string{{"X-Session-Countrycode", "DE"}, {"X-Session-Cart", `{"n":2}`}, {"X-Session-Customer-Id", "c_42"}}
	good := func() *http.Request {
		r := httptest.NewRequest("GET", "http://shop.example/products/%C3%A9t%C3%A9?q=1", nil)
		for _, h := range headers {
			r.Header.Set(h[0], h[1])
		}
		r.Header.Set("X-Session-Signature", sign(key, now.Unix(), "GET", "shop.example", "/products/%C3%A9t%C3%A9", headers))
		return r
	}
	if err := Verify(good(), key, time.Minute, now); err != nil {
		t.Fatalf("a good signature: %v", err)
	}
	// The query string is not signed.
	r := good()
	r.URL.RawQuery = "q=2"
	if err := Verify(r, key, time.Minute, now); err != nil {
		t.Errorf("another query string: %v", err)
	}
	// No session: no headers, still signed.
	r = httptest.NewRequest("POST", "http://shop.example/", nil)
	r.Header.Set("X-Session-Signature", sign(key, now.Unix(), "POST", "shop.example", "/", nil))
	if err := Verify(r, key, time.Minute, now); err != nil {
		t.Errorf("no session: %v", err)
	}

	for _, tc := range []struct {
		name   string
		change func(r *http.Request)
		want   error
	}{
		{"value changed", func(r *http.Request) { r.Header.Set("X-Session-Customer-Id", "c_1") }, ErrMismatch},
		{"header added", func(r *http.Request) { r.Header.Set("X-Session-Role", "admin") }, ErrMismatch},
		{"header added with _", func(r *http.Request) { r.Header["X_Session_Role"] = []string{"admin"} }, ErrMismatch},
		{"header added with .", func(r *http.Request) { r.Header["X.Session.Role"] = []string{"admin"} }, ErrMismatch},
		{"bare X-Session", func(r *http.Request) { r.Header.Set("X-Session", "admin") }, ErrMismatch},
		{"value repeated", func(r *http.Request) { r.Header.Add("X-Session-Countrycode", "US") }, ErrMismatch},
		{"header removed", func(r *http.Request) { r.Header.Del("X-Session-Cart") }, ErrMismatch},
		{"other method", func(r *http.Request) { r.Method = "POST" }, ErrMismatch},
		{"other host", func(r *http.Request) { r.Host = "evil.example" }, ErrMismatch},
		{"other path", func(r *http.Request) { r.URL.Path, r.URL.RawPath = "/admin", "" }, ErrMismatch},
		{"path decoded", func(r *http.Request) { r.URL.RawPath = "/products/%c3%a9t%c3%a9" }, ErrMismatch},
		{"no signature", func(r *http.Request) { r.Header.Del("X-Session-Signature") }, ErrMissing},
		{"two signatures", func(r *http.Request) { r.Header.Add("X-Session-Signature", "t=1,v1=00") }, ErrMalformed},
		{"no timestamp", func(r *http.Request) {
			r.Header.Set("X-Session-Signature", strings.Split(r.Header.Get("X-Session-Signature"), ",")[1])
		}, ErrMalformed},
		{"short mac", func(r *http.Request) { r.Header.Set("X-Session-Signature", "t=1800000000,v1=abcd") }, ErrMalformed},
		{"expired", func(r *http.Request) {
			r.Header.Set("X-Session-Signature", sign(key, now.Unix()-61, "GET", "shop.example", "/products/%C3%A9t%C3%A9", headers))
		}, ErrExpired},
		{"from the future", func(r *http.Request) {
			r.Header.Set("X-Session-Signature", sign(key, now.Unix()+61, "GET", "shop.example", "/products/%C3%A9t%C3%A9", headers))
		}, ErrExpired},
		{"other key", func(r *http.Request) {
			r.Header.Set("X-Session-Signature", sign([]byte("another-key-0123456789abcdefghijklmnopqrs"), now.Unix(), "GET", "shop.example", "/products/%C3%A9t%C3%A9", headers))
		}, ErrMismatch},
	} {
		r := good()
		tc.change(r)
		if err := Verify(r, key, time.Minute, now); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestMiddleware(t *testing.T) {
	h := Middleware(key, time.Minute, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	r := httptest.NewRequest("GET", "http://shop.example/", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden {
		t.Errorf("unsigned request: %d", w.Code)
	}
	r.Header.Set("X-Session-Signature", sign(key, time.Now().Unix(), "GET", "shop.example", "/", nil))
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusTeapot {
		t.Errorf("signed request: %d", w.Code)
	}
}

// TestDocsCarrySnippets: docs/signing.md shows the three verifiers exactly
// as tested here.
func TestDocsCarrySnippets(t *testing.T) {
	doc, err := os.ReadFile("../../docs/signing.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"verify.go", "verify.js", "verify.php"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(doc), string(src)) {
			t.Errorf("docs/signing.md does not carry examples/verify/%s as it is; paste it again", f)
		}
	}
}
