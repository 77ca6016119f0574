package caddymodule

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// ServeHTTP gives the request its session. Reserved client headers go
// first, whatever else happens, on every path.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	stripRequest(r)
	now := time.Now()
	// One allocation holds the request's session and response wrapper.
	rw := &responseWriter{
		ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
		h:                     h,
		r:                     r,
		now:                   now,
	}
	s := &rw.s
	exact, sub := h.apiRoute(r.URL.Path)
	if sub && h.serveClientScript(w, r) {
		return nil
	}
	s.deferLoad = exact && h.mode.defersLoad() && (r.Method == http.MethodPost || r.Method == http.MethodPatch) &&
		writeCondition(r).defersLoad()
	h.load(r, now, s)
	if h.migrateCookie != "" {
		h.migrate(r, s, now)
	}
	if !exact && !sub && s.exists() && hasInternal(s.values) {
		h.settle(r.Context(), s, now, true) // flash and expiring keys (flash.go)
	}

	if exact || sub {
		return h.serveAPI(w, r, s, now, exact)
	}
	if s.storeErr != nil {
		if h.failClosed {
			h.ops.metrics.count(evFailClosed)
			return caddyhttp.Error(http.StatusServiceUnavailable, errors.New("session store unavailable (on_store_error fail_closed)"))
		}
		h.ops.metrics.count(evFailOpen)
	}

	h.opts.StripCookies(r.Header)
	if s.exists() {
		h.forward(r, s)
	}
	if h.signKey != nil {
		sign(h.signKey, r, s.headers, now)
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		h.setPlaceholders(repl, s)
	}

	err := next.ServeHTTP(rw, r)
	if !rw.written {
		if err != nil {
			// Caddy's error routes write through the outer writer: nothing
			// the upstream put in the header map may go out with them.
			h.scrubResponse(w.Header())
		} else {
			// Nothing was written: net/http sends the header map as is.
			rw.finish()
		}
	}
	// Trailers go out when the handler returns, from whatever the header
	// map holds then: reverse_proxy adds the upstream's after the body.
	scrubTrailers(w.Header())
	return err
}

// isSecure tells whether the session cookie gets the Secure attribute for
// this request: with secure auto, when the request came over TLS, as seen
// by Caddy or as told by a proxy Caddy trusts (trusted_proxies); a client's
// own X-Forwarded-Proto is never believed.
func (h *Handler) isSecure(r *http.Request) bool {
	tls := r.TLS != nil
	if !tls {
		if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
			tls = strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
		}
	}
	return h.opts.IsSecure(tls)
}
