package redis

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// Hash field names; see scripts.go for the layout.
const (
	fieldCreated  = "created"
	fieldDeadline = "deadline"
	fieldExpires  = "expires"
	fieldRotated  = "rotated"
	fieldAudience = "aud"
	fieldNew      = "new"
	fieldVersion  = "ver"
	valuePrefix   = "v:"
)

// nanos renders t as the decimal unix nanoseconds the hash stores.
func nanos(t time.Time) string {
	return strconv.FormatInt(t.UnixNano(), 10)
}

// parseNanos reads a time written by nanos.
func parseNanos(s string) (time.Time, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, n), true
}

// decodeHash builds a Record from a session hash (HGETALL). It reports
// false for anything that is not a whole session: an absent key, a
// tombstone left by Rotate, or a hash with broken metadata (written by
// something else under our prefix), all of which read as no session.
func decodeHash(h map[string]string) (*storage.Record, bool) {
	if len(h) == 0 {
		return nil, false
	}
	if _, moved := h[fieldRotated]; moved {
		return nil, false
	}
	rec := &storage.Record{
		Values:   make(map[string]json.RawMessage, max(len(h)-3, 0)),
		Audience: h[fieldAudience],
	}
	_, rec.New = h[fieldNew]
	if v, ok := h[fieldVersion]; ok {
		rec.Version, _ = strconv.ParseUint(v, 10, 64)
	}
	var ok [3]bool
	rec.Created, ok[0] = parseNanos(h[fieldCreated])
	rec.Deadline, ok[1] = parseNanos(h[fieldDeadline])
	rec.Expires, ok[2] = parseNanos(h[fieldExpires])
	if !ok[0] || !ok[1] || !ok[2] {
		return nil, false
	}
	for f, v := range h {
		if name, isValue := strings.CutPrefix(f, valuePrefix); isValue {
			rec.Values[name] = json.RawMessage(v)
		}
	}
	return rec, true
}

// decodeMerge builds a Record from mergeScript's "ok" (or "version")
// reply: created, deadline, expires, audience, "1" when New, the version,
// then name/value pairs.
func decodeMerge(res []any) (*storage.Record, error) {
	const head = 7
	if len(res) < head || (len(res)-head)%2 != 0 {
		return nil, fmt.Errorf("malformed reply of %d items", len(res))
	}
	var times [3]time.Time
	for i := range times {
		s, _ := res[i+1].(string)
		t, ok := parseNanos(s)
		if !ok {
			return nil, fmt.Errorf("malformed time %q", s)
		}
		times[i] = t
	}
	aud, _ := res[4].(string)
	isNew, _ := res[5].(string)
	ver, _ := res[6].(string)
	version, err := strconv.ParseUint(ver, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("malformed version %q", ver)
	}
	rec := &storage.Record{
		Values:   make(map[string]json.RawMessage, (len(res)-head)/2),
		Created:  times[0],
		Deadline: times[1],
		Expires:  times[2],
		Audience: aud,
		New:      isNew == "1",
		Version:  version,
	}
	for i := head; i < len(res); i += 2 {
		name, _ := res[i].(string)
		value, _ := res[i+1].(string)
		rec.Values[name] = json.RawMessage(value)
	}
	return rec, nil
}

// refusal turns mergeScript's refusal replies into the errors storage.Apply
// returns for the same merge, so that callers need not know the store.
func refusal(res []any) error {
	str := func(i int) string {
		if i < len(res) {
			s, _ := res[i].(string)
			return s
		}
		return ""
	}
	num := func(i int) int {
		if i < len(res) {
			n, _ := res[i].(int64)
			return int(n)
		}
		return 0
	}
	switch str(0) {
	case "notfound":
		return storage.ErrNotFound
	case "exists":
		return storage.ErrExists
	case "rotated":
		return storage.ErrRotated
	case "version":
		cur, err := decodeMerge(res)
		if err != nil {
			return fmt.Errorf("unexpected reply: %v", err)
		}
		return &storage.VersionError{Current: cur}
	case "collision":
		return &storage.KeyError{Key: str(1), Other: str(2)}
	case "limit":
		return &storage.LimitError{What: str(1), Limit: num(2), Got: num(3)}
	}
	return fmt.Errorf("unexpected reply %q", str(0))
}
