package cookie

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// ErrTooLarge is returned by Chunks when a value does not fit in maxChunks
// cookies.
var ErrTooLarge = errors.New("cookie value too large")

// MaxLine is the bound on a Set-Cookie header value, attributes included:
// every line is strictly shorter.
const MaxLine = 4096

// MaxChunksLimit is the most chunks Chunks writes and Read joins; a larger
// maxChunks counts as this. 64 chunks are 256 KiB of cookies, far beyond
// what browsers keep (about 4 KiB a cookie) or servers accept in a request,
// so the clamp only keeps a misconfiguration from costing memory on every
// request.
const MaxChunksLimit = 64

// clampChunks maps maxChunks into 1..MaxChunksLimit.
func clampChunks(maxChunks int) int {
	return min(max(maxChunks, 1), MaxChunksLimit)
}

// epoch is the Expires of a deletion: any past date works, and this one
// reads as "deleted" to whoever looks at the header.
var epoch = time.Unix(0, 0).UTC()

// Chunks returns the cookies that carry value: one named Name when it fits,
// else Name, Name.1, … each with a Set-Cookie line (as Line writes it)
// under MaxLine bytes, at most maxChunks of them (ErrTooLarge otherwise).
// maxAge is the cookie's Max-Age (remaining session life); Expires is set
// to match (and to o.Expires when that is earlier).
//
// Max-Age is whole seconds, rounded up and at least 1. When o.Expires comes
// first, Max-Age is cut to it as well: browsers obey Max-Age over Expires.
// Secure is set when secure is true or when o requires it (see IsSecure).
// maxChunks is clamped to 1..MaxChunksLimit. value must consist of
// cookie-octets (RFC 6265), which Encode's output does; other bytes are an
// error rather than something net/http would silently drop.
func (o Options) Chunks(value string, maxAge time.Duration, secure bool, maxChunks int) ([]*http.Cookie, error) {
	maxAgeSec, expires := o.lifetime(time.Now(), maxAge)
	return o.chunks(value, maxAgeSec, expires, secure, maxChunks)
}

// SessionChunks is Chunks for a browser-session cookie: no Max-Age and no
// Expires (not even o.Expires), so the browser forgets the cookie when it
// ends its session. The server-side deadline is the caller's to enforce.
func (o Options) SessionChunks(value string, secure bool, maxChunks int) ([]*http.Cookie, error) {
	return o.chunks(value, 0, time.Time{}, secure, maxChunks)
}

// chunks is Chunks with the Max-Age (seconds; 0 for none) and Expires
// (zero for none) of every chunk.
func (o Options) chunks(value string, maxAgeSec int, expires time.Time, secure bool, maxChunks int) ([]*http.Cookie, error) {
	maxChunks = clampChunks(maxChunks)
	for i := 0; i < len(value); i++ {
		if !isCookieOctet(value[i]) {
			return nil, fmt.Errorf("byte %d of the cookie value is %#02x, which a cookie cannot carry", i, value[i])
		}
	}
	proto := o.cookie("x", "", maxAgeSec, expires, secure)
	attrs := len(o.Line(proto)) - len("x=") // everything after name=value

	// Filling each chunk to the brim gives the fewest chunks.
	n, fits := 0, 0
	for rest := len(value); ; n++ {
		if n == maxChunks {
			return nil, fmt.Errorf("%w: %d bytes need more than %d cookies, which hold %d", ErrTooLarge, len(value), maxChunks, fits)
		}
		room := o.chunkRoom(n, attrs)
		if room <= 0 {
			return nil, fmt.Errorf("%w: the cookie's attributes leave no room for a value", ErrTooLarge)
		}
		fits += room
		rest -= room
		if rest <= 0 {
			n++
			break
		}
	}

	cookies := make([]*http.Cookie, n)
	rest := value
	for i := range cookies {
		part := rest[:min(len(rest), o.chunkRoom(i, attrs))]
		rest = rest[len(part):]
		c := *proto
		c.Name = o.ChunkName(i)
		c.Value = part
		cookies[i] = &c
	}
	// The room arithmetic assumes net/http's layout of a Set-Cookie line;
	// checking the real lines keeps S3 true should that layout ever change.
	for i, c := range cookies {
		if l := len(o.Line(c)); l >= MaxLine {
			return nil, fmt.Errorf("%w: chunk %d would be a %d-byte Set-Cookie line", ErrTooLarge, i, l)
		}
	}
	return cookies, nil
}

// chunkRoom returns how many value bytes chunk i holds when its Set-Cookie
// line has attrs bytes of attributes.
func (o Options) chunkRoom(i, attrs int) int {
	nameLen := len(o.name())
	if i > 0 {
		nameLen += 1 + decimalLen(i)
	}
	return MaxLine - 1 - nameLen - len("=") - attrs
}

// decimalLen returns the number of decimal digits of i > 0.
func decimalLen(i int) int {
	n := 1
	for ; i >= 10; i /= 10 {
		n++
	}
	return n
}

// lifetime returns the Max-Age (seconds) and Expires of a cookie issued at
// now for maxAge, both cut to o.Expires when that comes first.
func (o Options) lifetime(now time.Time, maxAge time.Duration) (int, time.Time) {
	expires := now.Add(maxAge)
	if !o.Expires.IsZero() && o.Expires.Before(expires) {
		expires = o.Expires
		maxAge = o.Expires.Sub(now)
	}
	sec := (maxAge + time.Second - 1) / time.Second
	if maxAge <= 0 || sec < 1 {
		// Max-Age 0 or less would delete the cookie; a session that ends
		// within the second still gets that second.
		sec = 1
		if !expires.After(now) {
			expires = now.Add(time.Second)
		}
	}
	return int(sec), expires
}

// Expire returns a cookie that deletes the cookie called name: same Path,
// Domain, Secure, HttpOnly, SameSite and Partitioned (browsers delete a
// partitioned cookie only with a partitioned Set-Cookie), empty value,
// Max-Age<0 (sent as Max-Age=0) and an Expires in the past. Write it with
// Line, which adds Priority.
//
// Secure is set when secure is true or when o requires it (see IsSecure).
func (o Options) Expire(name string, secure bool) *http.Cookie {
	return o.cookie(name, "", -1, epoch, secure)
}

// cookie builds a cookie with o's attributes, so that setting and deleting
// share them: a browser deletes only a cookie whose Path and Domain match.
func (o Options) cookie(name, value string, maxAge int, expires time.Time, secure bool) *http.Cookie {
	return &http.Cookie{
		Name:        name,
		Value:       value,
		Path:        o.path(),
		Domain:      o.Domain,
		MaxAge:      maxAge,
		Expires:     expires,
		Secure:      secure || o.forcesSecure(),
		HttpOnly:    o.HTTPOnly,
		SameSite:    o.sameSite(),
		Partitioned: o.Partitioned,
	}
}

// isCookieOctet reports whether b may appear unquoted in a cookie value
// (RFC 6265 cookie-octet).
func isCookieOctet(b byte) bool {
	return b == 0x21 || 0x23 <= b && b <= 0x2b || 0x2d <= b && b <= 0x3a ||
		0x3c <= b && b <= 0x5b || 0x5d <= b && b <= 0x7e
}
