package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-session/caddy-session/storage"
)

// The upstream's X-Session-Max-Age sets the session's own lifetime from
// now ("remember me"): its absolute deadline becomes now plus the seconds
// given, at most max_age_limit, and the cookie's Max-Age follows; the
// value "session" makes the cookie a browser-session cookie (no Max-Age,
// no Expires) and keeps the deadline.
//
// Where each store keeps what it sets:
//   - The deadline: the cookie store in its payload (inside the MAC), a
//     server store in the Record (storage.MergeOptions.SetDeadline).
//   - The browser-session flag, and when the upstream last set the
//     lifetime: in the cookie's signed, encrypted value, for every store.
//     Every re-issue of the cookie (idle refresh, rotation, a stale
//     secret) comes from a request that presented it, so they carry over;
//     and the flag concerns the cookie alone, so a server store needs no
//     new field that every store (and every database schema) would have
//     to keep.
//
// The time the lifetime was set is what lets a shorter max_age still
// shorten existing sessions: a session the upstream never gave a lifetime
// ends at most max_age after its creation, as before; one it did ends at
// most max_age_limit after that was set.

// headerMaxAge is the upstream's lifetime header, in Go's canonical form.
const headerMaxAge = "X-Session-Max-Age"

// DefaultMaxAgeLimit is the longest lifetime X-Session-Max-Age may give a
// session: 400 days, what browsers cap a cookie's Max-Age at (RFC 6265bis).
const DefaultMaxAgeLimit = 400 * 24 * time.Hour

// maxAgeSession is the X-Session-Max-Age value for a browser-session
// cookie.
const maxAgeSession = "session"

// provisionMaxAgeLimit sets h.maxAgeLimit from MaxAgeLimit, once h.opts
// holds the cookie's max_age.
func (h *Handler) provisionMaxAgeLimit() error {
	limit := time.Duration(h.MaxAgeLimit)
	switch {
	case limit == 0:
		// A max_age above 400 days (which loaded before max_age_limit
		// existed) raises the default: the limit never refuses what
		// every new session gets.
		h.maxAgeLimit = max(DefaultMaxAgeLimit, h.opts.MaxAge)
		return nil
	case limit < time.Second:
		return fmt.Errorf("max_age_limit %s: give a duration of at least 1s, such as 400d", limit)
	case limit < h.opts.MaxAge:
		return fmt.Errorf("max_age_limit %s is below the cookie's max_age %s: X-Session-Max-Age could not even give a session the default lifetime; raise max_age_limit or lower max_age", limit, h.opts.MaxAge)
	}
	h.maxAgeLimit = limit
	return nil
}

// deadlineCap is the latest deadline the current configuration allows a
// session created at created: max_age after its creation, or, when the
// upstream set its lifetime at lifeSet, max_age_limit after that; never
// past the cookie's fixed expires. Existing sessions are held to it, so
// lowering either setting shortens them too.
func (h *Handler) deadlineCap(created, lifeSet time.Time) time.Time {
	if lifeSet.IsZero() {
		return h.deadlineFor(created)
	}
	d := lifeSet.Add(h.maxAgeLimit)
	if !h.opts.Expires.IsZero() && h.opts.Expires.Before(d) {
		d = h.opts.Expires
	}
	return d
}

// maxAgeRequest is a parsed X-Session-Max-Age.
type maxAgeRequest struct {
	browser bool          // "session": a browser-session cookie
	life    time.Duration // else the lifetime from now, clamped to the limit
	clamped bool          // the upstream asked for more than the limit
}

// parseMaxAgeHeader reads the values of X-Session-Max-Age: one value, a
// positive whole number of seconds or "session" (in any case). A number
// above limit is clamped to it, not refused.
func parseMaxAgeHeader(values []string, limit time.Duration) (maxAgeRequest, error) {
	if len(values) != 1 {
		return maxAgeRequest{}, fmt.Errorf("%d values; send one: a number of seconds, or session", len(values))
	}
	v := strings.TrimSpace(values[0])
	if strings.EqualFold(v, maxAgeSession) {
		return maxAgeRequest{browser: true}, nil
	}
	if v == "" || strings.Trim(v, "0123456789") != "" {
		return maxAgeRequest{}, errors.New("not a whole number of seconds; send a positive number such as 31536000 (a year), or session")
	}
	limitSec := int64(limit / time.Second)
	sec, err := strconv.ParseInt(v, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) || (err == nil && sec > limitSec):
		return maxAgeRequest{life: time.Duration(limitSec) * time.Second, clamped: true}, nil
	case err != nil:
		return maxAgeRequest{}, err
	case sec == 0:
		return maxAgeRequest{}, errors.New("0 seconds; to end the session send X-Session-Destroy: 1, else a positive number of seconds, or session")
	}
	return maxAgeRequest{life: time.Duration(sec) * time.Second}, nil
}

// applyMaxAge applies the upstream's X-Session-Max-Age to the session (if
// any, after this response's Sets). A malformed value is logged at error
// level and ignored; the response goes out all the same.
func (h *Handler) applyMaxAge(ctx context.Context, s *session, values []string, now time.Time) {
	req, err := parseMaxAgeHeader(values, h.maxAgeLimit)
	if err != nil {
		h.logger.Error("ignored a malformed X-Session-Max-Age from the upstream", zap.Error(err))
		return
	}
	if !s.exists() {
		h.logger.Warn("ignored X-Session-Max-Age: the response has no session; send it with the X-Session-Set that creates one")
		return
	}
	if req.browser {
		// The deadline stays; only the cookie changes.
		s.browser, s.issue = true, true
		h.debugSession("session cookie made a browser-session cookie", s)
		return
	}
	if req.clamped {
		h.logger.Debug("X-Session-Max-Age above max_age_limit: clamped",
			zap.Duration("max_age_limit", h.maxAgeLimit))
	}
	deadline := now.Add(req.life)
	if !h.opts.Expires.IsZero() && h.opts.Expires.Before(deadline) {
		deadline = h.opts.Expires
	}
	if err := h.mode.setDeadline(ctx, h, s, deadline, now); err != nil {
		if isStoreFailure(err) && !errors.Is(err, errTooLarge) {
			h.logger.Error("session store failed a write: the upstream's X-Session-Max-Age was dropped",
				zap.String("store", h.storeName), zap.String("operation", "merge"), zap.Error(err))
		} else {
			h.logger.Error("ignored an X-Session-Max-Age the session refused", zap.Error(err))
		}
		return
	}
	h.debugSession("session lifetime set", s, zap.Time("deadline", s.deadline))
}

// setDeadline keeps the new deadline in the cookie's payload, which is
// re-issued with it.
func (cookieMode) setDeadline(_ context.Context, h *Handler, s *session, deadline, now time.Time) error {
	old := *s
	s.deadline, s.lifeSet, s.browser = deadline, now, false
	s.issue, s.expire = true, false
	// The payload grew a little: check it still fits its cookies.
	if _, err := h.cookieChunks(s, true, now); err != nil {
		s.deadline, s.lifeSet, s.browser, s.issue, s.expire = old.deadline, old.lifeSet, old.browser, old.issue, old.expire
		return err
	}
	return nil
}

// setDeadline moves the stored record's deadline (one Merge with no
// values), then re-issues the cookie for its Max-Age.
func (m serverMode) setDeadline(ctx context.Context, h *Handler, s *session, deadline, now time.Time) error {
	opts := h.mergeOptions(now)
	opts.Audience = s.audience
	opts.Confirm = !s.born
	opts.SetDeadline = deadline
	if h.IndexKey != "" {
		opts.Deadline = deadline
	}
	rec, err := m.store.Merge(ctx, s.key, nil, opts)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("the session is gone from the store (destroyed or rotated by another request): %w", err)
	}
	if err != nil {
		return err
	}
	s.values, s.created, s.deadline, s.seen, s.touch = rec.Values, rec.Created, rec.Deadline, now, false
	s.lifeSet, s.browser, s.version = now, false, rec.Version
	s.issue, s.expire = true, false
	return nil
}

// serverCookie is what a server store's cookie holds: the session ID as a
// JSON string, as it always was, or, once the upstream set the session's
// lifetime, an object with the ID and what the cookie must remember.
type serverCookie struct {
	ID      string `json:"i"`
	Browser bool   `json:"b,omitempty"` // a browser-session cookie
	LifeSet int64  `json:"m,omitempty"` // Unix ms of the last X-Session-Max-Age
}

// UnmarshalJSON reads either form.
func (c *serverCookie) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		*c = serverCookie{}
		return json.Unmarshal(b, &c.ID)
	}
	// Only these fields: a cookie-store cookie (same name and secrets,
	// as previous_store cookie reads) holds an object with an "i" too,
	// and must not read as a server-store ID.
	type plain serverCookie
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode((*plain)(c))
}

// serverCookieValue is what serverMode encodes into the cookie for s.
func serverCookieValue(s *session) any {
	if !s.browser && s.lifeSet.IsZero() {
		return s.id
	}
	return serverCookie{ID: s.id, Browser: s.browser, LifeSet: lifeSetMilli(s.lifeSet)}
}

// lifeSetMilli is t in Unix ms, 0 for the zero time.
func lifeSetMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// unixMilliOrZero is time.UnixMilli, with 0 for the zero time.
func unixMilliOrZero(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// checkMaxAgeLimit refuses, while the Caddyfile is read, a max_age_limit
// below the cookie's max_age, once both are known: at the second of the
// two lines.
func (h *Handler) checkMaxAgeLimit(d *caddyfile.Dispenser) error {
	if h.MaxAgeLimit == 0 || h.Cookie == nil || h.Cookie.MaxAge == 0 || h.MaxAgeLimit >= h.Cookie.MaxAge {
		return nil
	}
	return d.Errf("max_age_limit %s is below the cookie's max_age %s: X-Session-Max-Age could not even give a session the default lifetime; raise max_age_limit or lower max_age",
		time.Duration(h.MaxAgeLimit), time.Duration(h.Cookie.MaxAge))
}
