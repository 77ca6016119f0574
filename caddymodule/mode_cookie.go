package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-session/caddy-session/cookie"
	"github.com/caddy-session/caddy-session/storage"
)

// cookieMode keeps the session's data in the cookie itself, signed and
// encrypted, split into chunks: no server state. Its lifetimes are checked
// from the times inside the cookie's MAC.
type cookieMode struct{}

// cookiePayload is what the cookie store keeps inside the encrypted cookie.
// Times are Unix milliseconds; they sit inside the MAC, so a client can
// neither extend nor forge them.
type cookiePayload struct {
	ID       string                     `json:"i"`
	Values   map[string]json.RawMessage `json:"v"`
	Created  int64                      `json:"c"`
	Deadline int64                      `json:"d"`
	Seen     int64                      `json:"s"`
	LifeSet  int64                      `json:"m,omitempty"` // when X-Session-Max-Age last set Deadline (maxage.go)
	Browser  bool                       `json:"b,omitempty"` // a browser-session cookie
	Version  uint64                     `json:"n,omitempty"` // the session's version (version.go)
}

func (cookieMode) decode(h *Handler, codec *cookie.Codec, value string, v *verifiedCookie) error {
	stale, err := codec.Decode(h.opts.Name, v.audience, value, &v.payload)
	if err != nil {
		return err
	}
	if !cookie.ValidID(v.payload.ID) {
		return errors.New("no valid session ID inside")
	}
	v.stale, v.id = stale, v.payload.ID
	if v.payload.Values == nil {
		v.payload.Values = map[string]json.RawMessage{}
	}
	// The session's headers are the same for every request with this
	// cookie: computed once, cached with it.
	if hasInternal(v.payload.Values) {
		return nil // flash or expiring keys: the headers depend on the request (flash.go)
	}
	v.headers = h.forwardedHeaders(v.payload.Values, nil, func(k string, n int) {
		h.logger.Warn("session value too large to forward as a header; not forwarded",
			zap.String("key", k), zap.Int("bytes", n), zap.String("session", codec.Ref(v.payload.ID)))
	})
	return nil
}

func (cookieMode) open(_ context.Context, h *Handler, s *session, v *verifiedCookie, now time.Time) {
	p := &v.payload
	created := time.UnixMilli(p.Created)
	deadline := time.UnixMilli(p.Deadline)
	lifeSet := unixMilliOrZero(p.LifeSet)
	if d := h.deadlineCap(created, lifeSet); d.Before(deadline) {
		deadline = d // a shorter max_age applies to existing sessions too
	}
	seen := time.UnixMilli(p.Seen)
	if !now.Before(deadline) || (h.IdleTimeout > 0 && !now.Before(seen.Add(time.Duration(h.IdleTimeout)))) {
		h.ops.metrics.count(evExpired)
		h.debugRef("session cookie ignored: the session has expired", s.codec, p.ID)
		return
	}
	s.id, s.values, s.created, s.deadline, s.seen, s.stale = p.ID, p.Values, created, deadline, seen, v.stale
	s.headers = v.headers
	s.lifeSet, s.browser, s.version = lifeSet, p.Browser, p.Version
	s.touch = h.touchDue(seen, now)
	s.issue = v.stale || s.touch
	h.ops.metrics.count(evLoaded)
	h.debugSession("session loaded", s)
}

func (m cookieMode) merge(_ context.Context, h *Handler, s *session, patch map[string]json.RawMessage, now time.Time) error {
	if c := s.cond; c != nil {
		// If-Match against the cookie this request presents: another
		// tab's cookie may be newer (documented).
		switch {
		case c.mustExist && !s.exists():
			return errNoSessionPrecondition
		case c.check && s.version != c.version:
			return &storage.VersionError{Current: s.currentRecord()}
		}
	}
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
		s.version = storage.NewVersion()
	} else {
		s.version = storage.NextVersion(s.version, patch)
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

func (cookieMode) remove(context.Context, *Handler, string) error { return nil }

// removeVersion compares with the version of the cookie the request
// presents: there is nothing else to delete.
func (cookieMode) removeVersion(_ context.Context, _ *Handler, s *session, version uint64) error {
	if s.version != version {
		return &storage.VersionError{Current: s.currentRecord()}
	}
	return nil
}

func (cookieMode) move(context.Context, *Handler, *session, string) error { return nil }

func (cookieMode) extend(_ context.Context, _ *Handler, s *session, _ time.Time) {
	s.issue = true
}

func (cookieMode) cookieValue(h *Handler, s *session) (string, error) {
	return s.codec.Encode(h.opts.Name, s.audience, cookiePayload{
		ID:       s.id,
		Values:   s.values,
		Created:  s.created.UnixMilli(),
		Deadline: s.deadline.UnixMilli(),
		Seen:     s.seen.UnixMilli(),
		LifeSet:  lifeSetMilli(s.lifeSet),
		Browser:  s.browser,
		Version:  s.version,
	})
}

func (cookieMode) chunks(h *Handler) int { return h.maxChunks }

// maxSize: the cookie store is bounded by its chunks; Apply must not
// refuse first with a smaller number.
func (cookieMode) maxSize(*Handler) int { return 1 << 30 }

func (cookieMode) defersLoad() bool { return false }

func (cookieMode) inspect(_ context.Context, h *Handler, v *verifiedCookie, info *sessionInfo) error {
	p := v.payload
	c, dl, seen := time.UnixMilli(p.Created).UTC(), time.UnixMilli(p.Deadline).UTC(), time.UnixMilli(p.Seen).UTC()
	if dd := h.deadlineCap(c, unixMilliOrZero(p.LifeSet)); dd.Before(dl) {
		dl = dd.UTC()
	}
	exp := dl
	if h.IdleTimeout > 0 {
		if e := seen.Add(time.Duration(h.IdleTimeout)); e.Before(exp) {
			exp = e
		}
	}
	info.Values, info.Created, info.Deadline, info.Expires = visible(p.Values, time.Now()), &c, &dl, &exp
	if !time.Now().Before(exp) {
		info.Note = "the session has expired: the handler ignores this cookie"
	}
	return nil
}

// Interface guard
var _ persistence = cookieMode{}
