package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-session/caddy-session/storage"
)

// MigrateHydrogenV1 is the migrate_from value that imports Hydrogen 1.0
// cookie-store sessions.
const MigrateHydrogenV1 = "hydrogen_v1"

// hydrogenPatch reads a Hydrogen 1.0 CookieSessionStorage cookie from the
// request: the session as plain JSON, percent-encoded
// (encodeURIComponent(JSON.stringify(data))). That cookie was never signed,
// so nothing in it is trusted: only client_writable keys are kept, exactly
// what the browser could have written through the API anyway.
func (h *Handler) hydrogenPatch(r *http.Request) map[string]json.RawMessage {
	c, err := r.Cookie(h.migrateCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	raw := c.Value
	if !strings.HasPrefix(raw, "{") {
		if raw, err = url.PathUnescape(raw); err != nil {
			return nil
		}
	}
	if len(raw) > int(h.MaxBody) {
		return nil
	}
	data, err := ParsePatch([]byte(raw))
	if err != nil {
		return nil
	}
	patch := make(map[string]json.RawMessage, len(data))
	for k, v := range data {
		if h.writable[k] && storage.ValidKey(k) && !storage.IsNull(v) {
			patch[k] = v
		}
	}
	if len(patch) == 0 {
		return nil
	}
	return patch
}

// migrate replaces a Hydrogen 1.0 session cookie with a real session
// holding its client-writable keys, on a request that has no valid
// session. It runs before the request is forwarded, so the upstream sees
// the imported keys at once.
func (h *Handler) migrate(r *http.Request, s *session, now time.Time) {
	if s.exists() || s.storeErr != nil {
		return
	}
	patch := h.hydrogenPatch(r)
	if patch == nil {
		return
	}
	if err := h.merge(r.Context(), s, patch, now); err != nil {
		h.logger.Error("could not import a Hydrogen 1.0 session", zap.Error(err))
		return
	}
	if h.migrateCookie != h.opts.Name {
		s.expireOther = append(s.expireOther, h.migrateCookie)
	}
	h.logger.Debug("imported a Hydrogen 1.0 session", zap.String("session", s.ref(h)), zap.Int("keys", len(patch)))
}
