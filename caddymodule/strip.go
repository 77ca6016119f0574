package caddymodule

import (
	"io"
	"net/http"
	"strings"
)

// reservedPrefix is the normalised form every reserved header name starts
// with.
const reservedPrefix = "x-session"

// IsReservedHeader reports whether a header name is one the module owns:
// lowercased, with '_' and '.' read as '-', it starts with "x-session".
// Backends such as PHP, Django and WSGI merge '_' and '-', and nginx drops
// '_', so every such spelling must be treated as the same header.
func IsReservedHeader(name string) bool {
	if len(name) < len(reservedPrefix) {
		return false
	}
	for i := 0; i < len(reservedPrefix); i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_' || c == '.':
			c = '-'
		}
		if c != reservedPrefix[i] {
			return false
		}
	}
	return true
}

// stripRequest removes from r everything a client could use to put its own
// value into an X-Session-* header upstream, or to make the proxy drop the
// headers the module sets: reserved headers, reserved names in the
// Connection header, reserved trailers (now, and again when the body
// reaches EOF, since net/http fills trailers then), and any Upgrade other
// than websocket (an h2c tunnel would carry requests past the module).
func stripRequest(r *http.Request) {
	for name := range r.Header {
		if IsReservedHeader(name) {
			delete(r.Header, name)
		}
	}
	if conn, ok := r.Header["Connection"]; ok {
		r.Header["Connection"] = filterTokens(conn, IsReservedHeader)
		if len(r.Header["Connection"]) == 0 {
			delete(r.Header, "Connection")
		}
	}
	if up, ok := r.Header["Upgrade"]; ok && !onlyWebSocket(up) {
		delete(r.Header, "Upgrade")
		delete(r.Header, "Http2-Settings")
		if conn := r.Header["Connection"]; len(conn) > 0 {
			r.Header["Connection"] = filterTokens(conn, func(t string) bool {
				return strings.EqualFold(t, "upgrade") || strings.EqualFold(t, "http2-settings")
			})
			if len(r.Header["Connection"]) == 0 {
				delete(r.Header, "Connection")
			}
		}
	}
	if len(r.Trailer) > 0 {
		stripTrailers(r.Trailer)
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &trailerStripper{ReadCloser: r.Body, trailer: r.Trailer}
		}
	}
}

// stripTrailers removes reserved names from a trailer map.
func stripTrailers(t http.Header) {
	for name := range t {
		if IsReservedHeader(name) {
			delete(t, name)
		}
	}
}

// trailerStripper removes reserved trailers once the body reaches EOF, the
// moment net/http fills the request's trailer map and before
// reverse_proxy copies it.
type trailerStripper struct {
	io.ReadCloser
	trailer http.Header
}

func (t *trailerStripper) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if err != nil {
		stripTrailers(t.trailer)
	}
	return n, err
}

// onlyWebSocket reports whether an Upgrade header asks for websocket and
// nothing else.
func onlyWebSocket(values []string) bool {
	n := 0
	for _, v := range values {
		for _, tok := range strings.Split(v, ",") {
			t := strings.TrimSpace(tok)
			if t == "" {
				continue
			}
			if !strings.EqualFold(t, "websocket") {
				return false
			}
			n++
		}
	}
	return n > 0
}
