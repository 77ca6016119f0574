// Package caddystorage is a caddy-session store that keeps sessions in
// Caddy's own storage: the storage Caddy keeps its certificates in (the file
// system by default, or whichever storage module is configured, such as
// Redis, Consul or S3 plugins). Every Caddy instance that shares that storage
// shares the sessions, with no new service to run and no new dependency.
//
// It is also the worked example of a custom store: a Caddy module in the
// http.session.stores namespace that implements storage.Store, checked by
// the conformance kit (storage/storetest). See the README next to this file.
//
// Each session is one JSON record at <prefix>/<key>.json, where key is the
// store key the handler passes in (a SHA-256 of the session ID, never the
// ID). Writes take certmagic's storage lock for the session, so they are
// atomic across every instance sharing the storage.
package caddystorage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-session/caddy-session/storage"
)

// DefaultPrefix is where in Caddy's storage sessions live by default.
const DefaultPrefix = "caddy-session/sessions"

// Store keeps sessions in Caddy's configured storage (certmagic.Storage),
// one JSON record per session, so that every instance sharing that storage
// shares the sessions. Use it from the Caddyfile as `store caddy_storage`,
// or build one with New. It is safe for concurrent use, also by several
// processes sharing the storage.
type Store struct {
	// Where in Caddy's storage the session records live, as a storage key
	// prefix (folders separated by "/"). Placeholders such as {env.*} are
	// resolved. Default: caddy-session/sessions.
	Prefix string `json:"prefix,omitempty"`

	storage certmagic.Storage
	prefix  string // cleaned
	logger  *zap.Logger

	stopSweep context.CancelFunc
	swept     chan struct{} // closed when the sweeper has returned
}

// New returns a Store keeping its records in st under prefix (empty means
// DefaultPrefix). It writes nothing and starts nothing: the Caddy module
// also runs a sweeper (see Sweep), a Store made by New does not.
func New(st certmagic.Storage, prefix string) (*Store, error) {
	s := &Store{Prefix: prefix}
	if err := s.setup(st, prefix, zap.NewNop()); err != nil {
		return nil, err
	}
	return s, nil
}

// setup readies the store for use; New and Provision share it.
func (s *Store) setup(st certmagic.Storage, prefix string, logger *zap.Logger) error {
	if st == nil {
		return errors.New("caddy_storage: no certmagic.Storage given")
	}
	p, err := cleanPrefix(prefix)
	if err != nil {
		return err
	}
	s.storage, s.prefix, s.logger = st, p, logger
	return nil
}

// cleanPrefix returns prefix as a storage key prefix: no leading or
// trailing slash, no empty, "." or ".." folder.
func cleanPrefix(prefix string) (string, error) {
	if prefix == "" {
		return DefaultPrefix, nil
	}
	p := strings.Trim(prefix, "/")
	for _, dir := range strings.Split(p, "/") {
		if dir == "" || dir == "." || dir == ".." || strings.ContainsAny(dir, `\`) {
			return "", fmt.Errorf("caddy_storage prefix %q: want folder names separated by /, such as %s", prefix, DefaultPrefix)
		}
	}
	return p, nil
}

// Load returns the session stored under key. A record past its expiry is
// never returned, and is removed.
func (s *Store) Load(ctx context.Context, key string) (*storage.Record, error) {
	if err := validKey(key); err != nil {
		return nil, err
	}
	// No lock: certmagic storages replace a value whole, so the read sees
	// the old record or the new one.
	rec, present, err := s.read(ctx, key)
	if err != nil {
		return nil, err
	}
	if rec.Live(time.Now()) {
		return rec.Record, nil
	}
	if rec.rotated && rec.unexpired(time.Now()) {
		return nil, storage.ErrRotated
	}
	if present {
		// Briefly: a read must stay fast, and the sweeper removes what
		// this misses.
		cctx, cancel := context.WithTimeout(ctx, cleanupWait)
		defer cancel()
		if err := s.removeDead(cctx, key); err != nil {
			s.logger.Debug("could not remove an expired session record; the sweeper will", zap.Error(err))
		}
	}
	return nil, storage.ErrNotFound
}

// cleanupWait bounds how long Load spends removing an expired record.
const cleanupWait = 200 * time.Millisecond

// Merge applies patch to the session under key, under the session's lock;
// see storage.Store.
func (s *Store) Merge(ctx context.Context, key string, patch map[string]json.RawMessage, opts storage.MergeOptions) (*storage.Record, error) {
	if err := validKey(key); err != nil {
		return nil, err
	}
	unlock, err := s.lock(ctx, key)
	if err != nil {
		return nil, err
	}
	defer unlock()

	stored, present, err := s.read(ctx, key)
	if err != nil {
		return nil, err
	}
	var cur *session
	if stored.Live(time.Now()) {
		cur = &stored
	}
	if stored.rotated && stored.unexpired(time.Now()) {
		return nil, storage.ErrRotated
	}
	if cur == nil && !opts.Create {
		// What is left (expired or damaged) must never be revived.
		if present {
			if err := s.remove(ctx, key); err != nil {
				return nil, err
			}
		}
		return nil, storage.ErrNotFound
	}
	if cur != nil && opts.Create && opts.Exclusive {
		return nil, storage.ErrExists
	}
	if opts.CheckVersion {
		// If-Match: only the session at that version.
		if cur == nil {
			return nil, storage.ErrNotFound
		}
		if cur.Version != opts.IfVersion {
			return nil, &storage.VersionError{Current: cur.Record}
		}
	}
	next := session{Record: &storage.Record{Created: opts.Now, Deadline: opts.Deadline, Audience: opts.Audience, Version: opts.Version}}
	var current map[string]json.RawMessage
	if cur == nil {
		// A session created while the handler keeps new sessions apart
		// (new_session_ttl) is New until a request presents its cookie.
		if opts.NewTTL > 0 {
			next.New, next.newUntil = true, opts.Now.Add(opts.NewTTL)
		}
	} else {
		// A merge keeps the audience, and keeps a New session New (and
		// within its new-session end) unless it confirms it.
		current, next.Created, next.Deadline, next.Audience = cur.Values, cur.Created, cur.Deadline, cur.Audience
		next.Version = storage.NextVersion(cur.Version, patch)
		if cur.New && !opts.Confirm {
			next.New, next.newUntil = true, cur.newUntil
		}
	}
	// Apply enforces the key rules and limits; a refused merge returns
	// before anything is written.
	if next.Values, err = storage.Apply(current, patch, opts.Limits); err != nil {
		return nil, err
	}
	if !opts.SetDeadline.IsZero() {
		next.Deadline = opts.SetDeadline // X-Session-Max-Age: the session's own lifetime
	}
	next.Expires = opts.ExpiresOf(next.Created, next.Deadline, next.New)
	if next.New && next.Expires.After(next.newUntil) {
		next.Expires = next.newUntil
	}
	if err := s.write(ctx, key, next); err != nil {
		return nil, err
	}
	return next.Record, nil
}

// Touch moves the expiry of a live session, never past its deadline, nor,
// while it is New, past the end of its new-session life. It rewrites the
// record, but under the lock every writer takes and with the values read
// under it, so no concurrent Merge is lost.
func (s *Store) Touch(ctx context.Context, key string, expires time.Time) error {
	return s.moveExpiry(ctx, key, expires, false)
}

// Confirm clears New on the live session under key and moves its expiry
// to expires, never past its deadline (storage.Confirmer): the handler
// calls it once, when a request first presents a New session's cookie.
// Like Touch, it rewrites the record under the lock; a missing session
// stays missing.
func (s *Store) Confirm(ctx context.Context, key string, expires time.Time) error {
	return s.moveExpiry(ctx, key, expires, true)
}

// moveExpiry is Touch, or Confirm when confirm is true.
func (s *Store) moveExpiry(ctx context.Context, key string, expires time.Time, confirm bool) error {
	if err := validKey(key); err != nil {
		return err
	}
	unlock, err := s.lock(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()

	rec, present, err := s.read(ctx, key)
	if err != nil {
		return err
	}
	now := time.Now()
	if !rec.Live(now) {
		if present && !rec.unexpired(now) { // a tombstone stays its time
			return s.remove(ctx, key)
		}
		return nil
	}
	if expires.After(rec.Deadline) {
		expires = rec.Deadline
	}
	changed := false
	switch {
	case rec.New && confirm:
		rec.New, rec.newUntil, changed = false, time.Time{}, true
	case rec.New && expires.After(rec.newUntil):
		expires = rec.newUntil
	}
	if !changed && expires.Equal(rec.Expires) {
		return nil
	}
	rec.Expires = expires
	if !rec.Live(now) {
		return s.remove(ctx, key)
	}
	return s.write(ctx, key, rec)
}

// Delete removes the session under key, under its lock, so that no write
// that read it before can put it back.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := validKey(key); err != nil {
		return err
	}
	unlock, err := s.lock(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()
	return s.remove(ctx, key)
}

// DeleteVersion removes the live session under key if it is at version
// (storage.VersionedDeleter), under the session's lock.
func (s *Store) DeleteVersion(ctx context.Context, key string, version uint64) error {
	if err := validKey(key); err != nil {
		return err
	}
	unlock, err := s.lock(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()
	rec, _, err := s.read(ctx, key)
	now := time.Now()
	switch {
	case err != nil:
		return err
	case rec.rotated && rec.unexpired(now):
		return storage.ErrRotated
	case !rec.Live(now):
		return storage.ErrNotFound
	case rec.Version != version:
		return &storage.VersionError{Current: rec.Record}
	}
	return s.remove(ctx, key)
}

// Rotate moves the session under oldKey to newKey with both keys locked,
// replacing whatever newKey held, and removes oldKey. The record moves
// whole: its audience and New state go with it.
func (s *Store) Rotate(ctx context.Context, oldKey, newKey string) error {
	if err := validKey(oldKey); err != nil {
		return err
	}
	if err := validKey(newKey); err != nil {
		return err
	}
	unlock, err := s.lock(ctx, oldKey, newKey)
	if err != nil {
		return err
	}
	defer unlock()

	rec, present, err := s.read(ctx, oldKey)
	if err != nil {
		return err
	}
	if !rec.Live(time.Now()) {
		if present && !rec.unexpired(time.Now()) {
			if err := s.remove(ctx, oldKey); err != nil {
				return err
			}
		}
		return storage.ErrNotFound
	}
	if oldKey == newKey {
		return nil
	}
	if err := s.write(ctx, newKey, rec); err != nil {
		return err
	}
	// The old key becomes a tombstone: for storage.RotationGrace (never
	// past the session's own expiry) it answers storage.ErrRotated.
	now := time.Now()
	until := now.Add(storage.RotationGrace)
	if rec.Expires.Before(until) {
		until = rec.Expires
	}
	tomb := session{Record: &storage.Record{Values: map[string]json.RawMessage{}, Created: now, Deadline: until, Expires: until}, rotated: true}
	if err := s.write(ctx, oldKey, tomb); err != nil {
		// Undo, so that the session is not left under two keys.
		if uerr := s.storage.Delete(context.WithoutCancel(ctx), s.name(newKey)); uerr != nil {
			s.logger.Error("rotate: could not remove the new session record after failing to remove the old one",
				zap.Error(uerr))
		}
		return err
	}
	return nil
}

// name returns the storage key of the record under key.
func (s *Store) name(key string) string {
	return path.Join(s.prefix, key+".json")
}

// read returns the record under key, with a nil Record when there is none
// or it does not decode. present says whether something was stored there,
// so that a caller holding the lock can remove what is dead. Only failures
// to reach the storage are errors.
func (s *Store) read(ctx context.Context, key string) (rec session, present bool, err error) {
	data, err := s.storage.Load(ctx, s.name(key))
	if errors.Is(err, fs.ErrNotExist) {
		return session{}, false, nil
	}
	if err != nil {
		return session{}, false, unavailable("load session record", err)
	}
	rec, err = decode(data)
	if err != nil {
		s.logger.Warn("session record in Caddy's storage is damaged; treated as no session and removed",
			zap.String("storage_key", s.name(key)), zap.Error(err))
		return session{}, true, nil
	}
	return rec, true, nil
}

// write stores rec under key (the caller holds the lock).
func (s *Store) write(ctx context.Context, key string, rec session) error {
	data, err := encode(rec)
	if err != nil {
		return fmt.Errorf("caddy_storage: encode session: %w", err)
	}
	if err := s.storage.Store(ctx, s.name(key), data); err != nil {
		return unavailable("store session record", err)
	}
	return nil
}

// remove deletes the record under key (the caller holds the lock). A
// missing record is not an error.
func (s *Store) remove(ctx context.Context, key string) error {
	if err := s.storage.Delete(ctx, s.name(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return unavailable("delete session record", err)
	}
	return nil
}

// removeDead removes the record under key if, read again under the lock, it
// is still expired or damaged: a writer may have replaced it since it was
// seen.
func (s *Store) removeDead(ctx context.Context, key string) error {
	unlock, err := s.lock(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()
	rec, present, err := s.read(ctx, key)
	if err != nil || !present || rec.unexpired(time.Now()) {
		return err
	}
	return s.remove(ctx, key)
}

// keyLen is the length of a storage.Key: SHA-256 in hex.
const keyLen = 64

// validKey checks that key has the shape of a storage.Key. Only such keys
// become storage keys: nothing else (a raw session ID by mistake, a "../")
// reaches the storage. The error gives the length, never the key.
func validKey(key string) error {
	ok := len(key) == keyLen
	for i := 0; ok && i < len(key); i++ {
		c := key[i]
		ok = '0' <= c && c <= '9' || 'a' <= c && c <= 'f'
	}
	if !ok {
		return fmt.Errorf("caddy_storage: invalid key (%d characters): want the 64 lowercase hex digits of storage.Key(id), never a raw session ID", len(key))
	}
	return nil
}

// unavailable marks a storage failure, so that the handler applies its
// on_store_error policy; the cause stays for the log.
func unavailable(what string, err error) error {
	return fmt.Errorf("%w: caddy_storage: %s: %w", storage.ErrUnavailable, what, err)
}
