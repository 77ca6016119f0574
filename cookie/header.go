package cookie

import (
	"net/http"
	"strings"
)

// extraIndexes is how far past maxChunks Read still reports chunks, so
// that leftovers of a session written under a larger max_chunks get
// expired too.
const extraIndexes = 8

// Read returns the session cookie's value from a request's Cookie headers:
// Name, then Name.1, Name.2, … joined in order, stopping at the first
// missing chunk and reading at most maxChunks. present lists which chunk
// indexes the request carried (all of them, contiguous or not, up to
// maxChunks+8), so the caller can expire leftovers.
//
// present is ascending and nil when there is none. When a name appears
// twice, the first wins, as in net/http. A chunk of MaxLine bytes or more
// cannot come from Chunks, so such a value reads as "" (no session), which
// also bounds what reaches Decode. Only chunk names as ChunkName spells them
// count ("Name.01" does not). maxChunks is clamped to
// 1..MaxChunksLimit.
func (o Options) Read(h http.Header, maxChunks int) (value string, present []int) {
	lines := h["Cookie"]
	if len(lines) == 0 {
		return "", nil
	}
	maxChunks = clampChunks(maxChunks)
	name := o.name()
	limit := maxChunks + extraIndexes

	// Stack storage for the common sizes keeps a request without our
	// cookie, and one with a single chunk, free of allocations.
	var chunkBuf [DefaultMaxChunks]string
	var chunks []string
	if maxChunks <= len(chunkBuf) {
		chunks = chunkBuf[:maxChunks]
	} else {
		chunks = make([]string, maxChunks)
	}
	var seenBuf [1]uint64
	seen := seenBuf[:]
	if limit >= 64 {
		seen = make([]uint64, limit/64+1)
	}
	count := 0

	for _, line := range lines {
		if !strings.Contains(line, name) {
			continue
		}
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			n, v := splitPair(part)
			i := chunkIndex(n, name, limit)
			if i < 0 || seen[i/64]&(1<<(i%64)) != 0 {
				continue
			}
			seen[i/64] |= 1 << (i % 64)
			count++
			if i < maxChunks {
				chunks[i] = unquote(v)
			}
		}
	}
	if count == 0 {
		return "", nil
	}
	present = make([]int, 0, count)
	for i := 0; i <= limit; i++ {
		if seen[i/64]&(1<<(i%64)) != 0 {
			present = append(present, i)
		}
	}
	if present[0] != 0 {
		return "", present
	}
	size := 0
	n := 0
	for n < maxChunks && n < len(present) && present[n] == n {
		if len(chunks[n]) >= MaxLine {
			return "", present
		}
		size += len(chunks[n])
		n++
	}
	if n == 1 {
		return chunks[0], present
	}
	var b strings.Builder
	b.Grow(size)
	for _, c := range chunks[:n] {
		b.WriteString(c)
	}
	return b.String(), present
}

// IsSessionCookie reports whether a cookie name is Name or a chunk of it
// (Name.<digits>): such cookies are never forwarded upstream.
//
// Any run of digits counts ("Name.007" too), wider than what Read joins:
// whatever could be taken for a chunk stays away from the upstream.
func (o Options) IsSessionCookie(name string) bool {
	return isSessionCookie(name, o.name())
}

func isSessionCookie(n, name string) bool {
	if len(n) < len(name) || n[:len(name)] != name {
		return false
	}
	if len(n) == len(name) {
		return true
	}
	digits := n[len(name):]
	if len(digits) < 2 || digits[0] != '.' {
		return false
	}
	for i := 1; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	return true
}

// StripCookies removes the session cookie and its chunks from the Cookie
// header values in h, keeping every other cookie exactly as sent, and
// deletes the header when nothing is left.
//
// A line without a session cookie is left untouched, byte for byte, and
// costs no allocation. In a line that had one, the other cookies are kept
// as sent (without the spaces around them) and joined with "; ". Like
// net/http, it looks only at the canonical "Cookie" key, which is the only
// one servers produce.
func (o Options) StripCookies(h http.Header) {
	lines := h["Cookie"]
	if len(lines) == 0 {
		return
	}
	name := o.name()
	var out []string // nil until a line changes
	for i, line := range lines {
		if !hasSessionCookie(line, name) {
			if out != nil {
				out = append(out, line)
			}
			continue
		}
		if out == nil {
			out = make([]string, i, len(lines))
			copy(out, lines[:i])
		}
		if kept := stripLine(line, name); kept != "" {
			out = append(out, kept)
		}
	}
	switch {
	case out == nil:
	case len(out) == 0:
		delete(h, "Cookie")
	default:
		h["Cookie"] = out
	}
}

// hasSessionCookie reports whether a Cookie line carries the session
// cookie or one of its chunks.
func hasSessionCookie(line, name string) bool {
	if !strings.Contains(line, name) {
		return false
	}
	for len(line) > 0 {
		var part string
		part, line, _ = strings.Cut(line, ";")
		if n, _ := splitPair(part); isSessionCookie(n, name) {
			return true
		}
	}
	return false
}

// stripLine returns line without the session cookie and its chunks. It
// sizes the result first: the session's chunks are most of a long line,
// and the rest is often short.
func stripLine(line, name string) string {
	size := -len("; ")
	for rest := line; len(rest) > 0; {
		var part string
		part, rest, _ = strings.Cut(rest, ";")
		if part = keptPart(part, name); part != "" {
			size += len("; ") + len(part)
		}
	}
	if size <= 0 {
		return ""
	}
	var b strings.Builder
	b.Grow(size)
	for len(line) > 0 {
		var part string
		part, line, _ = strings.Cut(line, ";")
		if part = keptPart(part, name); part != "" {
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(part)
		}
	}
	return b.String()
}

// keptPart returns a cookie-pair as forwarded upstream: trimmed, or ""
// when it is empty or the session's.
func keptPart(part, name string) string {
	part = trimSpace(part)
	if n, _ := splitPair(part); isSessionCookie(n, name) {
		return ""
	}
	return part
}

// chunkIndex returns the chunk index that cookie name n stands for (0 for
// name itself, i for name.i as ChunkName spells it, up to limit), or -1.
func chunkIndex(n, name string, limit int) int {
	if len(n) < len(name) || n[:len(name)] != name {
		return -1
	}
	if len(n) == len(name) {
		return 0
	}
	digits := n[len(name):]
	// name.0 and leading zeros are not ChunkName's spelling; 9 digits
	// cannot overflow an int.
	if len(digits) < 2 || len(digits) > 10 || digits[0] != '.' || digits[1] == '0' {
		return -1
	}
	i := 0
	for _, c := range []byte(digits[1:]) {
		if c < '0' || c > '9' {
			return -1
		}
		i = i*10 + int(c-'0')
	}
	if i > limit {
		return -1
	}
	return i
}

// splitPair splits a cookie-pair into its name and value, trimmed as
// net/http trims them (and of other control bytes too, so that no spelling
// a lenient upstream parser might read as the session cookie survives
// StripCookies).
func splitPair(part string) (name, value string) {
	part = trimSpace(part)
	name, value, _ = strings.Cut(part, "=")
	return trimSpace(name), value
}

// unquote removes the optional double quotes around a cookie value.
func unquote(v string) string {
	if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

// trimSpace trims spaces and control bytes from both ends of s: a superset
// of net/http's trimming (space, tab, CR, LF).
func trimSpace(s string) string {
	for len(s) > 0 && (s[0] <= ' ' || s[0] == 0x7f) {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] <= ' ' || s[len(s)-1] == 0x7f) {
		s = s[:len(s)-1]
	}
	return s
}
