package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-session/caddy-session/cookie"
	"github.com/caddy-session/caddy-session/storage"
)

// serverMode keeps the session's data in a server store (memory, file,
// Redis, or a third party's), under a hash of the ID the cookie holds.
type serverMode struct {
	store  storage.Store // instrumented (metrics.go): also a storage.Confirmer
	moving bool          // previous_store is set (previous.go)
}

func (serverMode) decode(h *Handler, codec *cookie.Codec, value string, v *verifiedCookie) error {
	var c serverCookie // maxage.go
	stale, err := codec.Decode(h.opts.Name, v.audience, value, &c)
	if err != nil {
		return err
	}
	v.id, v.browser, v.lifeSet = c.ID, c.Browser, unixMilliOrZero(c.LifeSet)
	if !cookie.ValidID(v.id) {
		return errors.New("no valid session ID inside")
	}
	v.stale, v.storeKey = stale, storage.Key(v.id)
	return nil
}

func (m serverMode) open(ctx context.Context, h *Handler, s *session, v *verifiedCookie, now time.Time) {
	id := v.id
	if v.previous {
		m.moveFromCookie(ctx, h, s, v, now)
		return
	}
	if s.deferLoad {
		// An API write merges straight into the store, which says then
		// whether the session exists: one round trip instead of two.
		s.id, s.key, s.stale = id, v.storeKey, v.stale
		s.browser, s.lifeSet = v.browser, v.lifeSet
		return
	}
	rec, err := m.store.Load(ctx, v.storeKey)
	switch {
	case errors.Is(err, storage.ErrRotated):
		s.id = id // for the debug line's reference
		s.markRotated(h)
		return
	case errors.Is(err, storage.ErrNotFound) && m.moving && h.prev.store != nil:
		m.moveFromStore(ctx, h, s, v, now)
		return
	case errors.Is(err, storage.ErrNotFound):
		// Never adopt an ID the store does not hold.
		h.ops.metrics.count(evExpired)
		h.debugRef("session cookie names no stored session (expired, evicted or destroyed)", s.codec, id)
		return
	case err != nil:
		h.logger.Error("session store failed to load a session",
			zap.String("store", h.storeName), zap.String("operation", "load"), zap.Error(err))
		s.storeErr, s.failedKey = err, v.storeKey
		return
	case !rec.Live(now):
		h.ops.metrics.count(evExpired)
		h.debugRef("session cookie ignored: the session has expired", s.codec, id)
		return
	}
	s.id, s.key, s.values, s.created, s.deadline, s.stale = id, v.storeKey, rec.Values, rec.Created, rec.Deadline, v.stale
	s.browser, s.lifeSet, s.version = v.browser, v.lifeSet, rec.Version
	if d := h.deadlineCap(rec.Created, s.lifeSet); d.Before(s.deadline) {
		s.deadline = d
	}
	if !now.Before(s.deadline) {
		s.id, s.values = "", nil
		h.ops.metrics.count(evExpired)
		h.debugRef("session cookie ignored: the session has expired (max_age)", s.codec, id)
		return
	}
	if rec.New {
		// A later request presents the cookie of a new session: confirm
		// it, once (it then lives its full life and is evicted last).
		m.confirm(ctx, h, s, now)
	} else if h.IdleTimeout > 0 {
		// The record's expiry is its last use plus the idle timeout.
		s.seen = rec.Expires.Add(-time.Duration(h.IdleTimeout))
		s.touch = h.touchDue(s.seen, now)
	}
	s.issue = v.stale
	h.ops.metrics.count(evLoaded)
	h.debugSession("session loaded", s)
}

// confirm marks a new session confirmed and gives it its full expiry (a
// store that keeps no New state is touched instead, see
// instrumentedStore.Confirm). A failure is logged and the request goes
// on: the session stays new, and the next request tries again.
func (m serverMode) confirm(ctx context.Context, h *Handler, s *session, now time.Time) {
	exp := h.mergeOptions(now).Expires(s.deadline)
	c, _ := m.store.(storage.Confirmer)
	if err := c.Confirm(ctx, s.key, exp); err != nil {
		h.logger.Error("session store failed to confirm a session",
			zap.String("store", h.storeName), zap.String("operation", "confirm"), zap.Error(err))
		return
	}
	s.seen = now
	h.ops.metrics.count(evConfirmed)
	h.debugSession("session confirmed", s)
}

func (m serverMode) merge(ctx context.Context, h *Handler, s *session, patch map[string]json.RawMessage, now time.Time) error {
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
		if c := s.cond; c != nil && c.check {
			opts.CheckVersion, opts.IfVersion = true, c.version // If-Match, checked in the store
		}
		rec, err := m.store.Merge(ctx, s.key, patch, opts)
		if err == nil {
			s.values, s.seen, s.touch, s.version = rec.Values, now, false, rec.Version
			s.created, s.deadline = rec.Created, rec.Deadline
			if d := h.deadlineCap(rec.Created, s.lifeSet); d.Before(s.deadline) {
				s.deadline = d
			}
			h.ops.metrics.count(evWritten)
			h.debugSession("session written", s, zap.Int("keys", len(patch)))
			return nil
		}
		if errors.Is(err, storage.ErrRotated) {
			// Rotated by a request that ran alongside (a sign-in): this
			// one must neither write nor create, nor set a cookie.
			s.markRotated(h)
			return errRotatedAway
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		if s.cond != nil && s.cond.mustExist {
			s.id, s.key = "", ""
			return errNoSessionPrecondition
		}
		// Destroyed or rotated since it was loaded: never revive it, and
		// create nothing for an empty write.
		if len(patch) == 0 {
			s.id, s.key = "", ""
			return nil
		}
	}
	if s.rotated {
		return errRotatedAway
	}
	if s.cond != nil && s.cond.mustExist {
		return errNoSessionPrecondition
	}
	id := cookie.NewID()
	key := storage.Key(id)
	opts.Create, opts.Deadline, opts.Confirm = true, h.deadlineFor(now), false
	opts.Version = storage.NewVersion()
	rec, err := m.store.Merge(ctx, key, patch, opts)
	if err != nil {
		return err
	}
	s.id, s.key, s.refCache, s.born = id, key, "", true
	s.browser, s.lifeSet = false, time.Time{}
	s.values, s.created, s.deadline, s.seen, s.version = rec.Values, rec.Created, rec.Deadline, now, rec.Version
	s.issue, s.expire, s.touch = true, false, false
	h.ops.metrics.count(evCreated)
	h.ops.metrics.count(evWritten)
	h.debugSession("session created", s, zap.Int("keys", len(patch)))
	return nil
}

func (m serverMode) removeVersion(ctx context.Context, h *Handler, s *session, version uint64) error {
	d, _ := m.store.(storage.VersionedDeleter) // the instrumented store always is one
	err := d.DeleteVersion(ctx, s.key, version)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return errNoSessionPrecondition
	case err != nil:
		return err
	}
	if m.moving && h.prev.store != nil {
		// The session came from the store; a copy in the previous one
		// would be a leftover of a failed move.
		if perr := h.prev.store.Delete(ctx, s.key); perr != nil {
			h.logger.Error("previous_store failed to delete a destroyed session's leftover copy; it lives until its TTL",
				zap.String("store", h.prev.name), zap.Error(perr))
		}
	}
	return nil
}

// remove deletes from the previous store first (previous.go): a move
// that races it then finds the session gone there and undoes itself.
func (m serverMode) remove(ctx context.Context, h *Handler, key string) error {
	if key == "" {
		return nil
	}
	var perr error
	if m.moving && h.prev.store != nil {
		perr = h.prev.store.Delete(ctx, key)
	}
	return errors.Join(perr, m.store.Delete(ctx, key))
}

func (m serverMode) move(ctx context.Context, _ *Handler, s *session, id string) error {
	key := storage.Key(id)
	if err := m.store.Rotate(ctx, s.key, key); err != nil {
		return err
	}
	s.key = key
	return nil
}

func (m serverMode) extend(ctx context.Context, h *Handler, s *session, now time.Time) {
	exp := now.Add(time.Duration(h.IdleTimeout))
	if exp.After(s.deadline) {
		exp = s.deadline
	}
	if err := m.store.Touch(ctx, s.key, exp); err != nil {
		h.logger.Error("session store failed to extend a session",
			zap.String("store", h.storeName), zap.String("operation", "touch"), zap.Error(err))
		return
	}
	h.debugSession("session touched (idle timeout extended)", s)
}

func (serverMode) cookieValue(h *Handler, s *session) (string, error) {
	return s.codec.Encode(h.opts.Name, s.audience, serverCookieValue(s))
}

// chunks: the cookie holds only the ID, which always fits in one.
func (serverMode) chunks(*Handler) int { return 1 }

func (serverMode) maxSize(h *Handler) int { return int(h.MaxSize) }

// defersLoad: not with previous_store, where a session the store lacks
// may be in the previous one.
func (m serverMode) defersLoad() bool { return !m.moving }

// inspect reads the store itself (h.ops.raw), not through the metrics.
func (serverMode) inspect(ctx context.Context, h *Handler, v *verifiedCookie, info *sessionInfo) error {
	rec, err := h.ops.raw.Load(ctx, v.storeKey)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return apiErr(http.StatusNotFound, "the cookie verifies, but the store holds no live session for it (expired, evicted or destroyed)")
	case err != nil:
		return storeAPIErr(h, "load", err)
	}
	c, dl, exp := rec.Created.UTC(), rec.Deadline.UTC(), rec.Expires.UTC()
	info.Values, info.Created, info.Deadline, info.Expires, info.New = visible(rec.Values, time.Now()), &c, &dl, &exp, rec.New
	return nil
}

// Interface guard
var _ persistence = serverMode{}
