package storage

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Limits bound a session. Zero means the default.
type Limits struct {
	// MaxKeys is the most keys a session may hold (default 64).
	MaxKeys int

	// MaxSize is the most bytes the session's values may take, counted as
	// the length of the JSON object that holds them (default 64 KiB).
	MaxSize int
}

// Default limits.
const (
	DefaultMaxKeys = 64
	DefaultMaxSize = 64 << 10
)

func (l Limits) maxKeys() int {
	if l.MaxKeys > 0 {
		return l.MaxKeys
	}
	return DefaultMaxKeys
}

func (l Limits) maxSize() int {
	if l.MaxSize > 0 {
		return l.MaxSize
	}
	return DefaultMaxSize
}

// KeyError reports a key that breaks the key rules: bad syntax, or two keys
// whose header names would be equal.
type KeyError struct {
	Key   string
	Other string // the existing key it collides with, if any
}

func (e *KeyError) Error() string {
	if e.Other != "" {
		return fmt.Sprintf("session key %q collides with key %q: both would be forwarded as header %s; use one spelling",
			e.Key, e.Other, HeaderName(e.Key))
	}
	return fmt.Sprintf("invalid session key %q: a key is 1 to 64 characters, a letter first, then letters, digits, '-' or '_'", e.Key)
}

// LimitError reports a merge that would take a session past its Limits.
type LimitError struct {
	What  string // "keys" or "size"
	Limit int
	Got   int
}

func (e *LimitError) Error() string {
	if e.What == "keys" {
		return fmt.Sprintf("session would hold %d keys, over the limit of %d (max_keys); delete keys first", e.Got, e.Limit)
	}
	return fmt.Sprintf("session would take %d bytes, over the limit of %d (max_size); store less", e.Got, e.Limit)
}

// ValidKey reports whether k is a valid session key: 1 to 64 characters, a
// letter first, then letters, digits, '-' or '_'.
func ValidKey(k string) bool {
	if len(k) == 0 || len(k) > 64 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '-' || c == '_'):
		default:
			return false
		}
	}
	return true
}

// The prefixes of the internal names the handler stores next to a
// session's keys: a flash value (FlashPrefix + key) and the end of a
// key's value (ExpiryPrefix + key, Unix milliseconds). No session key can
// start with '~', so they never meet one; a store keeps and merges them
// like any other name.
const (
	FlashPrefix  = "~f~"
	ExpiryPrefix = "~x~"
)

// ValidStoredKey reports whether k may be a name in a stored session: a
// valid session key, or an internal name (FlashPrefix or ExpiryPrefix and
// a valid key).
func ValidStoredKey(k string) bool {
	if ValidKey(k) {
		return true
	}
	if rest, ok := strings.CutPrefix(k, FlashPrefix); ok {
		return ValidKey(rest)
	}
	if rest, ok := strings.CutPrefix(k, ExpiryPrefix); ok {
		return ValidKey(rest)
	}
	return false
}

// HeaderKey returns the form two keys share when their forwarded headers
// would be equal: lower case, with '_' read as '-'.
func HeaderKey(k string) string {
	b := []byte(k)
	for i, c := range b {
		switch {
		case 'A' <= c && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case c == '_':
			b[i] = '-'
		}
	}
	return string(b)
}

// HeaderName returns the request header a key is forwarded as:
// X-Session-<Key> with '_' turned into '-'.
func HeaderName(k string) string {
	return "X-Session-" + strings.ReplaceAll(k, "_", "-")
}

// Apply returns current with patch merged in: each name in patch replaces
// the current value, a nil or JSON null value deletes it. current is not
// modified. Writing a session key also removes its end (ExpiryPrefix +
// key), unless the patch sets that end itself. Apply checks every patch
// key, header-name collisions with the
// keys that remain, and limits; it returns a *KeyError or *LimitError when
// the merge must be refused.
func Apply(current, patch map[string]json.RawMessage, limits Limits) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(current)+len(patch))
	for k, v := range current {
		out[k] = v
	}
	for k, v := range patch {
		if !ValidStoredKey(k) {
			return nil, &KeyError{Key: k}
		}
		if IsNull(v) {
			delete(out, k)
		} else {
			out[k] = v
		}
		// An end belongs to the value it was set for: writing the key
		// (or deleting it) ends its end too, unless the patch sets that.
		if ValidKey(k) {
			if _, ok := patch[ExpiryPrefix+k]; !ok {
				delete(out, ExpiryPrefix+k)
			}
		}
	}
	// Collisions: two remaining keys with one header name. Only patch keys
	// can introduce one, since current was valid.
	if len(patch) > 0 {
		seen := make(map[string]string, len(out))
		for k := range out {
			seen[HeaderKey(k)] = k
		}
		for k, v := range patch {
			if IsNull(v) {
				continue
			}
			if other := seen[HeaderKey(k)]; other != k {
				return nil, &KeyError{Key: k, Other: other}
			}
		}
		// Equal header keys collapse in seen, so a count mismatch means a
		// collision between two current keys or two patch keys.
		if len(seen) != len(out) {
			for k := range patch {
				for o := range out {
					if o != k && HeaderKey(o) == HeaderKey(k) {
						return nil, &KeyError{Key: k, Other: o}
					}
				}
			}
		}
	}
	if n, max := len(out), limits.maxKeys(); n > max {
		return nil, &LimitError{What: "keys", Limit: max, Got: n}
	}
	if n, max := Size(out), limits.maxSize(); n > max {
		return nil, &LimitError{What: "size", Limit: max, Got: n}
	}
	return out, nil
}

// Size returns the length in bytes of values encoded as one JSON object.
func Size(values map[string]json.RawMessage) int {
	n := 2 // {}
	for k, v := range values {
		n += len(k) + 3 + len(v) + 1 // "k":v,
	}
	if len(values) > 0 {
		n-- // no comma after the last
	}
	return n
}

// IsNull reports whether v is absent or the JSON null.
func IsNull(v json.RawMessage) bool {
	return len(v) == 0 || string(v) == "null"
}
