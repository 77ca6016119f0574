package caddymodule

import (
	"net/http"
	"strings"
)

// addVary adds Cookie to the response's Vary header, once.
func addVary(hdr http.Header) {
	for _, v := range hdr["Vary"] {
		if containsToken(v, "Cookie") || strings.TrimSpace(v) == "*" {
			return
		}
	}
	hdr.Add("Vary", "Cookie")
}

// containsToken reports whether a comma-separated header value holds tok,
// compared case-insensitively.
func containsToken(v, tok string) bool {
	for v != "" {
		var t string
		t, v, _ = strings.Cut(v, ",")
		t = strings.TrimSpace(t)
		if i := strings.IndexByte(t, '='); i >= 0 {
			t = t[:i]
		}
		if strings.EqualFold(t, tok) {
			return true
		}
	}
	return false
}

// removeToken returns a comma-separated header value without tok.
func removeToken(v, tok string) string {
	var kept []string
	for _, t := range strings.Split(v, ",") {
		t = strings.TrimSpace(t)
		name, _, _ := strings.Cut(t, "=")
		if t == "" || strings.EqualFold(name, tok) {
			continue
		}
		kept = append(kept, t)
	}
	return strings.Join(kept, ", ")
}

// addCacheControlPrivate marks a response that sets the session cookie as
// private, so shared caches never store it, unless it is already stricter.
func addCacheControlPrivate(hdr http.Header) {
	cc := hdr.Get("Cache-Control")
	if containsToken(cc, "private") || containsToken(cc, "no-store") {
		return
	}
	if cc == "" {
		hdr.Set("Cache-Control", "private")
		return
	}
	cc = removeToken(cc, "public")
	if cc == "" {
		hdr.Set("Cache-Control", "private")
		return
	}
	hdr.Set("Cache-Control", "private, "+cc)
}

// filterTokens returns the comma-separated tokens of values without those
// drop matches, keeping the rest in order.
func filterTokens(values []string, drop func(string) bool) []string {
	var out []string
	for _, v := range values {
		var kept []string
		changed := false
		for _, tok := range strings.Split(v, ",") {
			t := strings.TrimSpace(tok)
			if t == "" || drop(t) {
				changed = true
				continue
			}
			kept = append(kept, t)
		}
		switch {
		case !changed:
			out = append(out, v)
		case len(kept) > 0:
			out = append(out, strings.Join(kept, ", "))
		}
	}
	return out
}
