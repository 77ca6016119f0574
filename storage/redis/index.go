package redis

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-session/caddy-session/storage"
)

// The index (storage.Indexer) finds the sessions that hold one value of an
// indexed name without scanning: one sorted set per value, under
//
//	<prefix>index:<hex of SHA-256(name, canonical value), 32 digits>
//
// whose members are the store keys of sessions that were given that value,
// each scored with its session's deadline in Unix milliseconds. The value
// is hashed so that a key listing shows no customer ID; the members are
// store keys, hashes of session IDs, so the set yields no usable cookie.
//
// Values are compared as JSON values, not as text: the set's name comes
// from the value's canonical form (storage.IndexValue), so every encoding
// of one value, PHP's "gid:\/\/shopify\/Customer\/7001" or
// "gid://shopify/Customer/7001", "M\u00fcller" or "Müller", 1e2 or 100,
// lands in the same set, while "42" and 42 do not. The session keeps the
// text it was given.
//
// The set is a superset, checked on use, and one set serves every
// audience: DeleteByValue reads each member's value and audience (one
// pipelined HMGET per page of members), compares the canonical form of
// the value in Go, and deletes each match with a script that deletes the
// session only if, at that moment and atomically, it still holds the very
// text that was read and compared (and the same audience, and is not a
// tombstone). A session whose value was rewritten between the read and
// the delete is left alone, as any session written concurrently may be.
// So the index need not be told when a session changes value, is deleted
// or expires; a member whose deadline has passed is pruned on the next
// write to its set, and the set itself expires with its last session's
// deadline. It stays small: at most one member per session given the value
// within one max_age.
//
// Sets written before values were canonicalised are named after the
// value's text as it was written; DeleteByValue also reads the set named
// after the text it is given, so what it found before still finds.
//
// It is written on the two writes that can give a session the value:
//   - Merge with a patch that sets an indexed name: the member is added
//     before the session is written (one round trip more, on those writes
//     only), so a session never holds the value without being indexed. If
//     the write then fails, the extra member is harmless.
//   - Rotate: the session's new key is added after the move (two round
//     trips more, only when something is indexed). If that fails, Rotate
//     reports the store unavailable and the handler keeps the old cookie,
//     whose session is gone: the user signs in again.
//
// Each step touches one key, so all of it works in a Cluster too.

// indexInfix separates index keys from session keys under the prefix.
const indexInfix = "index:"

// indexFallbackLife bounds the set entry of a Merge whose options carry no
// deadline (the handler always passes one).
const indexFallbackLife = 24 * time.Hour

// indexNames counts the configurations that index each name.
type indexNames struct {
	mu    sync.Mutex
	refs  map[string]int
	names atomic.Pointer[[]string] // published list; nil when empty
}

func (x *indexNames) list() []string {
	if p := x.names.Load(); p != nil {
		return *p
	}
	return nil
}

func (x *indexNames) has(name string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.refs[name] > 0
}

func (x *indexNames) add(name string, delta int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.refs == nil {
		x.refs = make(map[string]int)
	}
	x.refs[name] += delta
	if x.refs[name] <= 0 {
		delete(x.refs, name)
	}
	if len(x.refs) == 0 {
		x.names.Store(nil)
		return
	}
	list := make([]string, 0, len(x.refs))
	for n := range x.refs {
		list = append(list, n)
	}
	x.names.Store(&list)
}

// Index starts indexing sessions by their value of name (storage.Indexer).
// It only changes what later writes do: nothing is sent to Redis. Sessions
// that were given the value before any configuration indexed name are not
// found by DeleteByValue; configure index_key before relying on it.
func (s *Store) Index(name string) (release func()) {
	s.idx.add(name, 1)
	var once sync.Once
	return func() { once.Do(func() { s.idx.add(name, -1) }) }
}

// indexKey returns the sorted set of one value of one name; value is in
// storage.IndexValue's canonical form (or, for the sets of earlier
// versions, the text a session was given).
func (s *Store) indexKey(name string, value []byte) string {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write(value)
	var sum [sha256.Size]byte
	return s.prefix + indexInfix + hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// isIndexKey reports whether a key under the prefix is an index set.
func (s *Store) isIndexKey(key string) bool {
	p := s.prefix + indexInfix
	return len(key) >= len(p) && key[:len(p)] == p
}

// indexScript adds a member to an index set with its deadline, keeping the
// later deadline when it is there already, prunes members whose deadline
// has passed and makes the set expire with its latest deadline.
//
//	KEYS[1]  the set
//	ARGV[1]  the member (a store key)
//	ARGV[2]  its deadline, Unix ms
//	ARGV[3]  now, Unix ms
var indexScript = goredis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur or tonumber(cur) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', tonumber(top[2]))) end
return 1
`)

// deleteIfScript deletes the session at KEYS[1] if it still holds the text
// ARGV[2] in its field ARGV[1] ("v:<name>"), has the audience ARGV[3] (""
// for none) and is not a tombstone: the text and audience that
// DeleteByValue read and matched. It returns 1 when it deleted it.
var deleteIfScript = goredis.NewScript(`
local m = redis.call('HMGET', KEYS[1], ARGV[1], 'rotated', 'created', 'aud')
if m[1] == ARGV[2] and not m[2] and m[3] and (m[4] or '') == ARGV[3] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`)

// addToIndex records key as holding value (the JSON text a session is
// given) under name until deadline, in the set of value's canonical form.
// A value that is not JSON is not indexed: no DeleteByValue can match it.
func (s *Store) addToIndex(ctx context.Context, name string, value []byte, key string, deadline time.Time) error {
	canon, err := storage.IndexValue(value)
	if err != nil {
		return nil
	}
	err = indexScript.Run(ctx, s.client, []string{s.indexKey(name, canon)},
		key, strconv.FormatInt(deadline.UnixMilli(), 10), strconv.FormatInt(time.Now().UnixMilli(), 10)).Err()
	if err != nil {
		return unavailable("index", err)
	}
	return nil
}

// indexBeforeMerge adds key to the index sets of the indexed names patch
// sets, before the merge writes them. It returns whether it left anything
// for indexAfterMerge (a patch whose options carry no deadline).
func (s *Store) indexBeforeMerge(ctx context.Context, key string, patch map[string]json.RawMessage, opts storage.MergeOptions) (later bool, err error) {
	for _, name := range s.idx.list() {
		v, ok := patch[name]
		if !ok || storage.IsNull(v) {
			continue
		}
		if opts.Deadline.IsZero() {
			later = true
			continue
		}
		if err := s.addToIndex(ctx, name, v, key, opts.Deadline); err != nil {
			return false, err
		}
	}
	return later, nil
}

// indexAfterMerge indexes a merged session whose deadline was not known
// before the merge. A failure here is reported although the write
// happened; callers that pass MergeOptions.Deadline never get one.
func (s *Store) indexAfterMerge(ctx context.Context, key string, patch map[string]json.RawMessage, rec *storage.Record) error {
	for _, name := range s.idx.list() {
		v, ok := patch[name]
		if !ok || storage.IsNull(v) {
			continue
		}
		deadline := rec.Deadline
		if deadline.IsZero() {
			deadline = time.Now().Add(indexFallbackLife)
		}
		if err := s.addToIndex(ctx, name, v, key, deadline); err != nil {
			return err
		}
	}
	return nil
}

// indexValues indexes every indexed name rec holds until rec's deadline:
// after a merge that moved the deadline (MergeOptions.SetDeadline), so
// that no index entry ends before its session. Entries only ever grow
// longer, so a deadline moved earlier leaves them as they are.
func (s *Store) indexValues(ctx context.Context, key string, rec *storage.Record) error {
	for _, name := range s.idx.list() {
		if v, ok := rec.Values[name]; ok && !storage.IsNull(v) {
			if err := s.addToIndex(ctx, name, v, key, rec.Deadline); err != nil {
				return err
			}
		}
	}
	return nil
}

// indexAfterRotate indexes a session under its new key. On failure it
// removes the new key (best effort) and reports the store unavailable: the
// caller keeps the old cookie, whose session is gone, so no session lives
// on unindexed.
func (s *Store) indexAfterRotate(ctx context.Context, newKey string) error {
	names := s.idx.list()
	if names == nil {
		return nil
	}
	fields := make([]string, 0, len(names)+1)
	fields = append(fields, fieldDeadline)
	for _, n := range names {
		fields = append(fields, valuePrefix+n)
	}
	vals, err := s.client.HMGet(ctx, s.prefix+newKey, fields...).Result()
	if err == nil {
		d, _ := vals[0].(string)
		deadline, ok := parseNanos(d)
		if !ok {
			deadline = time.Now().Add(indexFallbackLife)
		}
		for i, n := range names {
			if v, ok := vals[i+1].(string); ok {
				if err = s.addToIndex(ctx, n, []byte(v), newKey, deadline); err != nil {
					break
				}
			}
		}
	}
	if err != nil {
		_ = s.client.Del(context.WithoutCancel(ctx), s.prefix+newKey).Err()
		if !errors.Is(err, storage.ErrUnavailable) {
			err = unavailable("rotate: index", err)
		}
		return err
	}
	return nil
}

// DeleteByValue deletes every live session whose value of name equals
// value as a JSON value (storage.IndexValue) and, when audience is not
// empty, whose audience is audience; it returns how many it deleted per
// audience (storage.Indexer). It reads the value's index set (ZSCAN, 200
// members a page) and, per page, reads the members' value and audience
// in one pipeline and deletes the matches with deleteIfScript in another;
// deleted members leave the set. Members whose session no longer holds
// the value stay until their deadline prunes them: one may be a session
// being written right now, indexed just before its write.
func (s *Store) DeleteByValue(ctx context.Context, name string, value json.RawMessage, audience string) (map[string]int, error) {
	if !s.idx.has(name) {
		return nil, fmt.Errorf("redis store: %w: %q", storage.ErrNotIndexed, name)
	}
	want, err := storage.IndexValue(value)
	if err != nil {
		return nil, fmt.Errorf("redis store: delete by value: %w", err)
	}
	sets := []string{s.indexKey(name, want)}
	if !bytes.Equal(want, value) {
		sets = append(sets, s.indexKey(name, value)) // an earlier version's set
	}
	m := matcher{field: valuePrefix + name, value: want, audience: audience}
	deleted := make(map[string]int)
	now := time.Now().UnixMilli()
	for _, zkey := range sets {
		var cursor uint64
		for {
			page, next, err := s.client.ZScan(ctx, zkey, cursor, "", 200).Result()
			if err != nil {
				return deleted, unavailable("index scan", err)
			}
			var members []string
			for i := 0; i+1 < len(page); i += 2 {
				score, err := strconv.ParseFloat(page[i+1], 64)
				if err == nil && int64(score) <= now {
					continue // past its deadline: no live session
				}
				members = append(members, page[i])
			}
			if err := s.deleteMembers(ctx, zkey, m, members, deleted); err != nil {
				return deleted, err
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return deleted, nil
}

// matcher is what DeleteByValue looks for.
type matcher struct {
	field    string          // "v:<name>"
	value    json.RawMessage // in storage.IndexValue form
	audience string          // "" for any
}

// holds reports whether a session's stored text and audience match.
func (m matcher) holds(text, audience string) bool {
	if m.audience != "" && audience != m.audience {
		return false
	}
	if text == string(m.value) {
		return true // already canonical: most values the handler writes
	}
	c, err := storage.IndexValue([]byte(text))
	return err == nil && bytes.Equal(c, m.value)
}

// deleteMembers reads each member's session (pipelined HMGETs), and runs
// deleteIfScript, pipelined, on those that hold the value; it adds what it
// deleted to deleted, by audience, and removes those members from the set.
func (s *Store) deleteMembers(ctx context.Context, zkey string, m matcher, members []string, deleted map[string]int) error {
	if len(members) == 0 {
		return nil
	}
	pipe := s.client.Pipeline()
	reads := make([]*goredis.SliceCmd, len(members))
	for i, mem := range members {
		reads[i] = pipe.HMGet(ctx, s.prefix+mem, m.field, fieldAudience, fieldRotated, fieldCreated)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return unavailable("delete by value: read", err)
	}
	type match struct{ member, text, audience string }
	var matches []match
	for i, r := range reads {
		v := r.Val()
		if len(v) != 4 || v[2] != nil || v[3] == nil {
			continue // gone, or a tombstone
		}
		text, ok := v[0].(string)
		if !ok {
			continue // no longer holds the name
		}
		aud, _ := v[1].(string)
		if m.holds(text, aud) {
			matches = append(matches, match{members[i], text, aud})
		}
	}
	if len(matches) == 0 {
		return nil
	}
	pipe = s.client.Pipeline()
	cmds := make([]*goredis.Cmd, len(matches))
	for i, x := range matches {
		// EVAL, not EVALSHA: a pipeline cannot fall back on NOSCRIPT, and
		// this is an operator's occasional call.
		cmds[i] = deleteIfScript.Eval(ctx, pipe, []string{s.prefix + x.member}, m.field, x.text, x.audience)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		if s.cache != nil {
			s.cache.flush() // some of them may be gone
		}
		return unavailable("delete by value", err)
	}
	var gone []any
	for i, c := range cmds {
		if n, _ := c.Int(); n == 1 {
			gone = append(gone, matches[i].member)
			deleted[matches[i].audience]++
			s.evict(matches[i].member)
		}
	}
	if len(gone) > 0 {
		if err := s.client.ZRem(ctx, zkey, gone...).Err(); err != nil {
			return unavailable("index remove", err)
		}
	}
	return nil
}

var (
	_ storage.Indexer = (*Store)(nil)
	_ storage.Counter = (*Store)(nil)
)
