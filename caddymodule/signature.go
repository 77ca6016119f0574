package caddymodule

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader carries the gateway's signature over the forwarded
// session headers, when sign_headers is on.
const SignatureHeader = "X-Session-Signature"

// signatureVersion starts the signed text, so the format can change
// without ambiguity.
const signatureVersion = "caddy-session-v1"

// sign adds X-Session-Signature to the request: an HMAC-SHA256, under the
// signing key, of the canonical text of the request's method, host, path,
// a timestamp and every X-Session-* header the gateway forwards. An
// upstream that can be reached around the gateway recomputes it to tell
// the gateway's headers from forged ones.
//
// Canonical text, one line each, "\n" after every line:
//
//	caddy-session-v1
//	<unix seconds>
//	<METHOD>
//	<host, as in the Host header>
//	<path, as the gateway received it, percent-encoded>
//	<lowercase header name>:<value>    (one line per X-Session-* header, sorted by name)
//
// The header value is t=<unix seconds>,v1=<lowercase hex HMAC>.
func sign(key []byte, r *http.Request, headers []headerPair, now time.Time) {
	ts := strconv.FormatInt(now.Unix(), 10)
	r.Header[SignatureHeader] = []string{"t=" + ts + ",v1=" + Signature(key, ts, r.Method, r.Host, r.URL.EscapedPath(), headerLines(headers))}
}

// headerLines returns the forwarded headers as lowercase "name:value",
// sorted.
func headerLines(headers []headerPair) []string {
	lines := make([]string, len(headers))
	for i, p := range headers {
		lines[i] = strings.ToLower(p.name) + ":" + p.value
	}
	sort.Strings(lines)
	return lines
}

// Signature computes the v1 signature of a request: the HMAC-SHA256 under
// key of the canonical text (see the README's "Signed headers"), in
// lowercase hex. lines are the X-Session-* headers (without the signature)
// as lowercase "name:value", sorted.
func Signature(key []byte, ts, method, host, path string, lines []string) string {
	m := hmac.New(sha256.New, key)
	for _, s := range [...]string{signatureVersion, ts, method, host, path} {
		m.Write([]byte(s))
		m.Write([]byte{'\n'})
	}
	for _, l := range lines {
		m.Write([]byte(l))
		m.Write([]byte{'\n'})
	}
	return hex.EncodeToString(m.Sum(nil))
}
