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

	present     []int    // chunk indexes the request carried
	deferLoad   bool     // server stores: leave the load to the write (API writes)
	hadValue    bool     // the request carried a session cookie at all
	born        bool     // created by this request (not confirmed by it)
	failedKey   string   // store key of the cookie's session when the load failed
	stale       bool     // verified by an older secret only: re-issue
	touch       bool     // record the use (throttled idle refresh)
	issue       bool     // send the session cookie
	expire      bool     // expire the session cookie(s)
	storeErr    error    // the store failed while loading
	expireOther []string // other cookies to expire (imported ones)
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

// cookiePayload is what the cookie store keeps inside the encrypted cookie.
// Times are Unix milliseconds; they sit inside the MAC, so a client can
// neither extend nor forge them.
type cookiePayload struct {
	ID       string                     `json:"i"`
	Values   map[string]json.RawMessage `json:"v"`
	Created  int64                      `json:"c"`
	Deadline int64                      `json:"d"`
	Seen     int64                      `json:"s"`
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
			return
		}
		h.cache.put(value, v)
	}

	if h.store == nil {
		p := &v.payload
		created := time.UnixMilli(p.Created)
		deadline := time.UnixMilli(p.Deadline)
		if d := h.deadlineFor(created); d.Before(deadline) {
			deadline = d // a shorter max_age applies to existing sessions too
		}
		seen := time.UnixMilli(p.Seen)
		if !now.Before(deadline) || (h.IdleTimeout > 0 && !now.Before(seen.Add(time.Duration(h.IdleTimeout)))) {
			h.ops.metrics.count(evExpired)
			h.debugRef("session cookie ignored: the session has expired", codec, p.ID)
			return
		}
		s.id, s.values, s.created, s.deadline, s.seen, s.stale = p.ID, p.Values, created, deadline, seen, v.stale
		s.headers = v.headers
		s.touch = h.touchDue(seen, now)
		s.issue = v.stale || s.touch
		h.ops.metrics.count(evLoaded)
		h.debugSession("session loaded", s)
		return
	}

	id := v.id
	if s.deferLoad {
		// An API write merges straight into the store, which says then
		// whether the session exists: one round trip instead of two.
		s.id, s.key, s.stale = id, v.storeKey, v.stale
		return
	}
	rec, err := h.store.Load(r.Context(), v.storeKey)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		// Never adopt an ID the store does not hold.
		h.ops.metrics.count(evExpired)
		h.debugRef("session cookie names no stored session (expired, evicted or destroyed)", codec, id)
		return
	case err != nil:
		h.logger.Error("session store failed to load a session",
			zap.String("store", h.storeName), zap.String("operation", "load"), zap.Error(err))
		s.storeErr, s.failedKey = err, v.storeKey
		return
	case !rec.Live(now):
		h.ops.metrics.count(evExpired)
		h.debugRef("session cookie ignored: the session has expired", codec, id)
		return
	}
	s.id, s.key, s.values, s.created, s.deadline, s.stale = id, v.storeKey, rec.Values, rec.Created, rec.Deadline, v.stale
	if d := h.deadlineFor(rec.Created); d.Before(s.deadline) {
		s.deadline = d
	}
	if !now.Before(s.deadline) {
		s.id, s.values = "", nil
		h.ops.metrics.count(evExpired)
		h.debugRef("session cookie ignored: the session has expired (max_age)", codec, id)
		return
	}
	if rec.New {
		// A later request presents the cookie of a new session: confirm
		// it, once (it then lives its full life and is evicted last).
		h.confirm(r.Context(), s, now)
	} else if h.IdleTimeout > 0 {
		// The record's expiry is its last use plus the idle timeout.
		s.seen = rec.Expires.Add(-time.Duration(h.IdleTimeout))
		s.touch = h.touchDue(s.seen, now)
	}
	s.issue = v.stale
	h.ops.metrics.count(evLoaded)
	h.debugSession("session loaded", s)
}

// confirm marks a new server-store session confirmed and gives it its
// full expiry (a store that keeps no New state is touched instead, see
// instrumentedStore.Confirm). A failure is logged and the request goes
// on: the session stays new, and the next request tries again.
func (h *Handler) confirm(ctx context.Context, s *session, now time.Time) {
	exp := h.mergeOptions(now).Expires(s.deadline)
	c, _ := h.store.(storage.Confirmer) // the instrumented store: always one
	if err := c.Confirm(ctx, s.key, exp); err != nil {
		h.logger.Error("session store failed to confirm a session",
			zap.String("store", h.storeName), zap.String("operation", "confirm"), zap.Error(err))
		return
	}
	s.seen = now
	h.ops.metrics.count(evConfirmed)
	h.debugSession("session confirmed", s)
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
	var err error
	if h.store == nil {
		v.stale, err = codec.Decode(h.opts.Name, audience, value, &v.payload)
		if err == nil && !cookie.ValidID(v.payload.ID) {
			err = errors.New("no valid session ID inside")
		}
		if err == nil {
			if v.payload.Values == nil {
				v.payload.Values = map[string]json.RawMessage{}
			}
			v.headers = h.forwardedHeaders(v.payload.Values, nil, func(k string, n int) {
				h.logger.Warn("session value too large to forward as a header; not forwarded",
					zap.String("key", k), zap.Int("bytes", n), zap.String("session", codec.Ref(v.payload.ID)))
			})
		}
	} else {
		v.stale, err = codec.Decode(h.opts.Name, audience, value, &v.id)
		if err == nil && !cookie.ValidID(v.id) {
			err = errors.New("no valid session ID inside")
		}
		v.storeKey = storage.Key(v.id)
	}
	if err != nil {
		h.logger.Debug("session cookie ignored: it does not verify", zap.Error(err))
		return nil
	}
	return v
}

// chunkLimit is how many cookies the session cookie may span.
func (h *Handler) chunkLimit() int {
	if h.store == nil {
		return h.maxChunks
	}
	return 1
}

// errTooLarge is a write the session cannot hold.
var errTooLarge = errors.New("session too large")

// merge applies patch to the session, creating it when there is none.
func (h *Handler) merge(ctx context.Context, s *session, patch map[string]json.RawMessage, now time.Time) error {
	codec, err := h.codecFor(ctx)
	if err != nil {
		return err
	}
	s.codec = codec
	if h.store == nil {
		values, err := storage.Apply(s.values, patch, h.limits())
		if err != nil {
			return err
		}
		created := !s.exists()
		if created {
			s.id = cookie.NewID()
			s.refCache = ""
			s.created = now
			s.deadline = h.deadlineFor(now)
			s.born = true
		}
		s.values, s.seen = values, now
		s.issue, s.expire = true, false
		// Encode now, so a session too large for its cookies is refused
		// before anything is sent.
		if _, err := h.cookieChunks(s, true, now); err != nil {
			return err
		}
		if created {
			h.ops.metrics.count(evCreated)
			h.debugSession("session created", s)
		}
		h.ops.metrics.count(evWritten)
		h.debugSession("session written", s, zap.Int("keys", len(patch)))
		return nil
	}

	opts := h.mergeOptions(now)
	opts.Audience = s.audience
	if s.exists() {
		// A session this request did not create came with its cookie: a
		// write to it confirms it (in the same store write).
		opts.Confirm = !s.born
		if h.IndexKey != "" {
			// For the store's index: how long an entry must last. Stores
			// read Deadline only when creating, by contract.
			opts.Deadline = s.deadline
		}
		rec, err := h.store.Merge(ctx, storage.Key(s.id), patch, opts)
		if err == nil {
			s.values, s.seen, s.touch = rec.Values, now, false
			s.created, s.deadline = rec.Created, rec.Deadline
			if d := h.deadlineFor(rec.Created); d.Before(s.deadline) {
				s.deadline = d
			}
			h.ops.metrics.count(evWritten)
			h.debugSession("session written", s, zap.Int("keys", len(patch)))
			return nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		// Destroyed or rotated since it was loaded: never revive it.
	}
	id := cookie.NewID()
	opts.Create, opts.Deadline, opts.Confirm = true, h.deadlineFor(now), false
	rec, err := h.store.Merge(ctx, storage.Key(id), patch, opts)
	if err != nil {
		return err
	}
	s.id, s.key, s.refCache, s.born = id, storage.Key(id), "", true
	s.values, s.created, s.deadline, s.seen = rec.Values, rec.Created, rec.Deadline, now
	s.issue, s.expire, s.touch = true, false, false
	h.ops.metrics.count(evCreated)
	h.ops.metrics.count(evWritten)
	h.debugSession("session created", s, zap.Int("keys", len(patch)))
	return nil
}

// destroy ends the session in the store and expires its cookie(s). The
// cookies are expired even when the store fails (signing out always signs
// the browser out); the error says the stored session may outlive it.
// When the load itself failed, the cookie's session is still deleted if
// the store answers now.
func (h *Handler) destroy(ctx context.Context, s *session) error {
	var err error
	if h.store != nil {
		key := s.failedKey
		if s.exists() {
			key = storage.Key(s.id)
		}
		if key != "" {
			err = h.store.Delete(ctx, key)
		}
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
	if h.store != nil {
		if err := h.store.Rotate(ctx, storage.Key(s.id), storage.Key(id)); err != nil {
			return err
		}
		s.key = storage.Key(id)
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
	if h.store == nil {
		s.issue = true
		return
	}
	exp := now.Add(time.Duration(h.IdleTimeout))
	if exp.After(s.deadline) {
		exp = s.deadline
	}
	if err := h.store.Touch(ctx, storage.Key(s.id), exp); err != nil {
		h.logger.Error("session store failed to extend a session",
			zap.String("store", h.storeName), zap.String("operation", "touch"), zap.Error(err))
		return
	}
	h.debugSession("session touched (idle timeout extended)", s)
}

// cookieChunks returns the cookies that carry the session.
func (h *Handler) cookieChunks(s *session, secure bool, now time.Time) ([]*http.Cookie, error) {
	var (
		value string
		err   error
	)
	if h.store == nil {
		value, err = s.codec.Encode(h.opts.Name, s.audience, cookiePayload{
			ID:       s.id,
			Values:   s.values,
			Created:  s.created.UnixMilli(),
			Deadline: s.deadline.UnixMilli(),
			Seen:     s.seen.UnixMilli(),
		})
	} else {
		value, err = s.codec.Encode(h.opts.Name, s.audience, s.id)
	}
	if err != nil {
		return nil, fmt.Errorf("encoding the session cookie: %w", err)
	}
	life := s.deadline.Sub(now)
	if life < time.Second {
		life = time.Second
	}
	cookies, err := h.opts.Chunks(value, life, secure, h.chunkLimit())
	if errors.Is(err, cookie.ErrTooLarge) {
		return nil, fmt.Errorf("%w: it does not fit in %d cookies (max_chunks); store less, or use a server store", errTooLarge, h.chunkLimit())
	}
	return cookies, err
}

// writeCookies adds the Set-Cookie lines the session needs to hdr: the
// session's cookies when issued (and leftover chunks expired), or every
// chunk expired.
func (h *Handler) writeCookies(hdr http.Header, s *session, secure bool, now time.Time) error {
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
			hdr.Add("Set-Cookie", c.String())
		}
		for _, i := range s.present {
			if i >= len(cookies) {
				hdr.Add("Set-Cookie", h.opts.Expire(h.opts.ChunkName(i), secure).String())
			}
		}
	case s.expire:
		expired := false
		for _, i := range s.present {
			hdr.Add("Set-Cookie", h.opts.Expire(h.opts.ChunkName(i), secure).String())
			expired = expired || i == 0
		}
		if !expired {
			hdr.Add("Set-Cookie", h.opts.Expire(h.opts.Name, secure).String())
		}
	default:
		if len(s.expireOther) == 0 {
			return nil
		}
	}
	for _, name := range s.expireOther {
		hdr.Add("Set-Cookie", h.opts.Expire(name, secure).String())
	}
	s.expireOther = nil
	s.issue, s.expire, s.stale = false, false, false
	addCacheControlPrivate(hdr)
	return nil
}
