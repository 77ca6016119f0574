package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-session/caddy-session/storage"
)

// discardLimit is how much of an unread request body net/http reads and
// discards to keep a connection open (its maxPostHandlerReadBytes).
const discardLimit = 256 << 10

// allowedMethods is the Allow header of a 405 from the API.
const allowedMethods = "GET, HEAD, POST, PATCH, DELETE"

// apiRoute tells whether a request path is the API's (exact), under it
// (sub), or neither. Paths are compared as the upstream would read them:
// decoded, cleaned ("//", "/./", "/x/.."), and without ";params", so no
// spelling of the API path slips past it to the upstream.
func (h *Handler) apiRoute(p string) (exact, sub bool) {
	if h.DisableAPI || !strings.Contains(p, h.apiBase) {
		// Cleaning only removes bytes, so a path without the API path's
		// last segment can never be one of its spellings.
		return false, false
	}
	if i := strings.IndexByte(p, ';'); i >= 0 {
		p = p[:i]
	}
	if p != h.APIPath {
		p = path.Clean("/" + p)
	}
	if p == h.APIPath {
		return true, false
	}
	return false, strings.HasPrefix(p, h.APIPath+"/")
}

// apiError is the body of every API error.
type apiError struct {
	Error string `json:"error"`
}

// serveAPI answers the session API: GET/HEAD read, POST/PATCH merge,
// DELETE destroys.
func (h *Handler) serveAPI(w http.ResponseWriter, r *http.Request, s *session, now time.Time, exact bool) error {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	if h.vary && s.hadValue {
		addVary(hdr)
	}
	if !exact {
		return h.apiFail(w, r, http.StatusNotFound, fmt.Sprintf("no such session endpoint; the session API is %s", h.APIPath))
	}
	secure := h.isSecure(r)

	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if s.storeErr != nil {
			return h.apiFail(w, r, http.StatusServiceUnavailable, "session store unavailable; try again shortly")
		}
		h.settle(r.Context(), s, now, false) // an expired key changes the version
		h.recordUse(r.Context(), s, now)
		if err := h.writeCookies(hdr, s, secure, now); err != nil {
			h.logger.Error("re-issuing the session cookie", zap.Error(err))
		}
		if s.exists() {
			hdr.Set("ETag", etag(s.version))
			if notModified(r, s) {
				hdr.Del("Content-Type")
				h.ops.metrics.apiRequest(r.Method, http.StatusNotModified)
				w.WriteHeader(http.StatusNotModified)
				return nil
			}
		}
		return h.apiJSON(w, r, http.StatusOK, h.readableValues(s))

	case http.MethodPost, http.MethodPatch:
		if err := h.cop.Check(r); err != nil {
			return h.apiFail(w, r, http.StatusForbidden, "cross-origin session writes are refused; list the origin in trusted_origins if it is yours")
		}
		if ct := r.Header.Get("Content-Type"); !isJSON(ct) {
			return h.apiFail(w, r, http.StatusUnsupportedMediaType, "send the body as Content-Type: application/json")
		}
		body, status, err := h.readBody(r)
		if err != nil {
			if status == http.StatusRequestEntityTooLarge && (r.ContentLength < 0 || r.ContentLength > discardLimit) {
				// The rest of the body stays unread: closing the
				// connection keeps net/http from waiting for (and
				// discarding) up to 256 KiB more before it answers. A
				// smaller announced rest is left to net/http, which
				// discards it and keeps the connection, so a client
				// still sending it does not meet a reset.
				hdr.Set("Connection", "close")
			}
			return h.apiFail(w, r, status, err.Error())
		}
		patch, err := ParsePatch(body)
		if err != nil {
			return h.apiFail(w, r, http.StatusBadRequest, err.Error())
		}
		for _, k := range sortedKeys(patch) {
			if !storage.ValidKey(k) {
				return h.apiFail(w, r, http.StatusBadRequest, (&storage.KeyError{Key: k}).Error())
			}
			if !h.writable[k] {
				return h.apiFail(w, r, http.StatusForbidden, fmt.Sprintf("key %q is not client-writable; the operator lists such keys in client_writable", k))
			}
		}
		if s.storeErr != nil {
			return h.apiFail(w, r, http.StatusServiceUnavailable, "session store unavailable; nothing was written, try again shortly")
		}
		if s.cond = writeCondition(r); s.cond.decide(s) != 0 {
			return h.preconditionFailed(w, r, s.currentRecord())
		}
		if len(patch) == 0 && !s.exists() {
			if s.cond != nil && s.cond.mustExist {
				return h.preconditionFailed(w, r, nil)
			}
			// Nothing to write and no session: nothing is created (no
			// cookie, no store record), as for a visitor who only reads.
			return h.apiJSON(w, r, http.StatusOK, map[string]json.RawMessage{})
		}
		if err := h.merge(r.Context(), s, patch, now); err != nil {
			return h.apiWriteError(w, r, err)
		}
		h.recordUse(r.Context(), s, now)
		if err := h.writeCookies(hdr, s, secure, now); err != nil {
			return h.apiWriteError(w, r, err)
		}
		if s.exists() {
			hdr.Set("ETag", etag(s.version))
		}
		return h.apiJSON(w, r, http.StatusOK, h.readableValues(s))

	case http.MethodDelete:
		if err := h.cop.Check(r); err != nil {
			return h.apiFail(w, r, http.StatusForbidden, "cross-origin session writes are refused; list the origin in trusted_origins if it is yours")
		}
		if s.rotated {
			// Expiring the cookie would sign out the sign-in this
			// request raced (rotated.go).
			return h.apiFail(w, r, http.StatusConflict, errRotatedAway.Error())
		}
		// The cookie is expired even when the store fails: signing out
		// always signs the browser out (destroy logs that the stored
		// session may outlive it), and the 503 says so.
		unknown := s.storeErr != nil && s.failedKey == "" // the cookie could not even be read
		if s.cond = writeCondition(r); s.cond != nil {
			if s.storeErr != nil {
				return h.apiFail(w, r, http.StatusServiceUnavailable, "session store unavailable; nothing was destroyed, try again shortly")
			}
			if s.cond.decide(s) != 0 {
				return h.preconditionFailed(w, r, s.currentRecord())
			}
		}
		err := h.destroy(r.Context(), s)
		var ve *storage.VersionError
		switch {
		case errors.As(err, &ve):
			return h.preconditionFailed(w, r, ve.Current)
		case errors.Is(err, errNoSessionPrecondition):
			return h.preconditionFailed(w, r, nil)
		}
		if cerr := h.writeCookies(hdr, s, secure, now); cerr != nil {
			h.logger.Error("expiring the session cookie", zap.Error(cerr))
		}
		if err != nil || unknown {
			return h.apiFail(w, r, http.StatusServiceUnavailable, "session store unavailable: the session cookie is expired, but the stored session may live until it expires; try again shortly")
		}
		hdr.Del("Content-Type")
		h.ops.metrics.apiRequest(r.Method, http.StatusNoContent)
		w.WriteHeader(http.StatusNoContent)
		return nil

	default:
		hdr.Set("Allow", allowedMethods)
		return h.apiFail(w, r, http.StatusMethodNotAllowed, "method not allowed; use "+allowedMethods)
	}
}

// readBody reads an API body of at most max_body bytes, refusing a larger
// one without reading it into memory.
func (h *Handler) readBody(r *http.Request) ([]byte, int, error) {
	tooLarge := fmt.Errorf("body over %d bytes (max_body)", h.MaxBody)
	if r.ContentLength > h.MaxBody {
		if r.ContentLength <= discardLimit {
			// Let the client finish sending before the answer goes out,
			// as net/http would: answering first races its writes into a
			// reset. Discarded, never held in memory; a larger body is
			// not read at all (the connection closes).
			_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, r.ContentLength))
		}
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.MaxBody+1))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("reading the body: %v", err)
	}
	if int64(len(body)) > h.MaxBody {
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	return body, 0, nil
}

// apiWriteError answers a write the session or store refused.
func (h *Handler) apiWriteError(w http.ResponseWriter, r *http.Request, err error) error {
	var keyErr *storage.KeyError
	var limErr *storage.LimitError
	switch {
	case errors.As(err, &keyErr):
		return h.apiFail(w, r, http.StatusBadRequest, keyErr.Error())
	case errors.As(err, &limErr):
		return h.apiFail(w, r, http.StatusRequestEntityTooLarge, limErr.Error())
	case errors.Is(err, errTooLarge):
		return h.apiFail(w, r, http.StatusRequestEntityTooLarge, err.Error())
	case errors.Is(err, errRotatedAway):
		return h.apiFail(w, r, http.StatusConflict, err.Error())
	case errors.Is(err, errNoSessionPrecondition):
		return h.preconditionFailed(w, r, nil)
	}
	var verErr *storage.VersionError
	if errors.As(err, &verErr) {
		return h.preconditionFailed(w, r, verErr.Current)
	}
	h.logger.Error("session store failed a write",
		zap.String("store", h.storeName), zap.String("operation", "write"), zap.Error(err))
	return h.apiFail(w, r, http.StatusServiceUnavailable, "session store unavailable; nothing was written, try again shortly")
}

// readableValues returns the keys GET may show.
func (h *Handler) readableValues(s *session) map[string]json.RawMessage {
	return h.readableOf(s.values)
}

// readableOf returns the client-readable keys of values: never a flash
// or internal name, nor an expired key (flash.go).
func (h *Handler) readableOf(values map[string]json.RawMessage) map[string]json.RawMessage {
	values = visible(values, time.Now())
	if h.readable == nil {
		return values
	}
	out := make(map[string]json.RawMessage, len(h.readable))
	for k, v := range values {
		if h.readable[k] {
			out[k] = v
		}
	}
	return out
}

// apiJSON writes v as the JSON body of an API answer.
func (h *Handler) apiJSON(w http.ResponseWriter, r *http.Request, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if string(body) == "null" {
		body = []byte("{}")
	}
	body = append(body, '\n') // as curl users, and json.Encoder, expect
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	h.ops.metrics.apiRequest(r.Method, status)
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return nil
}

// apiFail writes an API error: {"error": msg}.
func (h *Handler) apiFail(w http.ResponseWriter, r *http.Request, status int, msg string) error {
	return h.apiJSON(w, r, status, apiError{Error: msg})
}

// isJSON reports whether a Content-Type is application/json, parameters
// allowed.
func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// sortedKeys returns m's keys in order, so errors name the same key every
// time.
func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
