package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-session/caddy-session/cookie"
	"github.com/caddy-session/caddy-session/storage"
)

// session is one request's view of its session, and what the response
// must do to the cookie.
type session struct {
	id       string                     // "" when there is no session
	key      string                     // store key of id (server stores)
	audience string                     // the site the session belongs to (audience.go)
	values   map[string]json.RawMessage // never modified in place
	headers  []headerPair               // forwarded headers; nil: compute from values
	pairBuf  [8]headerPair              // room for a small session's headers
	valueBuf [8]string                  // room for their []string values
	created  time.Time
	deadline time.Time
	seen     time.Time // last recorded use (idle timeout)
	lifeSet  time.Time // when X-Session-Max-Age set deadline; zero: never (maxage.go)
	browser  bool      // a browser-session cookie: no Max-Age, no Expires

	present     []int                      // chunk indexes the request carried
	deferLoad   bool                       // server stores: leave the load to the write (API writes)
	hadValue    bool                       // the request carried a session cookie at all
	born        bool                       // created by this request (not confirmed by it)
	rotated     bool                       // the cookie's ID was rotated away moments ago (rotated.go)
	version     uint64                     // the session's Record.Version (version.go)
	cond        *condition                 // the API write's If-Match / If-None-Match (version.go)
	flash       map[string]json.RawMessage // flash keys this request took, to forward (flash.go)
	failedKey   string                     // store key of the cookie's session when the load failed
	stale       bool                       // verified by an older secret only: re-issue
	touch       bool                       // record the use (throttled idle refresh)
	issue       bool                       // send the session cookie
	expire      bool                       // expire the session cookie(s)
	storeErr    error                      // the store failed while loading
	expireOther []string                   // other cookies to expire (imported ones)
	refCache    string
	codec       *cookie.Codec
}

// cookieChange reports whether the response must set or expire a cookie,
// so the common response (nothing to change) skips that work.
func (s *session) cookieChange() bool {
	return s.issue || s.expire || (s.stale && s.exists()) || len(s.expireOther) > 0
}

// exists reports whether the request has a live session.
func (s *session) exists() bool { return s.id != "" }

// ref returns the session's opaque reference: a keyed hash of its ID.
func (s *session) ref(h *Handler) string {
	if s.id == "" || s.codec == nil {
		return ""
	}
	if s.refCache == "" {
		s.refCache = s.codec.Ref(s.id)
	}
	return s.refCache
}

// codecFor returns the codec, creating the generated secret on first use.
func (h *Handler) codecFor(ctx context.Context) (*cookie.Codec, error) {
	if c := h.secrets.codec.Load(); c != nil {
		return c, nil
	}
	c, err := h.secrets.ensure(ctx)
	if err != nil {
		return nil, err
	}
	h.secrets.codec.CompareAndSwap(nil, c)
	return h.secrets.codec.Load(), nil
}

// deadlineFor is the absolute end of a session created at created.
func (h *Handler) deadlineFor(created time.Time) time.Time {
	d := created.Add(h.opts.MaxAge)
	if !h.opts.Expires.IsZero() && h.opts.Expires.Before(d) {
		d = h.opts.Expires
	}
	return d
}

// touchDue reports whether a use at now should be recorded: with an idle
// timeout, once a quarter of it has passed since the last record, so a
// session used at least every half timeout never idles out, and a busy one
// is not rewritten on every request.
func (h *Handler) touchDue(seen, now time.Time) bool {
	idle := time.Duration(h.IdleTimeout)
	return idle > 0 && now.Sub(seen) >= idle/4
}

// load reads the request's session: the cookie, then the store.
func (h *Handler) load(r *http.Request, now time.Time, s *session) {
	s.audience = h.audienceFor(r)
	value, present := h.opts.Read(r.Header, h.chunkLimit())
	s.present = present
	if value == "" {
		return
	}
	s.hadValue = true
	codec, err := h.codecFor(r.Context())
	if err != nil {
		h.logger.Error("session secret unavailable", zap.Error(err))
		s.storeErr = err
		return
	}
	s.codec = codec

	v := h.cache.get(value)
	if v == nil || v.audience != s.audience {
		if v = h.verify(codec, value, s.audience); v == nil {
			if h.prev == nil || h.prev.store != nil {
				return
			}
			if value, v = h.verifyPrevious(r, codec, s); v == nil {
				return
			}
		}
		h.cache.put(value, v)
	}

	h.mode.open(r.Context(), h, s, v, now)
}

// mergeOptions are the options of a write at now; merge adds what depends
// on the session.
func (h *Handler) mergeOptions(now time.Time) storage.MergeOptions {
	return storage.MergeOptions{
		Now:         now,
		IdleTimeout: time.Duration(h.IdleTimeout),
		Limits:      h.limits(),
		NewTTL:      h.newTTL,
	}
}

// verify decodes a cookie value minted for audience, or returns nil
// (logged at debug) when it does not verify.
func (h *Handler) verify(codec *cookie.Codec, value, audience string) *verifiedCookie {
	v := &verifiedCookie{audience: audience}
	if err := h.mode.decode(h, codec, value, v); err != nil {
		h.logger.Debug("session cookie ignored: it does not verify", zap.Error(err))
		return nil
	}
	return v
}

// chunkLimit is how many cookies the session cookie may span.
func (h *Handler) chunkLimit() int { return h.mode.chunks(h) }

// errTooLarge is a write the session cannot hold.
var errTooLarge = errors.New("session too large")

// merge applies patch to the session, creating it when there is none.
func (h *Handler) merge(ctx context.Context, s *session, patch map[string]json.RawMessage, now time.Time) error {
	codec, err := h.codecFor(ctx)
	if err != nil {
		return err
	}
	s.codec = codec
	return h.mode.merge(ctx, h, s, withInternal(s, patch, now), now)
}

// destroy ends the session in the store and expires its cookie(s). The
// cookies are expired even when the store fails (signing out always signs
// the browser out); the error says the stored session may outlive it.
// When the load itself failed, the cookie's session is still deleted if
// the store answers now.
func (h *Handler) destroy(ctx context.Context, s *session) error {
	key := s.failedKey
	if s.exists() {
		key = s.key
	}
	var err error
	if c := s.cond; c != nil && c.check && s.exists() {
		// DELETE with If-Match: only that version, checked in the store;
		// a refusal leaves everything as it is.
		if err = h.mode.removeVersion(ctx, h, s, c.version); isPrecondition(err) {
			return err
		}
	} else {
		err = h.mode.remove(ctx, h, key)
	}
	if err != nil {
		h.logger.Error("session store failed to destroy a session: its cookie is expired, but the stored session may live until its TTL",
			zap.String("store", h.storeName), zap.String("operation", "delete"), zap.Error(err))
	} else if s.exists() || s.failedKey != "" {
		h.ops.metrics.count(evDestroyed)
		h.debugSession("session destroyed", s)
	}
	s.id, s.key, s.values, s.refCache, s.failedKey = "", "", nil, "", ""
	s.issue, s.touch, s.stale = false, false, false
	s.browser, s.lifeSet = false, time.Time{}
	s.expire = s.hadValue || len(s.present) > 0
	return err
}

// rotate gives the session a new ID, keeping its data; the old ID is
// invalid once it returns.
func (h *Handler) rotate(ctx context.Context, s *session, now time.Time) error {
	if !s.exists() {
		return nil
	}
	id := cookie.NewID()
	if err := h.mode.move(ctx, h, s, id); err != nil {
		return err
	}
	var old string
	if h.logger.Core().Enabled(zap.DebugLevel) {
		old = s.ref(h)
	}
	s.id, s.refCache = id, ""
	s.issue, s.expire = true, false
	h.ops.metrics.count(evRotated)
	h.debugSession("session rotated", s, zap.String("from", old))
	return nil
}

// recordUse extends the idle deadline when due: for server stores a Touch
// (never a rewrite), for the cookie store a re-issued cookie.
func (h *Handler) recordUse(ctx context.Context, s *session, now time.Time) {
	if !s.touch || !s.exists() {
		return
	}
	s.touch = false
	s.seen = now
	h.mode.extend(ctx, h, s, now)
}

// cookieChunks returns the cookies that carry the session.
func (h *Handler) cookieChunks(s *session, secure bool, now time.Time) ([]*http.Cookie, error) {
	value, err := h.mode.cookieValue(h, s)
	if err != nil {
		return nil, fmt.Errorf("encoding the session cookie: %w", err)
	}
	var cookies []*http.Cookie
	if s.browser {
		cookies, err = h.opts.SessionChunks(value, secure, h.chunkLimit())
	} else {
		life := max(s.deadline.Sub(now), time.Second)
		cookies, err = h.opts.Chunks(value, life, secure, h.chunkLimit())
	}
	if errors.Is(err, cookie.ErrTooLarge) {
		return nil, fmt.Errorf("%w: it does not fit in %d cookies (max_chunks); store less, or use a server store", errTooLarge, h.chunkLimit())
	}
	return cookies, err
}

// writeCookies adds the Set-Cookie lines the session needs to hdr: the
// session's cookies when issued (and leftover chunks expired), or every
// chunk expired.
func (h *Handler) writeCookies(hdr http.Header, s *session, secure bool, now time.Time) error {
	if s.rotated {
		return nil // never touch the cookie a racing sign-in set (rotated.go)
	}
	if s.stale && s.exists() {
		s.issue = true
	}
	switch {
	case s.issue && s.exists():
		cookies, err := h.cookieChunks(s, secure, now)
		if err != nil {
			return err
		}
		if h.ops.metrics != nil {
			size := 0
			for _, c := range cookies {
				size += len(c.Value)
			}
			h.ops.metrics.cookie(size, len(cookies))
		}
		for _, c := range cookies {
			hdr.Add("Set-Cookie", h.opts.Line(c))
		}
		for _, i := range s.present {
			if i >= len(cookies) {
				hdr.Add("Set-Cookie", h.opts.Line(h.opts.Expire(h.opts.ChunkName(i), secure)))
			}
		}
	case s.expire:
		expired := false
		for _, i := range s.present {
			hdr.Add("Set-Cookie", h.opts.Line(h.opts.Expire(h.opts.ChunkName(i), secure)))
			expired = expired || i == 0
		}
		if !expired {
			hdr.Add("Set-Cookie", h.opts.Line(h.opts.Expire(h.opts.Name, secure)))
		}
	default:
		if len(s.expireOther) == 0 {
			return nil
		}
	}
	for _, name := range s.expireOther {
		hdr.Add("Set-Cookie", h.opts.Line(h.opts.Expire(name, secure)))
	}
	s.expireOther = nil
	s.issue, s.expire, s.stale = false, false, false
	addCacheControlPrivate(hdr)
	return nil
}
