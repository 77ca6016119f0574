package caddymodule

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// The upstream's control headers, in Go's canonical form.
const (
	headerSet     = "X-Session-Set"
	headerDestroy = "X-Session-Destroy"
	headerRotate  = "X-Session-Rotate"
)

// responseWriter applies the upstream's session changes at the moment the
// response's headers go out: reverse_proxy copies the upstream's headers
// into the header map, then calls WriteHeader.
type responseWriter struct {
	caddyhttp.ResponseWriterWrapper
	h       *Handler
	r       *http.Request
	s       session
	now     time.Time
	written bool
}

// WriteHeader applies the session changes before a final status goes out.
// Informational responses (103 Early Hints) pass with their reserved
// headers removed.
func (rw *responseWriter) WriteHeader(status int) {
	if rw.written {
		rw.ResponseWriterWrapper.WriteHeader(status)
		return
	}
	if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
		rw.h.scrubResponse(rw.Header())
		rw.ResponseWriterWrapper.WriteHeader(status)
		return
	}
	rw.finish()
	rw.ResponseWriterWrapper.WriteHeader(status)
}

// finish applies the session changes to the header map, once.
func (rw *responseWriter) finish() {
	if rw.written {
		return
	}
	rw.written = true
	rw.h.writeBack(rw.r, &rw.s, rw.Header(), rw.now)
}

// Write sends the headers first when WriteHeader was not called.
func (rw *responseWriter) Write(p []byte) (int, error) {
	if !rw.written {
		rw.WriteHeader(http.StatusOK)
	}
	return rw.ResponseWriterWrapper.Write(p)
}

// ReadFrom sends the headers first; the wrapped ReadFrom would bypass
// WriteHeader.
func (rw *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	if !rw.written {
		rw.WriteHeader(http.StatusOK)
	}
	return rw.ResponseWriterWrapper.ReadFrom(r)
}

// FlushError sends the headers first; http.ResponseController would
// otherwise flush the wrapped writer and send them without the session.
func (rw *responseWriter) FlushError() error {
	if !rw.written {
		rw.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(rw.ResponseWriterWrapper.ResponseWriter).Flush()
}

// scrubResponse removes what the client must never see: every reserved
// header, and any Set-Cookie for the session cookie that did not come from
// the module.
func (h *Handler) scrubResponse(hdr http.Header) {
	scrubTrailers(hdr)
	h.dropSessionSetCookies(hdr)
}

// dropSessionSetCookies removes Set-Cookie lines that name the session
// cookie or a chunk of it: only the module sets those.
func (h *Handler) dropSessionSetCookies(hdr http.Header) {
	lines, ok := hdr["Set-Cookie"]
	if !ok {
		return
	}
	kept := lines[:0:0]
	for _, line := range lines {
		name := setCookieName(line)
		if h.opts.IsSessionCookie(name) {
			h.logger.Warn("dropped an upstream Set-Cookie for the session cookie; only the session handler sets it",
				zap.String("cookie", name))
			continue
		}
		kept = append(kept, line)
	}
	if len(kept) == 0 {
		delete(hdr, "Set-Cookie")
	} else {
		hdr["Set-Cookie"] = kept
	}
}

// setCookieName returns the name a browser gives the cookie of a
// Set-Cookie line. A nameless cookie ("=__session=x", or "__session" with
// no '=') is sent back as its bare value, "__session=x", which reads as
// the session cookie: its name is taken from the value.
func setCookieName(line string) string {
	pair, _, _ := strings.Cut(line, ";")
	name, value, ok := strings.Cut(pair, "=")
	if name = strings.TrimSpace(name); name == "" && ok {
		name, _, _ = strings.Cut(value, "=")
		name = strings.TrimSpace(name)
	}
	return name
}

// scrubTrailers removes reserved names from a response's trailers: from
// the Trailer announcement, and the values net/http sends when the handler
// returns (announced ones, and any set under http.TrailerPrefix after the
// body, as reverse_proxy does with an upstream's trailers).
func scrubTrailers(hdr http.Header) {
	scrubTrailerAnnouncement(hdr)
	for name := range hdr {
		if IsReservedHeader(name) || isReservedTrailer(name) {
			delete(hdr, name)
		}
	}
}

// scrubTrailerAnnouncement removes reserved names from the Trailer header.
func scrubTrailerAnnouncement(hdr http.Header) {
	if v, ok := hdr["Trailer"]; ok {
		if kept := filterTokens(v, IsReservedHeader); len(kept) > 0 {
			hdr["Trailer"] = kept
		} else {
			delete(hdr, "Trailer")
		}
	}
}

// isReservedTrailer reports whether name sets a reserved trailer through
// http.TrailerPrefix.
func isReservedTrailer(name string) bool {
	return len(name) > len(http.TrailerPrefix) && strings.HasPrefix(name, http.TrailerPrefix) &&
		IsReservedHeader(name[len(http.TrailerPrefix):])
}

// controls are the upstream's requested session changes.
type controls struct {
	destroy, rotate bool
	sets            []string
	flash           []string // X-Session-Flash values (flash.go)
	expire          []string // X-Session-Expire values (flash.go)
	maxAge          []string // X-Session-Max-Age's values (maxage.go)
}

// any reports whether the upstream asked for any session change.
func (c *controls) any() bool {
	return c.destroy || c.rotate || len(c.sets) > 0 || len(c.maxAge) > 0 || len(c.flash) > 0 || len(c.expire) > 0
}

// takeControls reads the upstream's control headers and removes every
// reserved header from the response, and every reserved trailer set
// through http.TrailerPrefix: with scrubTrailerAnnouncement, what
// scrubTrailers does, in the same pass over the header map.
func (h *Handler) takeControls(hdr http.Header) (c controls) {
	for name, values := range hdr {
		if !IsReservedHeader(name) {
			if isReservedTrailer(name) {
				delete(hdr, name)
			}
			continue
		}
		switch http.CanonicalHeaderKey(name) {
		case headerSet:
			c.sets = append(c.sets, values...)
		case headerDestroy:
			c.destroy = h.flag(headerDestroy, values)
		case headerRotate:
			c.rotate = h.flag(headerRotate, values)
		case headerMaxAge:
			c.maxAge = append(c.maxAge, values...)
		case headerFlash:
			c.flash = append(c.flash, values...)
		case headerExpire:
			c.expire = append(c.expire, values...)
		}
		delete(hdr, name)
	}
	return c
}

// flag reads a control header that accepts "1" or "true".
func (h *Handler) flag(name string, values []string) bool {
	for _, v := range values {
		switch strings.TrimSpace(v) {
		case "1", "true":
		default:
			h.logger.Error("ignored a malformed upstream session header; send 1 or true",
				zap.String("header", name))
			return false
		}
	}
	return len(values) > 0
}

// writeBack applies the upstream's session changes (Destroy, then each Set
// in order, then Max-Age, then Rotate), records the session's use, sets the session
// cookie as needed and marks the response as varying by cookie.
func (h *Handler) writeBack(r *http.Request, s *session, hdr http.Header, now time.Time) {
	c := h.takeControls(hdr)
	scrubTrailerAnnouncement(hdr)
	h.dropSessionSetCookies(hdr)

	if s.rotated {
		// The request raced a sign-in: nothing of it may touch the
		// session or the cookie (rotated.go).
		if c.any() {
			h.logger.Warn("dropped the upstream's session change: it answers a request whose session ID a sign-in rotated away moments ago (the request raced the sign-in)")
		}
		if h.vary {
			addVary(hdr)
		}
		return
	}
	if s.storeErr != nil {
		if c.destroy {
			// Signing out always signs the browser out: the cookie is
			// expired whatever the store says (destroy logs a failure).
			_ = h.destroy(context.WithoutCancel(r.Context()), s)
		}
		if c.rotate || len(c.sets) > 0 || len(c.maxAge) > 0 || len(c.flash) > 0 || len(c.expire) > 0 {
			h.logger.Error("session store unavailable: the upstream's session change was dropped",
				zap.String("store", h.storeName))
		}
	} else if c.any() || s.touch {
		ctx := context.WithoutCancel(r.Context()) // the client leaving must not half-apply a change
		h.applyControls(ctx, s, c, now)
		h.recordUse(ctx, s, now)
	}
	// The client's cookie is left as it is on a store error, except when
	// the upstream signed it out.
	if (s.storeErr == nil || s.expire) && s.cookieChange() {
		if err := h.writeCookies(hdr, s, h.isSecure(r), now); err != nil {
			h.logger.Error("setting the session cookie", zap.Error(err))
		}
	}
	// Every response varies by cookie, not only those to requests with a
	// session: a shared cache must not store an anonymous page and serve
	// it to a visitor who has a session.
	if h.vary {
		addVary(hdr)
	}
}

// applyControls runs the upstream's changes in the order the README
// promises: Destroy, then each Set in order, then Flash, Expire, Max-Age,
// then Rotate.
func (h *Handler) applyControls(ctx context.Context, s *session, c controls, now time.Time) {
	if c.destroy {
		if err := h.destroy(ctx, s); err != nil {
			// Logged by destroy; the cookie is expired all the same. The
			// rest is dropped: a Set after a failed Destroy must not
			// write into a store that may still hold the old session.
			return
		}
	}
	for _, set := range c.sets {
		patch, err := ParsePatch([]byte(set))
		if err != nil {
			h.logger.Error("ignored a malformed X-Session-Set from the upstream", zap.Error(err))
			continue
		}
		if err := h.merge(ctx, s, patch, now); err != nil {
			if errors.Is(err, errRotatedAway) {
				h.logger.Warn("dropped the upstream's X-Session-Set: a sign-in rotated the session's ID while this request ran")
				return // no session now, and none may be created
			}
			if isStoreFailure(err) && !errors.Is(err, errTooLarge) {
				h.logger.Error("session store failed a write: the upstream's X-Session-Set was dropped",
					zap.String("store", h.storeName), zap.String("operation", "merge"), zap.Error(err))
			} else {
				h.logger.Error("ignored an X-Session-Set the session refused", zap.Error(err))
			}
			continue
		}
	}
	for _, f := range c.flash {
		patch, err := flashPatch(f)
		if err == nil {
			err = h.merge(ctx, s, patch, now)
		}
		if errors.Is(err, errRotatedAway) {
			return
		}
		if err != nil {
			h.logger.Error("ignored an X-Session-Flash", zap.Error(err))
		}
	}
	if len(c.expire) > 0 && s.exists() {
		patch, err := expirePatch(c.expire, s, now)
		if err == nil && len(patch) > 0 {
			err = h.merge(ctx, s, patch, now)
		}
		if errors.Is(err, errRotatedAway) {
			return
		}
		if err != nil {
			h.logger.Error("ignored an X-Session-Expire", zap.Error(err))
		}
	}
	if len(c.maxAge) > 0 {
		h.applyMaxAge(ctx, s, c.maxAge, now)
	}
	if c.rotate {
		if err := h.rotate(ctx, s, now); err != nil {
			h.logger.Error("session store failed to rotate a session",
				zap.String("store", h.storeName), zap.String("operation", "rotate"), zap.Error(err))
		}
	}
}
