package caddymodule

import (
	"fmt"
	"reflect"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-session/caddy-session/cookie"
	"github.com/caddy-session/caddy-session/storage"
)

// opsState is what a handler keeps for operators: its id, metrics, the
// store as loaded (the admin API bypasses the metrics wrapper), and its
// hold on the store's index.
type opsState struct {
	id         string
	metrics    *handlerMetrics
	raw        storage.Store // nil for the cookie store
	release    func()        // ends this handler's use of the index
	registered bool
	debugLog   *zap.Logger // the handler's logger, reporting its callers' lines
}

// provisionOps runs last in Provision: it names the handler, resolves its
// metrics, wraps the store to time it, starts the index and makes the
// handler reachable from the admin API.
func (h *Handler) provisionOps(ctx caddy.Context) error {
	h.ops.debugLog = h.logger.WithOptions(zap.AddCallerSkip(1))
	h.ops.id = h.AdminID
	if h.ops.id == "" {
		h.ops.id = h.opts.Name
	}
	if !validAdminID(h.ops.id) {
		return fmt.Errorf("admin_id %q: use letters, digits, '.', '-' and '_' (it is a path segment of the admin API)", h.ops.id)
	}

	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering session metrics: %v", err)
	}
	h.ops.metrics = newHandlerMetrics(h.ops.id, h.storeName)
	if h.ops.raw != nil {
		h.mode = serverMode{store: newInstrumentedStore(h.ops.raw, h.ops.id, h.storeName), moving: h.prev != nil}
	}

	if h.IndexKey != "" {
		if !storage.ValidKey(h.IndexKey) {
			return fmt.Errorf("index_key: invalid key %q: a key is 1 to 64 characters, a letter first, then letters, digits, '-' or '_'", h.IndexKey)
		}
		if h.ops.raw == nil {
			return fmt.Errorf("index_key needs a server store (memory, file, redis, postgres): the %s store keeps sessions in the browser, where they cannot be found or ended", h.storeName)
		}
		ix, ok := h.ops.raw.(storage.Indexer)
		if !ok {
			return fmt.Errorf("index_key: the %s store cannot find sessions by value (it does not implement storage.Indexer); remove index_key or use memory, file, redis or postgres", h.storeName)
		}
		h.ops.release = ix.Index(h.IndexKey)
	}

	h.warnMultiInstance(ctx)
	registerHandler(h)
	h.ops.registered = true
	return nil
}

// validAdminID reports whether id can be a path segment of the admin API.
func validAdminID(id string) bool {
	if id == "" || len(id) > 128 || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// warnMultiInstance warns when a per-host store (memory, file) is used
// where several Caddy instances are likely: Caddy's own storage is not the
// local filesystem (storage redis, consul, s3...: instances share it to
// share certificates, which is how Caddy clusters), or the file store's
// directory is on a network filesystem. Each instance would then have its
// own sessions, and a user sent to another one is logged out.
func (h *Handler) warnMultiInstance(ctx caddy.Context) {
	for _, msg := range multiInstanceWarnings(h.storeName, h.ops.raw, configStorage(ctx)) {
		h.logger.Warn(msg, zap.String("handler", h.ops.id))
	}
}

// multiInstanceWarnings returns the warnings of warnMultiInstance.
func multiInstanceWarnings(storeName string, raw storage.Store, st certmagic.Storage) []string {
	local, ok := raw.(HostLocalStore)
	if !ok {
		return nil
	}
	_, dir := local.SessionsOnHost()
	var out []string
	if st != nil {
		if _, local := st.(*certmagic.FileStorage); !local {
			out = append(out, fmt.Sprintf("the %s session store keeps sessions per host, but Caddy's storage is shared (%T), which suggests several Caddy instances: each would keep its own sessions, and a user sent to another instance loses the session; use store redis or store postgres, or sticky sessions", storeName, st))
		}
	}
	if dir != "" {
		if fs := networkFilesystem(dir); fs != "" {
			out = append(out, fmt.Sprintf("the file session store's directory %s is on a network filesystem (%s), which suggests several hosts share it; its locks do not hold across hosts: use store redis or store postgres for several hosts", dir, fs))
		}
	}
	return out
}

// configStorage returns Caddy's configured storage, or nil when ctx
// belongs to no loaded config. Every config Caddy loads has a storage (the
// local filesystem by default), but a context made with
// caddy.NewContext(caddy.Context{...}), as tests make them, has no config,
// and Storage dereferences the missing one. Caddy exports no way to ask
// whether a context has a config, so this reads whether Context's
// unexported cfg field is nil (reflect reads it; nothing is set).
// TestConfigStorage pins that field, so a Caddy release that renames it
// fails the tests instead of silently dropping the warning.
func configStorage(ctx caddy.Context) certmagic.Storage {
	if cfg := reflect.ValueOf(ctx).FieldByName("cfg"); !cfg.IsValid() || cfg.Kind() != reflect.Pointer || cfg.IsNil() {
		return nil
	}
	return ctx.Storage()
}

// The handlers that are provisioned and not cleaned up, by id, for the
// admin API and the CLI. A reload provisions the new config before it
// cleans up the old one, so an id may briefly have two handlers (the old
// and the new); two handlers of one config may also share an id on
// purpose. Every operation of the admin API acts on all of them.
var liveHandlers = struct {
	sync.Mutex
	m map[string][]*Handler
}{m: map[string][]*Handler{}}

func registerHandler(h *Handler) {
	liveHandlers.Lock()
	defer liveHandlers.Unlock()
	liveHandlers.m[h.ops.id] = append(liveHandlers.m[h.ops.id], h)
}

func unregisterHandler(h *Handler) {
	liveHandlers.Lock()
	defer liveHandlers.Unlock()
	list := liveHandlers.m[h.ops.id]
	for i, x := range list {
		if x == h {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(liveHandlers.m, h.ops.id)
	} else {
		liveHandlers.m[h.ops.id] = list
	}
}

// handlersFor returns the live handlers of an id, the newest first.
func handlersFor(id string) []*Handler {
	liveHandlers.Lock()
	defer liveHandlers.Unlock()
	list := liveHandlers.m[id]
	out := make([]*Handler, len(list))
	for i, h := range list {
		out[len(list)-1-i] = h
	}
	return out
}

// handlerIDs returns the ids that have live handlers.
func handlerIDs() map[string][]*Handler {
	liveHandlers.Lock()
	defer liveHandlers.Unlock()
	out := make(map[string][]*Handler, len(liveHandlers.m))
	for id, list := range liveHandlers.m {
		out[id] = append([]*Handler(nil), list...)
	}
	return out
}

// storeIdentity names the store behind a handler, so that the admin API
// acts once on a store that several handlers share (a memory pool, one
// Redis, one directory): its StoreIdentifier name, else its address.
func storeIdentity(s storage.Store) string {
	if id, ok := s.(StoreIdentifier); ok {
		return id.StoreIdentity()
	}
	return fmt.Sprintf("%T\x00%p", s, s)
}

// debugSession writes a debug line about a session, naming it by its
// short keyed hash; the hash is computed only when debug is on.
func (h *Handler) debugSession(msg string, s *session, fields ...zap.Field) {
	if ce := h.debugLogger().Check(zap.DebugLevel, msg); ce != nil {
		ce.Write(append(fields, zap.String("session", s.ref(h)))...)
	}
}

func (h *Handler) debugLogger() *zap.Logger {
	if h.ops.debugLog != nil {
		return h.ops.debugLog
	}
	return h.logger
}

// debugRef is debugSession for a session known only by its ID.
func (h *Handler) debugRef(msg string, codec *cookie.Codec, id string) {
	if ce := h.debugLogger().Check(zap.DebugLevel, msg); ce != nil {
		ce.Write(zap.String("session", codec.Ref(id)))
	}
}

// Interface guards
var _ caddy.CleanerUpper = (*Handler)(nil)
