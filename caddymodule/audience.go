package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// A session belongs to the site that issued it: its audience, bound into
// the cookie's signature (cookie.Codec), so that a cookie copied from one
// site to another on the same gateway and secrets is no session there.
//
// The audience is, in order: the configured audience (placeholders
// resolved per request when they name request values), the cookie's
// domain when one is set and the request's host is within it (that cookie
// is meant for every subdomain), or the request's host name, lowercase,
// without port or trailing dot.

// provisionAudience resolves the audience's global placeholders once: a
// fixed audience (configured, or the cookie's domain) costs nothing per
// request.
func (h *Handler) provisionAudience() error {
	switch {
	case h.Audience != "":
		v := caddy.NewReplacer().ReplaceKnown(h.Audience, "")
		if strings.Contains(v, "{") {
			h.audienceTemplate = h.Audience // request placeholders: per request
			return nil
		}
		if v == "" {
			return fmt.Errorf("audience %q is empty once its placeholders are resolved; set the variable it names, or remove audience to bind sessions to the host name", h.Audience)
		}
		h.fixedAudience = v
	}
	if h.opts.Domain != "" {
		h.domainAudience = hostAudience(h.opts.Domain)
	}
	return nil
}

// audienceFor returns the audience of a request.
func (h *Handler) audienceFor(r *http.Request) string {
	if h.fixedAudience != "" {
		return h.fixedAudience
	}
	if h.audienceTemplate != "" {
		if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
			if v := repl.ReplaceAll(h.audienceTemplate, ""); v != "" {
				return v
			}
		}
		// Resolved to nothing: the host name, never a shared "" audience.
	}
	return h.audienceOfHost(r.Host)
}

// audienceOfHost is the audience of requests to host when none is
// configured: the cookie's domain for the hosts within it (the domain and
// its subdomains, where a browser sends that cookie), else the host name.
func (h *Handler) audienceOfHost(host string) string {
	name := hostAudience(host)
	if d := h.domainAudience; d != "" && (name == d || strings.HasSuffix(name, "."+d)) {
		return d
	}
	return name
}

// hostAudience returns a host (or Host header) as an audience: the name in
// lower case, without port, brackets or trailing dot. It allocates only
// when the name has upper case letters.
func hostAudience(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			host = host[1:i]
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host, ':') == i {
		host = host[:i]
	} else if i >= 0 {
		// Several colons without brackets: a bare IPv6 address.
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	host = strings.TrimPrefix(host, ".") // a cookie domain's leading dot
	host = strings.TrimSuffix(host, ".")
	return strings.ToLower(host)
}
