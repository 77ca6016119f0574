package caddymodule

import "errors"

// A request that presents a server-store session ID that a sign-in (an
// X-Session-Rotate) moved away less than storage.RotationGrace ago raced
// that sign-in: it gets no session and may create none, and its response
// sets no session cookie, so it can never replace the signed-in cookie
// with a new, empty session. API writes answer 409 (errRotatedAway); an
// upstream's session change in answer to it is dropped and logged.

// errRotatedAway is a write refused because the request's session ID was
// rotated away moments ago.
var errRotatedAway = errors.New("the session changed in another request (a sign-in or sign-out gave it a new ID): nothing was written; reload, then try again")

// markRotated makes s no session, for a request whose session ID was
// rotated away moments ago (storage.ErrRotated): nothing may be created,
// and no cookie set or expired.
func (s *session) markRotated(h *Handler) {
	h.debugRef("session cookie names an ID rotated away moments ago: a request that raced a sign-in; no session, none created, no cookie set", s.codec, s.id)
	s.id, s.key, s.values, s.headers, s.refCache = "", "", nil, nil, ""
	s.rotated = true
	s.issue, s.expire, s.touch, s.stale = false, false, false, false
	s.expireOther = nil
}
