package caddymodule

import (
	"context"
	"encoding/json"
	"time"

	"github.com/caddy-session/caddy-session/cookie"
)

// persistence is where a handler keeps its sessions' data: in the cookie
// itself (cookieMode, the cookie store) or in a server store under the ID
// the cookie holds (serverMode). The request path (session.go) goes
// through it, so each of its functions reads one way; each mode is one
// file.
type persistence interface {
	// decode decodes a verified cookie value (minted for v.audience) into
	// v; an error means it is no session.
	decode(h *Handler, codec *cookie.Codec, value string, v *verifiedCookie) error

	// open gives s the session a verified cookie names, when it is live.
	open(ctx context.Context, h *Handler, s *session, v *verifiedCookie, now time.Time)

	// merge applies patch to the session, creating it when there is none
	// (s.exists() false); it counts and logs the write.
	merge(ctx context.Context, h *Handler, s *session, patch map[string]json.RawMessage, now time.Time) error

	// remove deletes the stored session under key ("" when nothing is
	// stored); the cookie mode stores nothing.
	remove(ctx context.Context, h *Handler, key string) error

	// move gives the session's data the new ID id (and its store key).
	move(ctx context.Context, h *Handler, s *session, id string) error

	// extend records a use that extends the idle timeout: a re-issued
	// cookie, or a store touch.
	extend(ctx context.Context, h *Handler, s *session, now time.Time)

	// removeVersion deletes the session if it is at version (DELETE with
	// If-Match): a *storage.VersionError, or errNoSessionPrecondition
	// when it is gone, leaves everything as it is.
	removeVersion(ctx context.Context, h *Handler, s *session, version uint64) error

	// setDeadline moves the session's absolute deadline to deadline, set
	// by the upstream at now (X-Session-Max-Age), and has the cookie
	// re-issued; on error the session is as it was.
	setDeadline(ctx context.Context, h *Handler, s *session, deadline, now time.Time) error

	// cookieValue encodes what the session cookie carries.
	cookieValue(h *Handler, s *session) (string, error)

	// chunks is how many cookies the session cookie may span.
	chunks(h *Handler) int

	// maxSize bounds a merged session's JSON.
	maxSize(h *Handler) int

	// inspect fills info (the admin API's view) with the session a
	// verified cookie names; a 404 caddy.APIError when there is none.
	inspect(ctx context.Context, h *Handler, v *verifiedCookie, info *sessionInfo) error

	// defersLoad tells whether an API write may leave the load to the
	// store's merge (one round trip instead of two).
	defersLoad() bool
}
