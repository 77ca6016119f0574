// Package file is a session store that keeps one file per session in a
// directory: sessions survive restarts, and several processes on one host
// may share the directory. It is not for several hosts: its locks are
// advisory flock(2) locks, which network filesystems do not reliably share.
//
// Layout: <dir>/<key[:2]>/<key>, where key is the store key (a SHA-256 of the
// session ID in hex; never the ID itself), so that a listing of the
// directory yields nothing a client could send back, and 256 subfolders
// keep any one folder small. Each subfolder holds a .lock file that writers
// lock, and transient .tmp-* files (see write.go).
//
// Every write replaces the whole file atomically (temporary file, fsync,
// rename, fsync of the folder), so a reader, or a process killed mid-write,
// sees the old file or the new one, never a mix. A file that fails to
// decode anyway (disk damage, a hand edit) is treated as no session,
// reported through Options.OnCorrupt, and removed.
package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// Defaults for Options.
const (
	DefaultSweepInterval = 5 * time.Minute
	DefaultTempMaxAge    = 15 * time.Minute
)

// Options configure a Store. The zero value is usable.
type Options struct {
	// SweepInterval is how often expired session files are removed
	// (default 5 minutes; negative turns the sweeper off). Expired
	// sessions are never served either way: sweeping frees disk space.
	SweepInterval time.Duration

	// TempMaxAge is the age past which the sweeper removes a temporary
	// file, which only a write interrupted by a crash leaves behind
	// (default 15 minutes; a write takes milliseconds).
	TempMaxAge time.Duration

	// OnCorrupt, if set, is called with the path of a session file that
	// cannot be decoded and the reason, just before the file is removed.
	// It may be called from several goroutines at once. The Caddy module
	// logs it; the path holds the store key, never a session ID.
	OnCorrupt func(path string, err error)

	// Now returns the current time (default time.Now), by which the store
	// decides whether a session has expired. The times a Merge writes come
	// from its MergeOptions.
	Now func() time.Time
}

// Store is a storage.Store on the filesystem. Create it with New; it is
// safe for concurrent use, also by several processes sharing dir.
type Store struct {
	dir  string
	opts Options

	// mu serializes this process's writers per subfolder before they take
	// the subfolder's file lock, which excludes other processes: a
	// goroutine waiting on a mutex costs less than one blocked in flock.
	mu [256]sync.Mutex

	cache readCache

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{} // closed when the sweeper has returned

	idx indexRefs // names DeleteByValue may search (index.go)
}

// New returns a Store keeping its files in dir, creating dir (mode 0700)
// if it does not exist, and starts its sweeper. It fails when dir cannot be
// created or written to, or is writable by every user (anyone could then
// plant a session). Call Close when done with it.
func New(dir string, opts Options) (*Store, error) {
	if dir == "" {
		return nil, errors.New("session file store: no directory given")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("session file store: directory %s: %w", dir, err)
	}
	if err := prepareDir(abs); err != nil {
		return nil, err
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = DefaultSweepInterval
	}
	if opts.TempMaxAge <= 0 {
		opts.TempMaxAge = DefaultTempMaxAge
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{dir: abs, opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	if opts.SweepInterval > 0 {
		go s.sweepEvery(opts.SweepInterval)
	} else {
		close(s.done)
	}
	return s, nil
}

// prepareDir creates dir if needed and checks that this process can write
// to it and no other user can.
func prepareDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("session file store: cannot create directory %s: %w; create it and give the Caddy user write access", dir, err)
		}
		// MkdirAll's mode passes through the umask; make it exact.
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("session file store: directory %s: %w", dir, err)
		}
	case err != nil:
		return fmt.Errorf("session file store: cannot use directory %s: %w; create it and give the Caddy user write access", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("session file store: %s is not a directory; give the file store a directory of its own", dir)
	case fi.Mode().Perm()&0o002 != 0:
		return fmt.Errorf("session file store: directory %s is writable by every user (mode %v), so anyone could plant a session; chmod 700 it", dir, fi.Mode().Perm())
	}
	probe, err := os.CreateTemp(dir, tempPrefix+"probe-*")
	if err == nil {
		name := probe.Name()
		_, err = probe.Write([]byte("probe"))
		if cerr := probe.Close(); err == nil {
			err = cerr
		}
		os.Remove(name)
	}
	if err != nil {
		return fmt.Errorf("session file store: directory %s is not writable: %w; create it and give the Caddy user write access", dir, err)
	}
	return nil
}

// Close stops the sweeper and waits for it to return. It is idempotent and
// always returns nil. The store stays usable after Close (every file
// operation still works); only the background sweeping stops.
func (s *Store) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

// Dir returns the directory the store keeps its files in, made absolute.
func (s *Store) Dir() string { return s.dir }

// Load returns the session stored under key.
func (s *Store) Load(ctx context.Context, key string) (*storage.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	// No lock: writes replace the file by rename, so the read sees a
	// whole file, old or new.
	rec, err := s.cachedRead(key, p)
	if err != nil {
		return nil, err
	}
	if rec == nil && s.rotatedAway(p) {
		return nil, storage.ErrRotated
	}
	if rec == nil || !rec.Live(s.opts.Now()) {
		return nil, storage.ErrNotFound
	}
	return rec, nil
}

// Merge applies patch to the session under key; see storage.Store.
func (s *Store) Merge(ctx context.Context, key string, patch map[string]json.RawMessage, opts storage.MergeOptions) (*storage.Record, error) {
	p, unlock, err := s.lockKey(ctx, key)
	if err != nil {
		return nil, err
	}
	defer unlock()

	cur, err := s.read(p, true)
	if err != nil {
		return nil, err
	}
	if cur.Record != nil && !cur.Live(s.opts.Now()) {
		cur = stored{}
	}
	if cur.Record == nil && s.rotatedAway(p) {
		return nil, storage.ErrRotated
	}
	if cur.Record == nil && !opts.Create {
		return nil, storage.ErrNotFound
	}
	if cur.Record != nil && opts.Create && opts.Exclusive {
		return nil, storage.ErrExists
	}
	if opts.CheckVersion {
		if cur.Record == nil {
			return nil, storage.ErrNotFound
		}
		if cur.Version != opts.IfVersion {
			return nil, &storage.VersionError{Current: cur.Record}
		}
	}
	var current map[string]json.RawMessage
	next := stored{Record: &storage.Record{Created: opts.Now, Deadline: opts.Deadline, Audience: opts.Audience, Version: opts.Version}}
	switch {
	case cur.Record == nil:
		// Created New when the handler keeps new sessions apart, whatever
		// Confirm says: no request has presented this session's cookie.
		if opts.NewTTL > 0 {
			next.New, next.newUntil = true, opts.Now.Add(opts.NewTTL)
		}
	default:
		current = cur.Values
		next.Created, next.Deadline, next.Audience = cur.Created, cur.Deadline, cur.Audience
		next.Version = storage.NextVersion(cur.Version, patch)
		if cur.New && !opts.Confirm {
			next.New, next.newUntil = true, cur.newCap()
		}
	}
	if next.Values, err = storage.Apply(current, patch, opts.Limits); err != nil {
		return nil, err
	}
	if !opts.SetDeadline.IsZero() {
		next.Deadline = opts.SetDeadline
	}
	next.Expires = opts.ExpiresOf(next.Created, next.Deadline, next.New)
	if next.New && next.Expires.After(next.newUntil) {
		next.Expires = next.newUntil
	}
	if err := s.write(p, next); err != nil {
		return nil, err
	}
	return next.Record, nil
}

// Touch moves the expiry of a live session to expires, never past its
// deadline, nor, while it is New, past the end of its new-session life. It
// rewrites the file, but with the values it read under the lock that every
// writer takes, so no concurrent Merge is lost.
func (s *Store) Touch(ctx context.Context, key string, expires time.Time) error {
	return s.moveExpiry(ctx, key, expires, false)
}

// Confirm clears New on the live session under key and moves its expiry
// to expires, never past its deadline (storage.Confirmer). Like Touch, it
// rewrites the file with the values read under the writers' lock; a
// missing session stays missing.
func (s *Store) Confirm(ctx context.Context, key string, expires time.Time) error {
	return s.moveExpiry(ctx, key, expires, true)
}

// moveExpiry is Touch, or Confirm when confirm is true.
func (s *Store) moveExpiry(ctx context.Context, key string, expires time.Time, confirm bool) error {
	p, unlock, err := s.lockKey(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()

	st, err := s.read(p, true)
	if err != nil || st.Record == nil || !st.Live(s.opts.Now()) {
		return err
	}
	if expires.After(st.Deadline) {
		expires = st.Deadline
	}
	changed := false
	switch {
	case confirm && st.New:
		st.New, st.newUntil, changed = false, time.Time{}, true
	case st.New:
		if c := st.newCap(); expires.After(c) {
			expires = c
		}
	}
	if !changed && expires.Equal(st.Expires) {
		return nil
	}
	st.Expires = expires
	if !st.Live(s.opts.Now()) {
		return s.remove(p)
	}
	return s.write(p, st)
}

// Delete removes the session under key, if any. The folder is synced, so
// the session does not come back after a power loss.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, unlock, err := s.lockKey(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()
	return s.remove(p)
}

// lockKey checks ctx, locates key's file and locks its subfolder; the
// caller calls the returned unlock.
func (s *Store) lockKey(ctx context.Context, key string) (paths, func(), error) {
	if err := ctx.Err(); err != nil {
		return paths{}, nil, err
	}
	p, err := s.path(key)
	if err != nil {
		return paths{}, nil, err
	}
	unlock, err := s.lock(p.shard)
	if err != nil {
		return paths{}, nil, err
	}
	return p, unlock, nil
}

// DeleteVersion removes the live session under key if it is at version
// (storage.VersionedDeleter), under the subfolder's lock.
func (s *Store) DeleteVersion(ctx context.Context, key string, version uint64) error {
	p, unlock, err := s.lockKey(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()
	cur, err := s.read(p, true)
	switch {
	case err != nil:
		return err
	case cur.Record == nil && s.rotatedAway(p):
		return storage.ErrRotated
	case cur.Record == nil || !cur.Live(s.opts.Now()):
		return storage.ErrNotFound
	case cur.Version != version:
		return &storage.VersionError{Current: cur.Record}
	}
	return s.remove(p)
}

// Rotate moves the session under oldKey to newKey with one rename, with
// both subfolders locked, replacing whatever newKey held. The file moves
// whole: its audience, New state and new-session end go with it.
func (s *Store) Rotate(ctx context.Context, oldKey, newKey string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	from, err := s.path(oldKey)
	if err != nil {
		return err
	}
	to, err := s.path(newKey)
	if err != nil {
		return err
	}
	unlock, err := s.lockPair(from.shard, to.shard)
	if err != nil {
		return err
	}
	defer unlock()

	st, err := s.read(from, true)
	if err != nil {
		return err
	}
	if st.Record == nil || !st.Live(s.opts.Now()) {
		return storage.ErrNotFound
	}
	if oldKey == newKey {
		return nil
	}
	if err := os.Rename(from.file, to.file); err != nil {
		return unavailable("move session file", err)
	}
	// Not synced: after a crash a rotated-away key reads as missing
	// rather than rotated, which only loses the 409 of a racing request.
	until := s.opts.Now().Add(storage.RotationGrace)
	if st.Expires.Before(until) {
		until = st.Expires
	}
	s.markRotated(from, until)
	_ = os.Remove(to.file + tombSuffix) // a session rotated back to a key it left
	if err := syncDir(to.dir); err != nil {
		return unavailable("sync folder", err)
	}
	if from.dir != to.dir {
		if err := syncDir(from.dir); err != nil {
			return unavailable("sync folder", err)
		}
	}
	return nil
}

// read returns the session in p's file, with a nil Record when there is
// none or it is corrupt (reported, and removed; locked says whether the
// caller holds the subfolder's lock). Only I/O failures are errors.
func (s *Store) read(p paths, locked bool) (stored, error) {
	data, err := os.ReadFile(p.file)
	if errors.Is(err, fs.ErrNotExist) {
		return stored{}, nil
	}
	if err != nil {
		return stored{}, unavailable("read session file", err)
	}
	st, err := decode(data)
	if err != nil {
		s.corrupt(p, data, err, locked)
		return stored{}, nil
	}
	return st, nil
}

// corrupt reports and removes a file that failed to decode. A file from a
// newer version of this store is reported but kept: it is not ours to
// delete, and a rollback may be short.
func (s *Store) corrupt(p paths, data []byte, err error, locked bool) {
	if s.opts.OnCorrupt != nil {
		s.opts.OnCorrupt(p.file, err)
	}
	if errors.Is(err, errNewerVersion) {
		return
	}
	if !locked {
		unlock, lerr := s.lock(p.shard)
		if lerr != nil {
			return
		}
		defer unlock()
		// A writer may have replaced the file since it was read.
		now, rerr := os.ReadFile(p.file)
		if rerr != nil || string(now) != string(data) {
			return
		}
	}
	os.Remove(p.file)
}

// write replaces p's file with st (the caller holds the lock).
func (s *Store) write(p paths, st stored) error {
	data, err := encode(st)
	if err != nil {
		return fmt.Errorf("session file store: encode session: %w", err)
	}
	if err := writeAtomic(p, data, st.Expires); err != nil {
		return unavailable("write session file", err)
	}
	return nil
}

// remove deletes p's file, durably (the caller holds the lock).
func (s *Store) remove(p paths) error {
	err := os.Remove(p.file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return unavailable("remove session file", err)
	}
	if err := syncDir(p.dir); err != nil {
		return unavailable("sync folder", err)
	}
	return nil
}

// unavailable wraps an I/O failure so that the handler applies its
// on_store_error policy, keeping the cause for the log.
func unavailable(what string, err error) error {
	return fmt.Errorf("%w: session file store: %s: %w", storage.ErrUnavailable, what, err)
}

var (
	_ storage.Store            = (*Store)(nil)
	_ storage.Confirmer        = (*Store)(nil)
	_ storage.VersionedDeleter = (*Store)(nil)
)
