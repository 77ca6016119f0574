package caddymodule

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// maxForwardedHeader bounds one forwarded header, name and value: upstreams
// reject huge headers, so a larger value is not forwarded.
const maxForwardedHeader = 8 << 10

// forward sets the session's X-Session-* request headers. The client's own
// were removed before; a key that is absent or filtered out sends nothing.
func (h *Handler) forward(r *http.Request, s *session) {
	if s.headers == nil {
		values := visible(s.values, time.Now())
		if len(s.flash) > 0 {
			// Flash keys this request took (flash.go) travel like keys.
			merged := make(map[string]json.RawMessage, len(values)+len(s.flash))
			for k, v := range values {
				merged[k] = v
			}
			for k, v := range s.flash {
				merged[k] = v
			}
			values = merged
		}
		s.headers = h.forwardedHeaders(values, s.pairBuf[:0], func(k string, n int) { h.warnOversize(s, k, n) })
	}
	// Each header gets its own []string: a later handler may edit r.Header
	// in place. Small sessions use the session's own array.
	backing := s.valueBuf[:0]
	if len(s.headers) > len(s.valueBuf) {
		backing = make([]string, len(s.headers))
	}
	backing = backing[:len(s.headers)]
	for i, p := range s.headers {
		backing[i] = p.value
		r.Header[p.name] = backing[i : i+1 : i+1]
	}
}

// warnOversize logs a value too large to forward (its key and size, never
// the value).
func (h *Handler) warnOversize(s *session, key string, n int) {
	h.logger.Warn("session value too large to forward as a header; not forwarded",
		zap.String("key", key), zap.Int("bytes", n), zap.String("session", s.ref(h)))
}

// setPlaceholders exposes the session to later handlers as
// {http.session.*}, computed only when asked for.
func (h *Handler) setPlaceholders(repl *caddy.Replacer, s *session) {
	repl.Map(func(key string) (any, bool) {
		name, ok := strings.CutPrefix(key, "http.session.")
		if !ok {
			return nil, false
		}
		switch name {
		case "exists":
			return s.exists(), true
		case "ref":
			return s.ref(h), true
		case "version":
			if !s.exists() {
				return "", true
			}
			return versionText(s.version), true
		}
		if len(name) > 0 && name[0] == '~' {
			return "", true
		}
		if v, ok := visible(s.values, time.Now())[name]; ok {
			return HeaderValue(v), true
		}
		return "", true
	})
}

// HeaderValue returns how a session value travels in a header: a JSON
// string whose text is printable ASCII as that text, anything else as JSON
// text with every byte outside printable ASCII escaped as \uXXXX, so a
// header never breaks, never splits and never carries a control byte. A
// string with leading or trailing space travels as JSON text too: HTTP
// parsers trim a header value's outer white space, and the upstream must
// read exactly what was forwarded (and signed).
func HeaderValue(v json.RawMessage) string {
	var b strings.Builder
	writeHeaderValue(&b, v)
	return b.String()
}

// maxHeaderValueLen bounds len(HeaderValue(v)): at worst every byte
// becomes a six-byte escape.
func maxHeaderValueLen(v json.RawMessage) int { return 6 * len(v) }

// writeHeaderValue writes HeaderValue(v) to b.
func writeHeaderValue(b *strings.Builder, v json.RawMessage) {
	// JSON white space around the value is not part of it (stores keep
	// compact JSON; this guards a poisoned one).
	v = bytes.Trim(v, " \t\r\n")
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		inner := v[1 : len(v)-1]
		if bytes.IndexByte(inner, '\\') < 0 && bytes.IndexByte(inner, '"') < 0 && printableASCII(inner) && !padded(inner) {
			b.Write(inner) // the common case: plain text
			return
		}
		var s string
		if json.Unmarshal(v, &s) == nil && printableASCII(s) && !padded(s) {
			b.WriteString(s)
			return
		}
	}
	if printableASCII(v) {
		b.Write(v)
		return
	}
	writeASCIIJSON(b, v)
}

// padded reports whether s starts or ends with a space or a tab, which an
// HTTP parser would trim from a header value.
func padded[T ~string | ~[]byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	first, last := s[0], s[len(s)-1]
	return first == ' ' || first == '\t' || last == ' ' || last == '\t'
}

// printableASCII reports whether s holds only bytes 0x20 to 0x7E.
func printableASCII[T ~string | ~[]byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// writeASCIIJSON writes JSON text rewritten so that every byte outside
// printable ASCII is a \u escape. Bytes outside strings cannot be anything
// but JSON whitespace, which is dropped; invalid UTF-8 becomes U+FFFD.
func writeASCIIJSON(b *strings.Builder, v json.RawMessage) {
	const hex = "0123456789abcdef"
	esc := func(r rune) {
		b.Write([]byte{'\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf]})
	}
	for i := 0; i < len(v); {
		c := v[i]
		if c >= 0x20 && c <= 0x7e {
			b.WriteByte(c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			if c == '\t' || c == '\n' || c == '\r' {
				i++ // whitespace between tokens
				continue
			}
			esc(rune(c))
			i++
			continue
		}
		r, size := utf8.DecodeRune(v[i:])
		i += size
		if r > 0xffff {
			r1, r2 := utf16Surrogates(r)
			esc(r1)
			esc(r2)
			continue
		}
		esc(r)
	}
}

// utf16Surrogates splits a rune above the BMP into its UTF-16 pair.
func utf16Surrogates(r rune) (rune, rune) {
	r -= 0x10000
	return 0xd800 + (r>>10)&0x3ff, 0xdc00 + r&0x3ff
}

// forwardedHeaders returns the headers that carry values upstream,
// appended to dst: keys filtered out by forward are left out, and so are
// values too large for a header (reported through oversize). All values
// share one string.
func (h *Handler) forwardedHeaders(values map[string]json.RawMessage, dst []headerPair, oversize func(key string, n int)) []headerPair {
	if len(values) == 0 {
		return nil
	}
	out := dst[:0]
	size := 0
	for _, v := range values {
		size += len(v)
	}
	var b strings.Builder
	b.Grow(size + 16)
	for k, v := range values {
		if h.forwardKeys != nil && !h.forwardKeys[k] {
			continue
		}
		name := h.names.get(k)
		if len(name)+maxHeaderValueLen(v) > maxForwardedHeader {
			// Possibly too large: measure before writing.
			if n := len(HeaderValue(v)); len(name)+n > maxForwardedHeader {
				oversize(k, n)
				continue
			}
		}
		writeHeaderValue(&b, v)
		out = append(out, headerPair{name: name, end: b.Len()})
	}
	all := b.String()
	start := 0
	for i := range out {
		out[i].value = all[start:out[i].end]
		start = out[i].end
	}
	return out
}
