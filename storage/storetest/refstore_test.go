package storetest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// refStore is the simplest correct store: one map under one mutex. With a
// bug set it breaks one rule on purpose, so the kit's own tests can show
// that each subtest catches the bug it is there for.
type refStore struct {
	mu      sync.Mutex
	m       map[string]*storage.Record
	indexed map[string]int       // name → Index calls not released
	tombs   map[string]time.Time // keys Rotate moved a session away from → until
	bug     string
}

func newRefStore(bug string) *refStore {
	return &refStore{m: make(map[string]*storage.Record), indexed: make(map[string]int), tombs: make(map[string]time.Time), bug: bug}
}

func clone(r *storage.Record) *storage.Record {
	c := *r
	c.Values = maps.Clone(r.Values)
	return &c
}

// live returns the record under key when a call may see it.
func (s *refStore) live(key string) *storage.Record {
	r := s.m[key]
	if r == nil {
		return nil
	}
	now := time.Now()
	if s.bug == "expires-only" && now.Before(r.Expires) {
		return r
	}
	if !r.Live(now) && s.bug != "serve-expired" {
		return nil
	}
	return r
}

// rotatedAway reports whether Rotate moved a session away from key less
// than storage.RotationGrace ago.
func (s *refStore) rotatedAway(key string) bool {
	until, ok := s.tombs[key]
	return ok && time.Now().Before(until) && s.bug != "rotate-forgets"
}

func (s *refStore) Load(_ context.Context, key string) (*storage.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.live(key)
	switch {
	case r == nil && s.bug == "load-missing-nil":
		return nil, nil
	case r == nil && s.rotatedAway(key) && s.bug != "rotated-load-notfound":
		return nil, storage.ErrRotated
	case r == nil:
		return nil, storage.ErrNotFound
	case s.bug == "shared-map":
		c := *r
		return &c, nil
	}
	return clone(r), nil
}

func (s *refStore) Merge(_ context.Context, key string, patch map[string]json.RawMessage, opts storage.MergeOptions) (*storage.Record, error) {
	for _, v := range patch {
		if s.bug == "small-values" && len(v) > 32<<10 {
			return nil, errors.New("value too large")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.live(key)
	if cur == nil && s.bug == "revive-expired" {
		cur = s.m[key]
	}
	if s.bug == "lost-update" || (s.bug == "racy-create" || s.bug == "racy-exclusive") && cur == nil && opts.Create ||
		s.bug == "version-racy" && opts.CheckVersion && cur != nil && cur.Version == opts.IfVersion {
		// Read, let the others run, then write what was read plus the
		// patch.
		if cur != nil {
			cur = clone(cur)
		}
		s.mu.Unlock()
		runtime.Gosched()
		time.Sleep(time.Microsecond)
		s.mu.Lock()
	}
	if cur == nil && s.rotatedAway(key) && !(s.bug == "rotated-creates" && opts.Create) {
		return nil, storage.ErrRotated
	}
	if cur == nil && !opts.Create && s.bug != "always-create" {
		return nil, storage.ErrNotFound
	}
	if cur != nil && opts.Create && opts.Exclusive && s.bug != "exclusive-ignored" {
		return nil, storage.ErrExists
	}
	if opts.CheckVersion && s.bug != "version-ignored" {
		if cur == nil {
			return nil, storage.ErrNotFound
		}
		if cur.Version != opts.IfVersion && s.bug != "version-racy" {
			return nil, &storage.VersionError{Current: clone(cur)}
		}
	}
	var current map[string]json.RawMessage
	if cur != nil {
		current = cur.Values
	}
	values, err := storage.Apply(current, patch, opts.Limits)
	if err != nil {
		if s.bug == "write-on-reject" && cur != nil {
			cur.Expires = opts.Expires(cur.Deadline)
		}
		return nil, err
	}
	if s.bug == "expiry-kept" && cur != nil {
		for name, v := range cur.Values {
			if strings.HasPrefix(name, storage.ExpiryPrefix) {
				values[name] = v
			}
		}
	}
	if s.bug == "replace-values" {
		values = maps.Clone(patch)
		maps.DeleteFunc(values, func(_ string, v json.RawMessage) bool { return storage.IsNull(v) })
	}
	r := &storage.Record{Values: values, Created: opts.Now, Deadline: opts.Deadline, Audience: opts.Audience, New: opts.NewTTL > 0,
		Version: opts.Version}
	if cur != nil && s.bug != "reset-deadline" {
		r.Created, r.Deadline = cur.Created, cur.Deadline
	}
	if cur != nil {
		r.Version = storage.NextVersion(cur.Version, patch)
		if s.bug == "version-not-bumped" {
			r.Version = cur.Version
		}
	}
	if !opts.SetDeadline.IsZero() && s.bug != "set-deadline-ignored" && (cur == nil || s.bug != "set-deadline-create-only") {
		r.Deadline = opts.SetDeadline
	}
	if cur != nil && s.bug != "audience-overwritten" {
		r.Audience = cur.Audience
	}
	if cur != nil {
		r.New = cur.New && (!opts.Confirm || s.bug == "confirm-ignored")
	}
	r.Expires = opts.ExpiresOf(r.Created, r.Deadline, r.New)
	if s.bug == "set-deadline-expires-stale" && cur != nil && !opts.SetDeadline.IsZero() {
		r.Expires = cur.Expires
	}
	switch {
	case s.bug == "stateless":
		r.New = false
		r.Expires = opts.Expires(r.Deadline)
	case s.bug == "audience-dropped":
		r.Audience = ""
	case s.bug == "never-new":
		r.New = false
	case s.bug == "new-uncapped":
		r.Expires = opts.Expires(r.Deadline)
	}
	switch {
	case s.bug == "ignore-idle":
		r.Expires = r.Deadline
	case s.bug == "merge-no-renew" && cur != nil:
		r.Expires = cur.Expires
	}
	s.m[key] = r
	if s.bug == "tiny-capacity" && len(s.m) > 100 {
		for k := range s.m {
			if k != key {
				delete(s.m, k)
				break
			}
		}
	}
	if s.bug == "shared-map" {
		c := *r
		return &c, nil
	}
	return clone(r), nil
}

func (s *refStore) Touch(_ context.Context, key string, expires time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.live(key)
	switch {
	case s.bug == "touch-ignored":
		return nil
	case r == nil && s.bug == "touch-creates":
		s.m[key] = &storage.Record{Values: map[string]json.RawMessage{}, Created: time.Now(), Deadline: expires, Expires: expires}
		return nil
	case r == nil:
		return nil
	case s.bug == "touch-rewrites":
		// Read, let the others run, write back what was read.
		c := clone(r)
		s.mu.Unlock()
		runtime.Gosched()
		time.Sleep(time.Microsecond)
		s.mu.Lock()
		r = c
		s.m[key] = r
	}
	if r.New && expires.After(r.Expires) && s.bug != "touch-extends-new" {
		return nil // a new session's expiry only moves earlier
	}
	r.Expires = expires
	if r.Expires.After(r.Deadline) && s.bug != "touch-unclamped" && s.bug != "expires-only" {
		r.Expires = r.Deadline
	}
	return nil
}

func (s *refStore) Confirm(_ context.Context, key string, expires time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.live(key)
	switch {
	case r == nil && s.bug == "confirm-creates":
		s.m[key] = &storage.Record{Values: map[string]json.RawMessage{}, Created: time.Now(), Deadline: expires, Expires: expires}
		return nil
	case r == nil:
		return nil
	case s.bug == "confirm-rewrites":
		// Read, let the others run, write back what was read.
		c := clone(r)
		s.mu.Unlock()
		runtime.Gosched()
		time.Sleep(time.Microsecond)
		s.mu.Lock()
		r = c
		s.m[key] = r
	}
	if s.bug != "confirm-ignored" {
		r.New = false
	}
	r.Expires = expires
	if r.Expires.After(r.Deadline) {
		r.Expires = r.Deadline
	}
	return nil
}

func (s *refStore) Count(context.Context) (storage.Counts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var c storage.Counts
	for key := range s.m {
		switch r := s.live(key); {
		case r == nil:
		case r.New && s.bug != "count-all-confirmed":
			c.New++
		default:
			c.Confirmed++
		}
	}
	return c, nil
}

func (s *refStore) Index(name string) func() {
	s.mu.Lock()
	s.indexed[name]++
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.indexed[name]--; s.indexed[name] == 0 {
				delete(s.indexed, name)
			}
			s.mu.Unlock()
		})
	}
}

// DeleteByValue scans every session: the reference is simple, not fast.
func (s *refStore) DeleteByValue(_ context.Context, name string, value json.RawMessage, audience string) (map[string]int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.indexed[name] == 0 {
		return nil, fmt.Errorf("refstore: %w: %q", storage.ErrNotIndexed, name)
	}
	want, err := storage.IndexValue(value)
	if err != nil {
		return nil, err
	}
	deleted := map[string]int{}
	for key := range s.m {
		r := s.live(key)
		if r == nil {
			continue
		}
		v, ok := r.Values[name]
		if !ok {
			continue
		}
		if s.bug == "index-by-text" {
			if string(v) != string(value) {
				continue
			}
		} else if got, err := storage.IndexValue(v); err != nil || string(got) != string(want) {
			continue
		}
		if audience != "" && r.Audience != audience && s.bug != "index-ignores-audience" {
			continue
		}
		delete(s.m, key)
		deleted[r.Audience]++
	}
	if s.bug == "index-total-only" && len(deleted) > 0 {
		n := 0
		for _, c := range deleted {
			n += c
		}
		deleted = map[string]int{"": n}
	}
	return deleted, nil
}

func (s *refStore) Delete(_ context.Context, key string) error {
	if s.bug == "delete-noop" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

func (s *refStore) DeleteVersion(_ context.Context, key string, version uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.live(key)
	switch {
	case r == nil && s.rotatedAway(key):
		return storage.ErrRotated
	case r == nil:
		return storage.ErrNotFound
	case r.Version != version && s.bug != "delete-version-ignored":
		return &storage.VersionError{Current: clone(r)}
	}
	delete(s.m, key)
	return nil
}

func (s *refStore) Rotate(_ context.Context, oldKey, newKey string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.live(oldKey)
	if r == nil {
		if s.bug == "rotate-missing-ok" {
			return nil
		}
		return fmt.Errorf("rotate: %w", storage.ErrNotFound)
	}
	if s.bug == "rotate-racy" {
		// Copy, let the others run, then move the copy.
		r = clone(r)
		s.mu.Unlock()
		runtime.Gosched()
		time.Sleep(10 * time.Microsecond)
		s.mu.Lock()
	}
	if s.bug == "rotate-confirms" {
		r.New = false
	}
	s.m[newKey] = r
	delete(s.tombs, newKey)
	if s.bug != "rotate-copies" {
		delete(s.m, oldKey)
		s.tombs[oldKey] = time.Now().Add(storage.RotationGrace)
	}
	return nil
}

var (
	_ storage.Store            = (*refStore)(nil)
	_ storage.Confirmer        = (*refStore)(nil)
	_ storage.VersionedDeleter = (*refStore)(nil)
	_ storage.Counter          = (*refStore)(nil)
	_ storage.Indexer          = (*refStore)(nil)
)
