package caddymodule

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddy-session/caddy-session/storage"
)

// Versions and conditional requests of the session API. Every answer about
// an existing session carries ETag: "<version>", the session's
// storage.Record.Version in hex: opaque to clients, strong, changed by
// every change of the session's data (API or upstream), never by a touch,
// a confirmation, a rotation or a cookie re-issue. A write with If-Match
// applies only at that version, checked atomically in the store; the
// cookie store checks the version of the cookie the request presents.

// etag returns the ETag of a session at version v.
func etag(v uint64) string {
	return `"` + strconv.FormatUint(v, 16) + `"`
}

// versionText is the version as the placeholder {http.session.version}
// holds it: the ETag without its quotes.
func versionText(v uint64) string {
	return strconv.FormatUint(v, 16)
}

// condition is a write's precondition, from If-Match and If-None-Match.
type condition struct {
	mustExist  bool   // If-Match: * (or any tag): only a live session
	mustNot    bool   // If-None-Match: *: only without one
	check      bool   // the version must be version (one If-Match tag)
	version    uint64 // the version If-Match names
	tags       []string
	impossible bool // If-Match names no tag a session can have
}

// errNoSessionPrecondition is a conditional write (If-Match) to a request
// without a session: 412 with {}.
var errNoSessionPrecondition = errors.New("the request's If-Match names a session, and it has none")

// writeCondition reads the request's preconditions; nil when it has none.
func writeCondition(r *http.Request) *condition {
	im, inm := r.Header.Values("If-Match"), r.Header.Values("If-None-Match")
	if len(im) == 0 && len(inm) == 0 {
		return nil
	}
	c := &condition{}
	for _, t := range etagList(inm) {
		if t == "*" {
			c.mustNot = true
		}
	}
	if len(im) > 0 {
		c.mustExist = true
		tags := etagList(im)
		for _, t := range tags {
			if t == "*" {
				return c
			}
		}
		for _, t := range tags {
			if v, ok := parseETag(t); ok {
				c.tags = append(c.tags, t)
				c.version = v
			}
		}
		c.check = len(c.tags) == 1
		c.impossible = len(c.tags) == 0
	}
	return c
}

// defersLoad reports whether a write under c can leave the load to the
// store's merge: a single If-Match tag is checked by the store itself;
// anything else is decided from the loaded session first.
func (c *condition) defersLoad() bool {
	return c == nil || (!c.mustNot && !c.impossible && (c.check || len(c.tags) == 0))
}

// decide settles what does not need the store: it returns 0 when the
// write may go ahead (with c.check set when the store must check a
// version), else 412. s is the loaded session, or a deferred one (then
// only c.check and c.mustExist are left to the store).
func (c *condition) decide(s *session) int {
	switch {
	case c == nil:
		return 0
	case s.deferLoad:
		return 0
	case c.mustNot && s.exists():
		return http.StatusPreconditionFailed
	case c.mustExist && !s.exists():
		return http.StatusPreconditionFailed
	case c.impossible:
		return http.StatusPreconditionFailed
	case len(c.tags) > 1:
		// Several tags: the session's version must be one of them, and
		// the store checks that it still is.
		for _, t := range c.tags {
			if t == etag(s.version) {
				c.check, c.version = true, s.version
				return 0
			}
		}
		return http.StatusPreconditionFailed
	}
	return 0
}

// etagList splits If-Match or If-None-Match values into their entity
// tags ("*", `"x"`, `W/"x"`).
func etagList(values []string) []string {
	var out []string
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

// parseETag reads a strong entity tag this module issued. A weak tag
// (W/"...") never matches: If-Match compares strongly, and this module
// issues strong tags only.
func parseETag(t string) (uint64, bool) {
	if len(t) < 3 || t[0] != '"' || t[len(t)-1] != '"' {
		return 0, false
	}
	v, err := strconv.ParseUint(t[1:len(t)-1], 16, 64)
	if err != nil || etag(v) != t {
		return 0, false
	}
	return v, true
}

// notModified reports whether a GET with If-None-Match may answer 304 for
// s: a live session whose tag the header lists (weakly compared, as
// RFC 9110 says for If-None-Match), or "*".
func notModified(r *http.Request, s *session) bool {
	inm := r.Header.Values("If-None-Match")
	if len(inm) == 0 || !s.exists() {
		return false
	}
	cur := etag(s.version)
	for _, t := range etagList(inm) {
		if t == "*" || strings.TrimPrefix(t, "W/") == cur {
			return true
		}
	}
	return false
}

// preconditionFailed answers a write refused by its precondition: 412
// with the session as it is (the readable object, and its ETag when
// there is one), so the client can retry from it without reading again.
func (h *Handler) preconditionFailed(w http.ResponseWriter, r *http.Request, cur *storage.Record) error {
	if cur == nil {
		return h.apiJSON(w, r, http.StatusPreconditionFailed, map[string]any{})
	}
	w.Header().Set("ETag", etag(cur.Version))
	return h.apiJSON(w, r, http.StatusPreconditionFailed, h.readableOf(cur.Values))
}

// isPrecondition reports whether err refuses a conditional write (412).
func isPrecondition(err error) bool {
	var ve *storage.VersionError
	return errors.As(err, &ve) || errors.Is(err, errNoSessionPrecondition)
}

// currentRecord is the loaded session as a record, for a 412.
func (s *session) currentRecord() *storage.Record {
	if !s.exists() {
		return nil
	}
	return &storage.Record{Values: s.values, Version: s.version}
}
