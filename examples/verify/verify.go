// Package verify checks the X-Session-Signature header that caddy-session
// adds to the requests it forwards when sign_headers is on, so that an
// upstream that can be reached around the gateway can tell the gateway's
// X-Session-* headers from forged ones. Copy it, or import it:
//
//	handler = verify.Middleware(key, time.Minute, handler)
//
// The canonical form is in docs/signing.md.
package verify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Errors Verify returns.
var (
	ErrMissing   = errors.New("no X-Session-Signature header")
	ErrMalformed = errors.New("malformed X-Session-Signature header")
	ErrExpired   = errors.New("X-Session-Signature timestamp outside the allowed window")
	ErrMismatch  = errors.New("X-Session-Signature does not match the request")
)

// Verify checks r's X-Session-Signature under key: the HMAC-SHA256 of
// "caddy-session-v1", the timestamp, the method, the Host, the escaped
// path and every X-Session-* header (lowercase "name:value", sorted), each
// followed by "\n". Any header whose name, lowercased with '_' and '.'
// read as '-', starts with "x-session" counts, so one added by someone
// other than the gateway, in any spelling, breaks the signature. The
// timestamp must be within maxSkew of now.
func Verify(r *http.Request, key []byte, maxSkew time.Duration, now time.Time) error {
	sigs := r.Header.Values("X-Session-Signature")
	if len(sigs) == 0 {
		return ErrMissing
	}
	if len(sigs) > 1 {
		return ErrMalformed
	}
	var ts, mac string
	for _, part := range strings.Split(sigs[0], ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			mac = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(mac) != 2*sha256.Size {
		return ErrMalformed
	}
	if d := now.Sub(time.Unix(sec, 0)); d > maxSkew || d < -maxSkew {
		return ErrExpired
	}
	var lines []string
	for name, values := range r.Header {
		n := strings.ToLower(name)
		norm := strings.NewReplacer("_", "-", ".", "-").Replace(n)
		if !strings.HasPrefix(norm, "x-session") || n == "x-session-signature" {
			continue
		}
		for _, v := range values {
			lines = append(lines, n+":"+v)
		}
	}
	sort.Strings(lines)
	m := hmac.New(sha256.New, key)
	for _, s := range append([]string{"caddy-session-v1", ts, r.Method, r.Host, r.URL.EscapedPath()}, lines...) {
		m.Write([]byte(s + "\n"))
	}
	got, err := hex.DecodeString(mac)
	if err != nil {
		return ErrMalformed
	}
	if !hmac.Equal(got, m.Sum(nil)) {
		return ErrMismatch
	}
	return nil
}

// Middleware answers 403 to requests whose signature does not verify, and
// passes the others to next.
func Middleware(key []byte, maxSkew time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := Verify(r, key, maxSkew, time.Now()); err != nil {
			http.Error(w, "forbidden: "+err.Error(), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
