package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-session/caddy-session/cookie"
	"github.com/caddy-session/caddy-session/storage"
)

// previousStore is where a handler with previous_store looks for a
// session that its store does not hold: another server store, or the
// cookie store (a cookie-store cookie under the same name and secrets).
// A session found there is moved into the store, once (see moveFromStore
// and moveFromCookie), and is then the store's like any other.
type previousStore struct {
	name      string        // the module name, for logs
	store     storage.Store // a server store, or nil for the cookie store
	maxChunks int           // the cookie store's max_chunks
}

// moveWait bounds how long a request that lost the race to move a session
// waits for the winner to have written it into the store.
const (
	moveWaitStep  = 5 * time.Millisecond
	moveWaitTries = 40
)

// provisionPrevious loads the previous_store module.
func (h *Handler) provisionPrevious(ctx caddy.Context) error {
	if h.PreviousStoreRaw == nil {
		return nil
	}
	if h.ops.raw == nil {
		return fmt.Errorf("previous_store moves sessions into a server store, and this handler's store is %s: "+
			"set store to memory, file, redis or postgres, or remove previous_store", h.storeName)
	}
	mod, err := ctx.LoadModule(h, "PreviousStoreRaw")
	if err != nil {
		return fmt.Errorf("loading previous_store: %v", err)
	}
	p := &previousStore{name: string(mod.(caddy.Module).CaddyModule().ID.Name())}
	switch s := mod.(type) {
	case *CookieStore:
		p.maxChunks = s.MaxChunks
	case storage.Store:
		a, aok := h.ops.raw.(StoreIdentifier)
		b, bok := s.(StoreIdentifier)
		if aok && bok && a.StoreIdentity() == b.StoreIdentity() {
			return fmt.Errorf("previous_store is the same %s store as store: there is nothing to move; remove previous_store", p.name)
		}
		p.store = s
	default:
		return fmt.Errorf("previous_store %s does not implement storage.Store; see the README's \"Writing a store\"", p.name)
	}
	h.prev = p
	return nil
}

// verifyPrevious reads the request's session cookie as a cookie-store
// session (previous_store cookie), after it failed to verify as the
// store's: the cookie store may have spread it over more chunks.
func (h *Handler) verifyPrevious(r *http.Request, codec *cookie.Codec, s *session) (string, *verifiedCookie) {
	value, present := h.opts.Read(r.Header, h.prev.maxChunks)
	if value == "" {
		return "", nil
	}
	if v := h.cache.get(value); v != nil && v.audience == s.audience && v.previous {
		s.present = present
		return value, v
	}
	v := &verifiedCookie{audience: s.audience, previous: true}
	if err := (cookieMode{}).decode(h, codec, value, v); err != nil {
		return "", nil
	}
	v.id, v.storeKey = v.payload.ID, storage.Key(v.payload.ID)
	v.browser, v.lifeSet = v.payload.Browser, unixMilliOrZero(v.payload.LifeSet)
	s.present = present
	return value, v
}

// moveFromStore gives s the session a verified cookie names when the
// previous server store holds it: it is written into the store with its
// remaining lifetime, under the same key, and deleted from the previous
// store. Of concurrent requests, exactly one writes it (an exclusive
// Merge); the others read what that one wrote. A destroy that races the
// move wins: remove deletes from the previous store before the store, and
// the mover checks that the previous store still held the session after
// writing it, so a destroyed session is never left behind in the store.
func (m serverMode) moveFromStore(ctx context.Context, h *Handler, s *session, v *verifiedCookie, now time.Time) {
	prev := h.prev.store
	rec, err := prev.Load(ctx, v.storeKey)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		// Another request may have moved it since this one looked in
		// the store: a mover writes the store before it deletes here.
		m.openMoved(ctx, h, s, v, now, 1)
		return
	case err != nil:
		h.logger.Error("previous_store failed to load a session",
			zap.String("store", h.prev.name), zap.String("operation", "load"), zap.Error(err))
		s.storeErr, s.failedKey = err, v.storeKey
		return
	case !rec.Live(now):
		h.ops.metrics.count(evExpired)
		h.debugRef("session cookie ignored: the session has expired (previous_store)", s.codec, v.id)
		return
	}
	moved, err := m.moveIn(ctx, h, v.storeKey, rec, now)
	switch {
	case errors.Is(err, storage.ErrExists):
		// Another request moved it first: the store holds it now.
		m.openMoved(ctx, h, s, v, now, 1)
		return
	case err != nil:
		m.moveFailed(h, s, v, err)
		return
	}
	// The previous store must still hold the session: if a destroy took
	// it since it was read, what was just written must go too.
	if _, err := prev.Load(ctx, v.storeKey); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			err = nil
			h.debugRef("session destroyed while it was being moved from previous_store", s.codec, v.id)
		}
		if derr := m.store.Delete(ctx, v.storeKey); derr != nil {
			err = errors.Join(err, derr)
		}
		if err != nil {
			h.logger.Error("could not check a session moved from previous_store against a concurrent destroy; it was removed from the store",
				zap.String("store", h.prev.name), zap.Error(err))
		}
		return
	}
	if err := prev.Delete(ctx, v.storeKey); err != nil {
		// The copy left behind is no longer reachable through this
		// handler (the store holds the session now); it ends at its TTL.
		h.logger.Error("previous_store failed to delete a moved session; the stale copy lives until its TTL",
			zap.String("store", h.prev.name), zap.String("operation", "delete"), zap.Error(err))
	}
	m.opened(h, s, v, moved, now)
	h.ops.metrics.count(evMoved)
	h.debugSession("session moved from previous_store", s, zap.String("from", h.prev.name))
}

// moveFromCookie gives s the session a cookie-store cookie holds
// (previous_store cookie): it is written into the store under the ID
// inside the cookie, with its remaining lifetime, and the response
// replaces the cookie-store cookie (all its chunks) with the store's.
//
// A cookie cannot be deleted from the browser that keeps a copy, so the
// move leaves a marker in the store, created exclusively and kept until
// the cookie's own deadline: the request that creates it writes the
// session, the others read it; and once the session is destroyed, the
// marker keeps the old cookie from bringing it back.
func (m serverMode) moveFromCookie(ctx context.Context, h *Handler, s *session, v *verifiedCookie, now time.Time) {
	p := &v.payload
	created, deadline := time.UnixMilli(p.Created), time.UnixMilli(p.Deadline)
	if d := h.deadlineCap(created, v.lifeSet); d.Before(deadline) {
		deadline = d
	}
	seen := time.UnixMilli(p.Seen)
	if !now.Before(deadline) || (h.IdleTimeout > 0 && !now.Before(seen.Add(time.Duration(h.IdleTimeout)))) {
		h.ops.metrics.count(evExpired)
		h.debugRef("session cookie ignored: the cookie-store session has expired (previous_store cookie)", s.codec, v.id)
		return
	}
	marker := movedMarkerKey(v.id)
	_, err := m.store.Merge(ctx, marker, nil, storage.MergeOptions{
		Create: true, Exclusive: true, Now: now, Deadline: deadline, Audience: s.audience,
	})
	switch {
	case errors.Is(err, storage.ErrExists):
		// Moved already (or being moved right now), maybe destroyed since.
		m.openMoved(ctx, h, s, v, now, moveWaitTries)
		return
	case err != nil:
		m.moveFailed(h, s, v, err)
		return
	}
	rec := &storage.Record{Values: p.Values, Created: created, Deadline: deadline, Audience: s.audience, Version: p.Version}
	moved, err := m.moveIn(ctx, h, v.storeKey, rec, now)
	if err != nil {
		if !errors.Is(err, storage.ErrExists) {
			// Let a later request try again.
			_ = m.store.Delete(ctx, marker)
		}
		m.moveFailed(h, s, v, err)
		return
	}
	m.opened(h, s, v, moved, now)
	s.issue = true // the store's cookie replaces the cookie store's
	h.ops.metrics.count(evMoved)
	h.debugSession("session moved from previous_store", s, zap.String("from", h.prev.name))
}

// movedMarkerKey is the store key of the marker a move from the cookie
// store leaves: a hash of the session's ID, apart from its own key.
func movedMarkerKey(id string) string {
	return storage.Key("previous_store cookie moved\x00" + id)
}

// moveIn writes rec into the store under key: exclusively, confirmed (the
// request presents its cookie), with its deadline.
func (m serverMode) moveIn(ctx context.Context, h *Handler, key string, rec *storage.Record, now time.Time) (*storage.Record, error) {
	opts := h.mergeOptions(now)
	opts.Create, opts.Exclusive, opts.NewTTL = true, true, 0
	opts.Deadline, opts.Audience = rec.Deadline, rec.Audience
	opts.Version = rec.Version // a move is no change: the ETag stays
	// What the previous store held fit its limits; a smaller max_size or
	// max_keys here must not drop the session on the floor.
	opts.Limits = storage.Limits{MaxKeys: len(rec.Values) + h.MaxKeys, MaxSize: 1 << 30}
	return m.store.Merge(ctx, key, rec.Values, opts)
}

// openMoved reads the session that another request moved into the store,
// waiting up to tries steps for it to appear.
func (m serverMode) openMoved(ctx context.Context, h *Handler, s *session, v *verifiedCookie, now time.Time, tries int) {
	for i := 0; ; i++ {
		rec, err := m.store.Load(ctx, v.storeKey)
		switch {
		case err == nil && rec.Live(now):
			m.opened(h, s, v, rec, now)
			s.issue = s.issue || v.previous
			h.ops.metrics.count(evLoaded)
			h.debugSession("session loaded (moved from previous_store by another request)", s)
			return
		case err != nil && !errors.Is(err, storage.ErrNotFound):
			m.moveFailed(h, s, v, err)
			return
		case i+1 >= tries:
			h.ops.metrics.count(evExpired)
			h.debugRef("session cookie names a session moved from previous_store and ended since", s.codec, v.id)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(moveWaitStep):
		}
	}
}

// opened gives s a session read or written by a move.
func (serverMode) opened(h *Handler, s *session, v *verifiedCookie, rec *storage.Record, now time.Time) {
	s.id, s.key, s.values, s.created, s.deadline, s.stale = v.id, v.storeKey, rec.Values, rec.Created, rec.Deadline, v.stale
	s.version = rec.Version
	s.browser, s.lifeSet = v.browser, v.lifeSet // maxage.go: they travel in the cookie
	if d := h.deadlineCap(rec.Created, s.lifeSet); d.Before(s.deadline) {
		s.deadline = d
	}
	s.seen = now
	s.issue = v.stale
}

// moveFailed applies on_store_error to a move the store refused or could
// not take.
func (serverMode) moveFailed(h *Handler, s *session, v *verifiedCookie, err error) {
	h.logger.Error("could not move a session from previous_store into the store",
		zap.String("store", h.storeName), zap.String("previous_store", h.prev.name), zap.Error(err))
	if !errors.Is(err, storage.ErrUnavailable) {
		err = fmt.Errorf("%w: %v", storage.ErrUnavailable, err)
	}
	s.storeErr, s.failedKey = err, v.storeKey
}
