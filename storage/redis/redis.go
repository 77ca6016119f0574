// Package redis is a storage.Store on Redis or Valkey (standalone,
// Sentinel or Cluster), for several Caddy instances that share sessions.
// Each session is one hash under Config.KeyPrefix plus its store key, its
// values and times in fields, with a TTL at its expiry; a read is one
// round trip (HGETALL), and every write one Lua script (scripts.go) that
// checks, writes and sets the TTL atomically. A local read cache, kept
// honest by Redis's client tracking, spares the round trip of rereading an
// unchanged session (see localCache). The package is plain Go, with no
// Caddy import; the Caddy module wraps a Config and New.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-session/caddy-session/storage"
)

// tombstoneTTL is how long a record that Rotate moved away stays behind as
// a tombstone (never past the session's own expiry): storage.RotationGrace,
// during which Load and Merge of the old key answer storage.ErrRotated.
// It also lets a retried Rotate (go-redis retries once a command whose
// reply timed out) recognise its own earlier success.
const tombstoneTTL = storage.RotationGrace

// Store keeps sessions in Redis. It is safe for concurrent use. Create it
// with New and release it with Close.
type Store struct {
	client goredis.UniversalClient
	prefix string

	// split is true when a session's old and new keys may live on
	// different Cluster nodes, so that Rotate cannot be one script.
	split bool

	idx indexNames // the names indexed for DeleteByValue (index.go)

	// cache and track are the local read cache and its invalidation
	// tracker (cache.go, tracking.go); both nil when it is off.
	cache *localCache
	track *tracker
}

// New returns a Store for cfg. It checks cfg but does not connect: the
// first call does, so that a configuration can be validated (and Caddy
// provisioned) while Redis is down.
func New(cfg Config) (*Store, error) {
	client, err := cfg.client()
	if err != nil {
		return nil, err
	}
	prefix := cfg.prefix()
	s := &Store{
		client: client,
		prefix: prefix,
		split:  cfg.clusterMode() && !hasHashTag(prefix),
	}
	if size := cfg.localCacheSize(); size > 0 {
		opts, err := cfg.standaloneOptions()
		if err != nil {
			client.Close()
			return nil, err
		}
		s.cache = newLocalCache(size)
		s.track = newTracker(s.cache, opts, prefix, cfg.Log)
	}
	return s, nil
}

// Close closes the connections to Redis and stops the cache's tracker. The
// Store is unusable afterwards.
func (s *Store) Close() error {
	var err error
	if s.track != nil {
		err = s.track.close()
	}
	return errors.Join(s.client.Close(), err)
}

// Load returns the live session under key, or storage.ErrNotFound. With
// the local cache on, a session read before and not changed since comes
// from memory (see localCache for when that is). The record and its
// Values map are the caller's to change; the bytes of the values are
// shared with the cache and must not be changed in place (no caller does:
// the handler and storage.Apply replace values, and storetest asks the
// same of every store).
func (s *Store) Load(ctx context.Context, key string) (*storage.Record, error) {
	var ticket cacheTicket
	cached := false
	if s.cache != nil {
		s.track.start() // here, not in New: New must not connect
		now := time.Now()
		if rec := s.cache.get(key, now); rec != nil {
			return rec, nil
		}
		ticket, cached = s.cache.begin(key, now)
	}
	h, err := s.client.HGetAll(ctx, s.prefix+key).Result()
	if err != nil {
		return nil, unavailable("load", err)
	}
	// Redis drops the key at its expiry, but the clocks of Redis and of
	// this host may differ: the record's own times decide.
	if h[fieldRotated] != "" {
		return nil, storage.ErrRotated
	}
	rec, ok := decodeHash(h)
	if !ok || !rec.Live(time.Now()) {
		return nil, storage.ErrNotFound
	}
	if cached {
		s.cache.put(ticket, key, rec) // the cache keeps rec
		return copyRecord(rec), nil
	}
	return rec, nil
}

// evict drops keys from the local cache after a write through this store,
// so that its next Load reads the write even before Redis's invalidation
// arrives. Writes call it however they end: a failed write may still have
// happened.
func (s *Store) evict(keys ...string) {
	if s.cache == nil {
		return
	}
	for _, k := range keys {
		s.cache.evict(k)
	}
}

// Merge applies patch to the session under key in one atomic script, with
// the checks and errors of storage.Apply, and returns the result.
//
// A session it creates gets opts.Audience, and is New when opts.NewTTL is
// positive: its expiry, and so its key's TTL, is then at most Created +
// NewTTL (opts.ExpiresOf). A merge into a New session keeps it New and
// within that end, unless opts.Confirm confirms it; a merge never changes
// the audience of a session.
func (s *Store) Merge(ctx context.Context, key string, patch map[string]json.RawMessage, opts storage.MergeOptions) (*storage.Record, error) {
	// Bad names are refused before any round trip, as Apply would.
	for name := range patch {
		if !storage.ValidStoredKey(name) {
			return nil, &storage.KeyError{Key: name}
		}
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if opts.Create && opts.Deadline.IsZero() && opts.SetDeadline.IsZero() {
		return nil, errors.New("redis store: merge: MergeOptions.Deadline is required to create a session")
	}
	defer s.evict(key)
	idle := ""
	if opts.IdleTimeout > 0 {
		idle = nanos(now.Add(opts.IdleTimeout))
	}
	create := "0"
	switch {
	case opts.Create && opts.Exclusive:
		create = "2"
	case opts.Create:
		create = "1"
	}
	maxKeys, maxSize := opts.Limits.MaxKeys, opts.Limits.MaxSize
	if maxKeys <= 0 {
		maxKeys = storage.DefaultMaxKeys
	}
	if maxSize <= 0 {
		maxSize = storage.DefaultMaxSize
	}
	newTTL := ""
	if opts.NewTTL > 0 {
		newTTL = strconv.FormatInt(int64(opts.NewTTL), 10)
	}
	confirm := "0"
	if opts.Confirm {
		confirm = "1"
	}
	setDeadline := ""
	if !opts.SetDeadline.IsZero() {
		setDeadline = nanos(opts.SetDeadline)
	}
	ifVersion := ""
	if opts.CheckVersion {
		ifVersion = strconv.FormatUint(opts.IfVersion, 10)
	}
	args := make([]any, 0, 12+2*len(patch))
	args = append(args, create, nanos(now), nanos(opts.Deadline), idle,
		strconv.Itoa(maxKeys), strconv.Itoa(maxSize), opts.Audience, newTTL, confirm, setDeadline,
		strconv.FormatUint(opts.Version, 10), ifVersion)
	for name, v := range patch {
		if storage.IsNull(v) {
			args = append(args, name, "")
		} else {
			args = append(args, name, []byte(v))
		}
	}

	indexLater, err := s.indexBeforeMerge(ctx, key, patch, opts)
	if err != nil {
		return nil, err
	}
	res, err := mergeScript.Run(ctx, s.client, []string{s.prefix + key}, args...).Slice()
	if err != nil {
		return nil, unavailable("merge", err)
	}
	if len(res) == 0 {
		return nil, unavailable("merge", errors.New("empty reply"))
	}
	if status, _ := res[0].(string); status != "ok" {
		err := refusal(res)
		if !isRefusal(err) {
			err = unavailable("merge", err)
		}
		return nil, err
	}
	rec, err := decodeMerge(res)
	if err != nil {
		return nil, unavailable("merge", err)
	}
	if indexLater {
		if err := s.indexAfterMerge(ctx, key, patch, rec); err != nil {
			return nil, err
		}
	}
	if !opts.SetDeadline.IsZero() {
		// The index entries of the values the session already held
		// must last as long as it now does.
		if err := s.indexValues(ctx, key, rec); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// Touch moves the expiry of the live session under key to expires (never
// past its deadline, nor, while it is New, past its new-session end)
// without rewriting its values. A missing session stays missing.
func (s *Store) Touch(ctx context.Context, key string, expires time.Time) error {
	defer s.evict(key)
	err := touchScript.Run(ctx, s.client, []string{s.prefix + key}, nanos(expires), nanos(time.Now()), "0").Err()
	if err != nil {
		return unavailable("touch", err)
	}
	return nil
}

// Confirm clears New on the live session under key and moves its expiry
// to expires, never past its deadline (storage.Confirmer): one script, one
// round trip, that writes only the expiry and removes the 'new' field, so
// the key's TTL follows the confirmed expiry. A missing session stays
// missing; a confirmed one only has its expiry moved, as by Touch. Like
// every write, it evicts the key from the local read cache.
func (s *Store) Confirm(ctx context.Context, key string, expires time.Time) error {
	defer s.evict(key)
	err := touchScript.Run(ctx, s.client, []string{s.prefix + key}, nanos(expires), nanos(time.Now()), "1").Err()
	if err != nil {
		return unavailable("confirm", err)
	}
	return nil
}

// Delete removes the session under key; a missing one is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	defer s.evict(key)
	if err := s.client.Del(ctx, s.prefix+key).Err(); err != nil {
		return unavailable("delete", err)
	}
	return nil
}

// DeleteVersion removes the live session under key if it is at version
// (storage.VersionedDeleter), in one script.
func (s *Store) DeleteVersion(ctx context.Context, key string, version uint64) error {
	defer s.evict(key)
	res, err := deleteVersionScript.Run(ctx, s.client, []string{s.prefix + key},
		nanos(time.Now()), strconv.FormatUint(version, 10)).Slice()
	if err != nil {
		return unavailable("delete", err)
	}
	if len(res) == 0 {
		return unavailable("delete", errors.New("empty reply"))
	}
	if status, _ := res[0].(string); status == "ok" {
		return nil
	}
	if err := refusal(res); isRefusal(err) {
		return err
	} else {
		return unavailable("delete", err)
	}
}

// Rotate moves the live session under oldKey to newKey, or returns
// storage.ErrNotFound.
//
// Standalone and Sentinel (and a Cluster whose KeyPrefix holds a hash tag)
// do it in one script, atomically. In a Cluster the two keys hash to
// different slots, usually on different nodes, and no script may touch
// both, so Rotate takes two steps, ordered so that a failure between them
// can only lose the session, never leave the old key usable: first the
// old record is turned into a tombstone (invisible to Load, Merge and
// Touch from that instant, so no in-flight request can revive it) and its
// contents returned; then they are written under newKey with their TTL in
// one script. If the second step fails, Rotate returns an error wrapping
// storage.ErrUnavailable and the session is gone: its user signs in again,
// which is the safe outcome for a rotation made at sign-in.
//
// The tombstone carries a nonce unique to the call and lives a few
// seconds: if go-redis retries a step whose reply was lost after Redis ran
// it, the retry recognises its own work instead of reporting ErrNotFound.
func (s *Store) Rotate(ctx context.Context, oldKey, newKey string) error {
	if oldKey == newKey {
		return errors.New("redis store: rotate: the new key equals the old one; derive it from a fresh session ID")
	}
	defer s.evict(oldKey, newKey)
	nonce := rand.Text()
	now := nanos(time.Now())
	ttl := strconv.FormatInt(int64(tombstoneTTL), 10)
	oldK, newK := s.prefix+oldKey, s.prefix+newKey

	if !s.split {
		status, err := rotateScript.Run(ctx, s.client, []string{oldK, newK}, now, nonce, ttl).Text()
		switch {
		case err != nil:
			return unavailable("rotate", err)
		case status == "notfound":
			return storage.ErrNotFound
		case status != "ok":
			return unavailable("rotate", fmt.Errorf("unexpected reply %q", status))
		}
		return s.indexAfterRotate(ctx, newKey)
	}

	res, err := takeScript.Run(ctx, s.client, []string{oldK}, now, nonce, ttl).Slice()
	if err != nil {
		return unavailable("rotate", err)
	}
	if len(res) == 0 {
		return unavailable("rotate", errors.New("empty reply"))
	}
	if status, _ := res[0].(string); status == "notfound" {
		return storage.ErrNotFound
	}
	fields := res[1:]
	var expires any
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i] == fieldExpires {
			expires = fields[i+1]
		}
	}
	if expires == nil {
		return unavailable("rotate", errors.New("the old record has no expiry"))
	}
	args := append([]any{expires}, fields...)
	if err := putScript.Run(ctx, s.client, []string{newK}, args...).Err(); err != nil {
		return unavailable("rotate: the session was removed from its old key but not written to the new one, so it is lost", err)
	}
	return s.indexAfterRotate(ctx, newKey)
}

// Count returns how many live sessions the store holds, New and confirmed
// (storage.Counter), by SCAN over every master (never KEYS, which blocks
// Redis): for each page of at most 1000 keys, one pipeline of HMGETs
// reads the metadata of its sessions, so the count costs two round trips
// per page and never holds Redis up. Rotation tombstones, broken hashes
// and index sets (index.go) are not counted. It is approximate: SCAN may
// count a key twice or miss one that changes during the scan.
func (s *Store) Count(ctx context.Context) (storage.Counts, error) {
	match := escapeGlob(s.prefix) + "*"
	var newN, confirmed atomic.Int64
	scan := func(ctx context.Context, c goredis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, match, countBatch).Result()
			if err != nil {
				return err
			}
			n, conf, err := s.countPage(ctx, c, keys)
			if err != nil {
				return err
			}
			newN.Add(int64(n))
			confirmed.Add(int64(conf))
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	var err error
	if cc, ok := s.client.(*goredis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			return scan(ctx, c)
		})
	} else {
		err = scan(ctx, s.client)
	}
	if err != nil {
		return storage.Counts{}, unavailable("count", err)
	}
	return storage.Counts{New: int(newN.Load()), Confirmed: int(confirmed.Load())}, nil
}

// countBatch is how many keys Count asks SCAN for at a time.
const countBatch = 1000

// countPage reads the metadata of one SCAN page's sessions, on the server
// that SCAN ran on, and counts the live ones. A key that a resharding
// moved meanwhile (its HMGET answers an error) is not counted.
func (s *Store) countPage(ctx context.Context, c goredis.Cmdable, keys []string) (isNew, confirmed int, err error) {
	pipe := c.Pipeline()
	var cmds []*goredis.SliceCmd
	for _, k := range keys {
		if !s.isIndexKey(k) {
			cmds = append(cmds, pipe.HMGet(ctx, k, fieldCreated, fieldDeadline, fieldExpires, fieldRotated, fieldNew))
		}
	}
	if len(cmds) == 0 {
		return 0, 0, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		var rerr goredis.Error
		if !errors.As(err, &rerr) {
			return 0, 0, err
		}
	}
	now := time.Now()
	for _, cmd := range cmds {
		v, err := cmd.Result()
		if err != nil || len(v) != 5 || v[0] == nil || v[3] != nil {
			continue // gone, moved, or a tombstone
		}
		d, _ := v[1].(string)
		e, _ := v[2].(string)
		deadline, ok1 := parseNanos(d)
		expires, ok2 := parseNanos(e)
		if !ok1 || !ok2 || !now.Before(deadline) || !now.Before(expires) {
			continue
		}
		if v[4] != nil {
			isNew++
		} else {
			confirmed++
		}
	}
	return isNew, confirmed, nil
}

// Ping checks that Redis answers, for health checks and a log line at
// start-up; the store itself never needs it.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// unavailable wraps a failure to reach or use Redis so that callers can
// test it with errors.Is(err, storage.ErrUnavailable) and apply their
// outage policy; the cause stays inspectable too (context.Canceled, ...).
func unavailable(op string, err error) error {
	return fmt.Errorf("redis store: %s: %w (check that Redis is up and answers within the timeouts): %w",
		op, storage.ErrUnavailable, err)
}

// isRefusal reports whether err is a verdict on the merge itself rather
// than a failure of the store.
func isRefusal(err error) bool {
	var ke *storage.KeyError
	var le *storage.LimitError
	var ve *storage.VersionError
	return errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrExists) || errors.As(err, &ke) || errors.As(err, &le) ||
		errors.As(err, &ve)
}

// hasHashTag reports whether every key under prefix hashes to one Cluster
// slot: Redis hashes only the part between the first '{' and the next '}'
// when that part is not empty.
func hasHashTag(prefix string) bool {
	_, after, ok := strings.Cut(prefix, "{")
	if !ok {
		return false
	}
	end := strings.IndexByte(after, '}')
	return end > 0
}

// escapeGlob quotes the characters SCAN's MATCH pattern treats specially,
// so that a prefix such as "app[1]:" matches only itself.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\', '^', '-':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

var (
	_ storage.Store            = (*Store)(nil)
	_ storage.Confirmer        = (*Store)(nil)
	_ storage.VersionedDeleter = (*Store)(nil)
)
