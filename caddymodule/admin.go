package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-session/caddy-session/cookie"
	"github.com/caddy-session/caddy-session/storage"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI adds session endpoints to Caddy's admin API, under /session/,
// for operators: list the session handlers, count a handler's sessions,
// inspect or destroy the session a cookie value holds, and end every
// session whose index_key holds a value ("log out everywhere"). It lives on
// Caddy's admin endpoint, and so is protected as the rest of it is (a
// loopback or unix socket address, origin checks, or remote admin with
// client certificates); anyone who can reach it can already change the
// whole config.
//
// A handler is named by its admin_id (by default its cookie name). Cookie
// values and index values travel in request bodies, never in URLs, which
// Caddy logs.
//
//	GET  /session/                         the live session handlers
//	GET  /session/<id>/count               {"sessions": n, "new": n, "confirmed": n}
//	POST /session/<id>/inspect             {"cookie": "<value>", "audience": "<host>"} → the session
//	POST /session/<id>/destroy             {"cookie": "<value>", "audience": "<host>"} → {"destroyed": 0|1}
//	POST /session/<id>/logout-everywhere   {"value": <JSON value>, "audience": "<host>"} → {"destroyed": n, "audiences": {...}}
//
// A cookie is bound to its audience (the host name it was issued for, the
// cookie's domain, or the handler's audience): inspect and destroy verify
// it under the audience given, which may be left out when the handler's
// audience does not depend on the request. logout-everywhere ends the
// sessions of every audience, or of the one given, and counts per audience.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.session",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the /session/ routes.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/session/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

// adminTimeout bounds one admin operation on a store; a full scan of a
// large file store may need it.
const adminTimeout = 2 * time.Minute

// maxAdminBody bounds an admin request body.
const maxAdminBody = 64 << 10

func (a *AdminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, "/session/")
	if rest == "" {
		if err := method(r, http.MethodGet); err != nil {
			return err
		}
		return writeAdminJSON(w, listHandlers())
	}
	id, action, _ := strings.Cut(rest, "/")
	handlers := handlersFor(id)
	if len(handlers) == 0 {
		return apiErr(http.StatusNotFound, "no session handler %q; GET /session/ lists them (a handler's id is its admin_id, by default its cookie name)", id)
	}
	ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
	defer cancel()
	switch action {
	case "":
		if err := method(r, http.MethodGet); err != nil {
			return err
		}
		return writeAdminJSON(w, describeHandlers(id, handlers))
	case "count":
		if err := method(r, http.MethodGet); err != nil {
			return err
		}
		return countSessions(ctx, w, id, handlers)
	case "inspect":
		if err := method(r, http.MethodPost); err != nil {
			return err
		}
		var body cookieBody
		if err := readAdminBody(r, &body); err != nil {
			return err
		}
		info, err := inspectCookie(ctx, handlers, body)
		if err != nil {
			return err
		}
		return writeAdminJSON(w, info)
	case "destroy":
		if err := method(r, http.MethodPost); err != nil {
			return err
		}
		var body cookieBody
		if err := readAdminBody(r, &body); err != nil {
			return err
		}
		return destroyCookie(ctx, w, id, handlers, body)
	case "logout-everywhere":
		if err := method(r, http.MethodPost); err != nil {
			return err
		}
		var body struct {
			Key      string          `json:"key"`
			Value    json.RawMessage `json:"value"`
			Audience string          `json:"audience"`
		}
		if err := readAdminBody(r, &body); err != nil {
			return err
		}
		return logoutEverywhere(ctx, w, id, handlers, body.Key, body.Value, body.Audience)
	}
	return apiErr(http.StatusNotFound, "no such session admin endpoint %q; see the README's Operations section", r.URL.Path)
}

// handlerInfo describes one id's handlers.
type handlerInfo struct {
	ID       string `json:"handler"`
	Store    string `json:"store"`
	IndexKey string `json:"index_key,omitempty"`
	Cookie   string `json:"cookie"`
	Handlers int    `json:"handlers"`
}

func describeHandlers(id string, handlers []*Handler) handlerInfo {
	h := handlers[0]
	return handlerInfo{ID: id, Store: h.storeName, IndexKey: h.IndexKey, Cookie: h.opts.Name, Handlers: len(handlers)}
}

func listHandlers() []handlerInfo {
	out := []handlerInfo{}
	for id, hs := range handlerIDs() {
		out = append(out, describeHandlers(id, hs))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// distinctStores returns the handlers that keep pick, one per store.
func distinctStores(handlers []*Handler, pick func(*Handler) bool) []*Handler {
	seen := map[string]bool{}
	var out []*Handler
	for _, h := range handlers {
		if h.ops.raw == nil || !pick(h) {
			continue
		}
		k := storeIdentity(h.ops.raw)
		if !seen[k] {
			seen[k] = true
			out = append(out, h)
		}
	}
	return out
}

func countSessions(ctx context.Context, w http.ResponseWriter, id string, handlers []*Handler) error {
	if handlers[0].ops.raw == nil {
		return apiErr(http.StatusNotImplemented, "handler %q uses the cookie store: sessions live in browsers, and the server cannot count them", id)
	}
	var total storage.Counts
	for _, h := range distinctStores(handlers, func(*Handler) bool { return true }) {
		c, ok := h.ops.raw.(storage.Counter)
		if !ok {
			return apiErr(http.StatusNotImplemented, "the %s store cannot count its sessions (it does not implement storage.Counter)", h.storeName)
		}
		n, err := c.Count(ctx)
		if err != nil {
			return storeAPIErr(h, "count", err)
		}
		total.New += n.New
		total.Confirmed += n.Confirmed
	}
	return writeAdminJSON(w, map[string]any{"handler": id, "store": handlers[0].storeName,
		"sessions": total.Total(), "new": total.New, "confirmed": total.Confirmed})
}

// sessionInfo is what inspect shows of a session: everything but its ID,
// which it names by its short keyed hash.
type sessionInfo struct {
	ID       string                     `json:"handler"`
	Store    string                     `json:"store"`
	Session  string                     `json:"session"`
	Audience string                     `json:"audience"`
	New      bool                       `json:"new,omitempty"`
	Stale    bool                       `json:"verified_by_older_secret,omitempty"`
	Values   map[string]json.RawMessage `json:"values,omitempty"`
	Created  *time.Time                 `json:"created,omitempty"`
	Deadline *time.Time                 `json:"deadline,omitempty"`
	Expires  *time.Time                 `json:"expires,omitempty"`
	Note     string                     `json:"note,omitempty"`
}

// cookieBody is the body of inspect and destroy.
type cookieBody struct {
	Cookie   string `json:"cookie"`
	Audience string `json:"audience"`
}

// decoded is a cookie value as one handler reads it.
type decoded struct {
	h     *Handler
	codec *cookie.Codec
	v     *verifiedCookie
}

// ref returns the decoded session's short keyed hash.
func (d decoded) ref() string { return d.codec.Ref(d.v.id) }

// decodeCookie finds the handlers whose secrets verify a cookie value. The
// value may be given with its "name=" in front, as a browser's tools copy
// it; a cookie-store session split into chunks is given as the chunks'
// values joined in order.
func decodeCookie(ctx context.Context, handlers []*Handler, body cookieBody) ([]decoded, error) {
	value := strings.TrimSpace(body.Cookie)
	if value == "" {
		return nil, apiErr(http.StatusBadRequest, `give the session cookie's value: {"cookie": "<value>"}`)
	}
	var out []decoded
	needAudience := false
	for _, h := range handlers {
		audience := h.adminAudience(body.Audience)
		if audience == "" {
			needAudience = true
			continue
		}
		v := strings.TrimPrefix(value, h.opts.Name+"=")
		codec := h.secrets.codec.Load()
		if codec == nil && h.secrets.storage != nil {
			c, err := h.secrets.load(ctx) // read only: never creates the secret
			if err != nil {
				return nil, apiErr(http.StatusServiceUnavailable, "%v", err)
			}
			codec = c
		}
		if codec == nil {
			continue // no secret yet: no cookie can verify
		}
		if dv := h.verify(codec, v, audience); dv != nil {
			out = append(out, decoded{h: h, codec: codec, v: dv})
		}
	}
	if len(out) == 0 && needAudience {
		return nil, apiErr(http.StatusBadRequest, `give the audience the cookie was issued for, the host name it was set by: {"cookie": "<value>", "audience": "shop.example"} (sessions are bound to their site)`)
	}
	if len(out) == 0 {
		return nil, apiErr(http.StatusBadRequest, "the cookie value does not verify with the handler's secrets (wrong handler, tampered, or signed by a secret no longer configured)")
	}
	return out, nil
}

// adminAudience is the audience an admin call verifies a cookie under:
// the handler's own when it does not depend on the request (audience, or
// the cookie's domain when none is given), else the one given (a host
// name, read as a request's Host is, or the value a request-dependent
// audience takes, as written). "" when none was given.
func (h *Handler) adminAudience(given string) string {
	given = strings.TrimSpace(given)
	switch {
	case h.fixedAudience != "":
		return h.fixedAudience
	case h.audienceTemplate != "":
		return given
	case given == "":
		return h.domainAudience
	}
	return h.audienceOfHost(given)
}

// inspectCookie returns the session a cookie value holds.
func inspectCookie(ctx context.Context, handlers []*Handler, body cookieBody) (*sessionInfo, error) {
	ds, err := decodeCookie(ctx, handlers, body)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for _, d := range ds {
		h := d.h
		info := &sessionInfo{ID: h.ops.id, Store: h.storeName, Session: d.ref(), Stale: d.v.stale, Audience: d.v.audience}
		err := h.mode.inspect(ctx, h, d.v, info)
		var apiErr caddy.APIError
		if errors.As(err, &apiErr) && apiErr.HTTPStatus == http.StatusNotFound {
			lastErr = err // another handler of the id may hold it
			continue
		}
		if err != nil {
			return nil, err
		}
		return info, nil
	}
	return nil, lastErr
}

// destroyCookie destroys the session a cookie value holds, in every store
// of the id whose secrets verify it.
func destroyCookie(ctx context.Context, w http.ResponseWriter, id string, handlers []*Handler, body cookieBody) error {
	ds, err := decodeCookie(ctx, handlers, body)
	if err != nil {
		return err
	}
	if ds[0].h.ops.raw == nil {
		return apiErr(http.StatusNotImplemented, "handler %q uses the cookie store: a cookie-store session cannot be revoked on the server (it lives in the browser until it expires); rotate the secret to end them all, or use a server store", id)
	}
	destroyed := 0
	seen := map[string]bool{}
	var ref string
	for _, d := range ds {
		h := d.h
		if k := storeIdentity(h.ops.raw) + "\x00" + d.v.storeKey; seen[k] {
			continue
		} else {
			seen[k] = true
		}
		if _, err := h.ops.raw.Load(ctx, d.v.storeKey); errors.Is(err, storage.ErrNotFound) {
			continue
		} else if err != nil {
			return storeAPIErr(h, "load", err)
		}
		if err := h.ops.raw.Delete(ctx, d.v.storeKey); err != nil {
			return storeAPIErr(h, "delete", err)
		}
		destroyed++
		ref = d.ref()
		h.ops.metrics.count(evDestroyed)
		h.logger.Info("session destroyed through the admin API", zap.String("handler", id), zap.String("session", ref))
	}
	out := map[string]any{"handler": id, "destroyed": destroyed}
	if ref != "" {
		out["session"] = ref
	}
	return writeAdminJSON(w, out)
}

// logoutEverywhere destroys every session whose index_key holds value.
func logoutEverywhere(ctx context.Context, w http.ResponseWriter, id string, handlers []*Handler, key string, raw json.RawMessage, audience string) error {
	indexKey := handlers[0].IndexKey
	for _, h := range handlers {
		if h.IndexKey != "" {
			indexKey = h.IndexKey
			break
		}
	}
	if indexKey == "" {
		return apiErr(http.StatusNotImplemented, "handler %q has no index_key: configure one (index_key customerId) to end sessions by a key's value", id)
	}
	if key != "" && key != indexKey {
		return apiErr(http.StatusBadRequest, "handler %q indexes sessions by %q, not %q", id, indexKey, key)
	}
	if len(raw) == 0 {
		return apiErr(http.StatusBadRequest, `give the value to log out: {"value": "c_42"} (any JSON value, compared as JSON: "42" and 42 differ)`)
	}
	value, err := storage.IndexValue(raw)
	if err != nil {
		return apiErr(http.StatusBadRequest, "%v", err)
	}
	total := 0
	byAudience := map[string]int{}
	for _, h := range distinctStores(handlers, func(h *Handler) bool { return h.IndexKey == indexKey }) {
		ix, _ := h.ops.raw.(storage.Indexer) // provisioning checked it
		counts, err := ix.DeleteByValue(ctx, indexKey, value, audience)
		for aud, n := range counts {
			total += n
			byAudience[aud] += n
			for range n {
				h.ops.metrics.count(evDestroyed)
			}
		}
		if err != nil {
			return storeAPIErr(h, "delete by value", err)
		}
	}
	// The value is a session value (a customer ID): it stays out of the log.
	handlers[0].logger.Info("sessions destroyed through the admin API (log out everywhere)",
		zap.String("handler", id), zap.String("key", indexKey), zap.Int("destroyed", total))
	out := map[string]any{"handler": id, "key": indexKey, "destroyed": total, "audiences": byAudience}
	if audience != "" {
		out["audience"] = audience
	}
	return writeAdminJSON(w, out)
}

// storeAPIErr answers a store failure with 503 and logs it as the handler
// logs store errors.
func storeAPIErr(h *Handler, op string, err error) error {
	h.logger.Error("session store failed an admin operation",
		zap.String("store", h.storeName), zap.String("operation", op), zap.Error(err))
	return apiErr(http.StatusServiceUnavailable, "session store %s failed to %s: %v", h.storeName, op, err)
}

func method(r *http.Request, want string) error {
	if r.Method == want {
		return nil
	}
	return apiErr(http.StatusMethodNotAllowed, "method %s not allowed; use %s", r.Method, want)
}

func apiErr(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

// readAdminBody decodes a JSON object body into v.
func readAdminBody(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAdminBody+1))
	if err != nil {
		return apiErr(http.StatusBadRequest, "reading the body: %v", err)
	}
	if len(body) > maxAdminBody {
		return apiErr(http.StatusRequestEntityTooLarge, "body over %d bytes", maxAdminBody)
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apiErr(http.StatusBadRequest, "the body must be a JSON object: %v", err)
	}
	return nil
}

func writeAdminJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Interface guards
var _ caddy.AdminRouter = (*AdminAPI)(nil)
