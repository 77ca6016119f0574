package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-session/caddy-session/storage"
)

// Flash keys (X-Session-Flash) and expiring keys (X-Session-Expire) live in
// the session's stored values under internal names that no session key
// can have (storage.ValidStoredKey), so that every store keeps them, merges
// them atomically and moves them with the session, with no change to its
// format:
//
//	~f~<key>  a flash value, forwarded to one later upstream request
//	~x~<key>  the end of <key>'s value, Unix milliseconds
//
// Nothing internal is ever forwarded, returned by the API or shown as a
// placeholder (visible). An expired key is invisible at once and removed,
// with its expiry, by the next write: a request that sees one expired
// removes it in a conditional write (settle), so that the session's
// version changes when its data does. A flash value is taken by the first
// request that reaches the upstream after it was set, in a conditional
// write: of concurrent requests, the one whose write wins delivers it.

// The upstream's headers for flash and expiring keys.
const (
	headerFlash  = "X-Session-Flash"
	headerExpire = "X-Session-Expire"
)

// hasInternal reports whether values hold a flash or expiring key.
func hasInternal(values map[string]json.RawMessage) bool {
	for k := range values {
		if len(k) > 0 && k[0] == '~' {
			return true
		}
	}
	return false
}

// expiryOf returns the end of key's value, if it has one.
func expiryOf(values map[string]json.RawMessage, key string) (time.Time, bool) {
	raw, ok := values[storage.ExpiryPrefix+key]
	if !ok {
		return time.Time{}, false
	}
	ms, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return time.Time{}, true // unreadable: treated as ended
	}
	return time.UnixMilli(ms), true
}

// visible returns the session's keys as the API, the upstream and the
// placeholders see them: no internal name, no expired key. Without
// internal names it is values itself.
func visible(values map[string]json.RawMessage, now time.Time) map[string]json.RawMessage {
	if !hasInternal(values) {
		return values
	}
	out := make(map[string]json.RawMessage, len(values))
	for k, v := range values {
		if len(k) > 0 && k[0] == '~' {
			continue
		}
		if end, ok := expiryOf(values, k); ok && !now.Before(end) {
			continue
		}
		out[k] = v
	}
	return out
}

// expiredNames returns the stored names a write removes at now: each
// expired key with its expiry, and expiries of keys that are gone.
func expiredNames(values map[string]json.RawMessage, now time.Time) []string {
	var names []string
	for k := range values {
		key, ok := strings.CutPrefix(k, storage.ExpiryPrefix)
		if !ok {
			continue
		}
		end, _ := expiryOf(values, key)
		_, present := values[key]
		switch {
		case !present:
			names = append(names, k)
		case !now.Before(end):
			names = append(names, k, key)
		}
	}
	return names
}

// flashOf returns the flash keys stored in values.
func flashOf(values map[string]json.RawMessage) map[string]json.RawMessage {
	var out map[string]json.RawMessage
	for k, v := range values {
		if key, ok := strings.CutPrefix(k, storage.FlashPrefix); ok {
			if out == nil {
				out = make(map[string]json.RawMessage)
			}
			out[key] = v
		}
	}
	return out
}

// withInternal returns the patch a write sends to the store: patch, plus
// the removal of the expired keys the request saw. (A key's own end goes
// with any write of the key: storage.Apply.) patch itself is not
// modified.
func withInternal(s *session, patch map[string]json.RawMessage, now time.Time) map[string]json.RawMessage {
	names := expiredNames(s.values, now)
	if len(names) == 0 {
		return patch
	}
	out := make(map[string]json.RawMessage, len(patch)+len(names))
	for _, name := range names {
		out[name] = nil
	}
	for k, v := range patch {
		out[k] = v // the write wins over the removal of an ended value
	}
	return out
}

// settle removes the expired keys a request sees and, when take is set
// (a request that reaches the upstream), takes the flash keys, in one
// write conditional on the version the request read: of concurrent
// requests, only one takes a flash value. A lost race delivers nothing
// and leaves the rest to a later request.
func (h *Handler) settle(ctx context.Context, s *session, now time.Time, take bool) {
	if !s.exists() || !hasInternal(s.values) {
		return
	}
	patch := map[string]json.RawMessage{}
	for _, name := range expiredNames(s.values, now) {
		patch[name] = nil
	}
	var flash map[string]json.RawMessage
	if take {
		flash = flashOf(s.values)
		for k := range flash {
			patch[storage.FlashPrefix+k] = nil
		}
	}
	if len(patch) == 0 {
		return
	}
	saved := s.cond
	s.cond = &condition{mustExist: true, check: true, version: s.version}
	err := h.merge(ctx, s, patch, now)
	s.cond = saved
	switch {
	case err == nil:
		s.flash, s.headers = flash, nil
	case isPrecondition(err), errors.Is(err, errRotatedAway):
		// Another request wrote first (and may have taken the flash).
	default:
		h.logger.Error("could not remove expired session keys or take flash keys; a later request tries again",
			zap.String("store", h.storeName), zap.Error(err))
	}
}

// flashPatch reads an X-Session-Flash value into the write that stores
// its keys as flash keys.
func flashPatch(value string) (map[string]json.RawMessage, error) {
	p, err := ParsePatch([]byte(value))
	if err != nil {
		return nil, err
	}
	out := make(map[string]json.RawMessage, len(p))
	for k, v := range p {
		if !storage.ValidKey(k) {
			return nil, &storage.KeyError{Key: k}
		}
		out[storage.FlashPrefix+k] = v
	}
	return out, nil
}

// expirePatch reads X-Session-Expire values ("promo=3600, token=900")
// into the write that sets (or, for 0, clears) those keys' ends, for the
// keys the session holds.
func expirePatch(values []string, s *session, now time.Time) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	held := visible(s.values, now) // an ended key stays ended: no expiry brings it back
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			k, n, ok := strings.Cut(part, "=")
			k, n = strings.TrimSpace(k), strings.TrimSpace(n)
			secs, err := strconv.ParseInt(n, 10, 64)
			switch {
			case !ok || !storage.ValidKey(k):
				return nil, fmt.Errorf("%q: want key=seconds, such as promo=3600", part)
			case err != nil || secs < 0 || secs > int64(100*365*24*time.Hour/time.Second):
				return nil, fmt.Errorf("%q: the seconds must be a whole number, 0 (no end) or more", part)
			}
			if _, ok := held[k]; !ok {
				continue // nothing to end
			}
			if secs == 0 {
				out[storage.ExpiryPrefix+k] = nil
			} else {
				out[storage.ExpiryPrefix+k] = json.RawMessage(strconv.FormatInt(now.Add(time.Duration(secs)*time.Second).UnixMilli(), 10))
			}
		}
	}
	return out, nil
}
