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
	// Read the Cookie header directly: net/http drops a cookie value with a
	// '"' in it, as an unencoded JSON one has.
	raw := rawCookie(r.Header, h.migrateCookie)
	if raw == "" {
		return nil
	}
	if !strings.HasPrefix(raw, "{") {
		var err error
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
	if s.exists() || s.storeErr != nil || s.rotated {
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

// rawCookie returns the value of the first cookie called name in the
// request's Cookie headers, as sent.
func rawCookie(h http.Header, name string) string {
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && k == name {
				return v
			}
		}
	}
	return ""
}
