// Package memory is a session store in the process's memory: fast, bounded,
// and lost on restart. It serves one host only (each Caddy instance has its
// own sessions).
//
// The store is sharded by key so that requests for different sessions rarely
// wait on one another, bounded by Options.MaxSessions with least recently
// used eviction, and swept of expired sessions by a background goroutine
// that Close stops.
//
// To hold a million sessions in a few hundred megabytes, a session is kept
// as one compact byte string (see values.go) plus a small fixed header,
// not as a Go map.
package memory

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// Defaults for Options.
const (
	DefaultMaxSessions   = 100000
	DefaultSweepInterval = time.Minute
)

// maxShards is how many shards a store has at most. Keys are hex SHA-256,
// so their first byte spreads them evenly; 64 locks keep two requests for
// different sessions from waiting on each other most of the time.
const maxShards = 64

// minPerShard is the fewest sessions per shard a full store holds on
// average: a small store gets fewer shards, so that the shard taking a new
// session almost always holds an older one to evict (Store.insert).
const minPerShard = 64

// Options configure a Store. The zero value is usable.
type Options struct {
	// MaxSessions bounds how many sessions the store holds (default
	// 100000). A new session past it evicts the least recently used
	// session of its shard: with sessions spread evenly over up to 64
	// shards, nearly the least recently used of all.
	MaxSessions int

	// SweepInterval is how often expired sessions are removed (default one
	// minute; negative turns the sweeper off). Expired sessions are never
	// served either way: sweeping only frees their memory.
	SweepInterval time.Duration

	// Now returns the current time (default time.Now), by which the store
	// decides whether a session has expired. The times a Merge writes come
	// from its MergeOptions. Tests set Now to drive expiry without waiting.
	Now func() time.Time
}

// Store is an in-memory storage.Store. Create it with New; it is safe for
// concurrent use.
type Store struct {
	shards []shard
	names  names
	max    int64
	now    func() time.Time

	count     atomic.Int64
	evictions atomic.Uint64

	idx index // sessions by the value of an indexed name (index.go)

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{} // closed when the sweeper has returned
}

// New returns a Store and starts its sweeper. Call Close when done with it.
func New(opts Options) *Store {
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = DefaultSweepInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	n := min(maxShards, max(1, opts.MaxSessions/minPerShard))
	s := &Store{
		shards: make([]shard, n),
		max:    int64(opts.MaxSessions),
		now:    opts.Now,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	for i := range s.shards {
		s.shards[i].init(i)
	}
	if opts.SweepInterval > 0 {
		go s.sweepEvery(opts.SweepInterval)
	} else {
		close(s.done)
	}
	return s
}

// Close stops the sweeper and waits for it to return. It is idempotent and
// always returns nil. The store stays usable after Close: it serves and
// stores sessions as before (expired ones are still never served), but no
// longer frees expired sessions in the background.
func (s *Store) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

// Len returns how many sessions the store holds, counting expired ones the
// sweeper has not removed yet.
func (s *Store) Len() int {
	return int(s.count.Load())
}

// Evictions returns how many sessions have been evicted to keep the store
// within MaxSessions since it was created. A rising count means MaxSessions
// is too low for the traffic: users are being logged out early.
func (s *Store) Evictions() uint64 {
	return s.evictions.Load()
}

func (s *Store) shard(k *keyBytes) *shard {
	return &s.shards[int(k[0])%len(s.shards)]
}

// Load returns the session stored under key.
//
// The record's Values map is the caller's own, but the json.RawMessage
// values in it share memory with the store (copying them would double the
// cost of a read): callers must not write into their bytes.
func (s *Store) Load(_ context.Context, key string) (*storage.Record, error) {
	k := parseKey(key)
	sh := s.shard(&k)
	now := s.now().UnixNano()
	sh.mu.Lock()
	r := sh.get(&k)
	if r == 0 {
		sh.mu.Unlock()
		return nil, storage.ErrNotFound
	}
	e := &sh.entries[r]
	if !e.live(now) {
		s.remove(sh, r)
		sh.mu.Unlock()
		return nil, storage.ErrNotFound
	}
	sh.touch(r)
	// A stored data slice is never written to again (a Merge replaces it
	// with a new one), so it can be decoded after the lock is released.
	data, created, deadline, expires := sh.data[r], e.created, e.deadline, e.expires
	sh.mu.Unlock()
	return &storage.Record{
		Values:   s.names.decode(data),
		Created:  time.Unix(0, created),
		Deadline: time.Unix(0, deadline),
		Expires:  time.Unix(0, expires),
	}, nil
}

// Merge applies patch to the session under key; see storage.Store. The
// store keeps its own copy of the result, so the caller may reuse the
// patch's map and byte slices afterwards (the returned record shares them).
func (s *Store) Merge(_ context.Context, key string, patch map[string]json.RawMessage, opts storage.MergeOptions) (*storage.Record, error) {
	k := parseKey(key)
	sh := s.shard(&k)
	now := s.now().UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()

	r := sh.get(&k)
	if r != 0 && !sh.entries[r].live(now) {
		s.remove(sh, r)
		r = 0
	}
	if r == 0 && !opts.Create {
		return nil, storage.ErrNotFound
	}
	var current map[string]json.RawMessage
	if r != 0 {
		current = s.names.decode(sh.data[r])
	}
	values, err := storage.Apply(current, patch, opts.Limits)
	if err != nil {
		return nil, err
	}
	data := s.names.encode(values)

	fresh := r == 0
	var e entry
	if fresh {
		e = entry{key: k, created: opts.Now.UnixNano(), deadline: opts.Deadline.UnixNano()}
		e.expires = opts.Expires(opts.Deadline).UnixNano()
		if e.live(now) { // a session born dead would only evict a live one
			r = s.insert(sh, e, data)
		}
	} else {
		p := &sh.entries[r]
		p.expires = opts.Expires(time.Unix(0, p.deadline)).UnixNano()
		sh.data[r] = data
		sh.touch(r)
		e = *p
	}
	s.indexWrite(sh, &k, r, fresh, values, patch)
	// values is a fresh map from Apply; its byte slices are the caller's
	// patch and the store's immutable old data, both fine to share.
	return &storage.Record{
		Values:   values,
		Created:  time.Unix(0, e.created),
		Deadline: time.Unix(0, e.deadline),
		Expires:  time.Unix(0, e.expires),
	}, nil
}

// Touch moves the expiry of a live session to expires, never past its
// deadline. It changes no value, so it cannot undo a concurrent Merge.
func (s *Store) Touch(_ context.Context, key string, expires time.Time) error {
	k := parseKey(key)
	sh := s.shard(&k)
	now := s.now().UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.get(&k)
	if r == 0 {
		return nil
	}
	e := &sh.entries[r]
	e.expires = min(expires.UnixNano(), e.deadline)
	if !e.live(now) {
		s.remove(sh, r)
		return nil
	}
	sh.touch(r)
	return nil
}

// Delete removes the session under key, if any.
func (s *Store) Delete(_ context.Context, key string) error {
	k := parseKey(key)
	sh := s.shard(&k)
	sh.mu.Lock()
	if r := sh.get(&k); r != 0 {
		s.remove(sh, r)
	}
	sh.mu.Unlock()
	return nil
}

// Rotate moves the session under oldKey to newKey, replacing whatever
// newKey held. Both shards are locked for the move, so no call sees the
// session under both keys or under neither.
func (s *Store) Rotate(_ context.Context, oldKey, newKey string) error {
	ko, kn := parseKey(oldKey), parseKey(newKey)
	if ko == kn {
		// Moving a session onto itself: it only has to exist.
		_, err := s.Load(context.Background(), oldKey)
		return err
	}
	from, to := s.shard(&ko), s.shard(&kn)
	now := s.now().UnixNano()
	unlock := lockPair(from, to)
	defer unlock()

	r := from.get(&ko)
	if r == 0 {
		return storage.ErrNotFound
	}
	if !from.entries[r].live(now) {
		s.remove(from, r)
		return storage.ErrNotFound
	}
	moved := s.idx.detach(ko)
	e, data := from.entries[r], from.data[r]
	s.remove(from, r)
	if old := to.get(&kn); old != 0 {
		s.remove(to, old)
	}
	e.key = kn
	s.insert(to, e, data)
	s.idx.attach(kn, moved)
	return nil
}

// lockPair locks two shards in a fixed order (by index), so that two
// Rotates in opposite directions cannot deadlock, and returns the unlock.
func lockPair(a, b *shard) func() {
	if a == b {
		a.mu.Lock()
		return a.mu.Unlock
	}
	if a.index > b.index {
		a, b = b, a
	}
	a.mu.Lock()
	b.mu.Lock()
	return func() {
		b.mu.Unlock()
		a.mu.Unlock()
	}
}

// insert adds e with its values to sh (locked) and, when that takes the
// store past MaxSessions, evicts the least recently used session of sh.
// Counting first and evicting after keeps the bound under concurrent
// inserts into different shards: each one that goes over takes one out.
// It returns e's ref.
func (s *Store) insert(sh *shard, e entry, data []byte) ref {
	r := sh.add(e, data)
	if s.count.Add(1) <= s.max {
		return r
	}
	if victim := sh.entries[0].prev; victim != r {
		s.evict(sh, victim)
		return r
	}
	// sh holds only e. Take the victim from another shard, without waiting
	// for its lock (that could deadlock with a Rotate holding it and
	// waiting for ours); if every one is busy, the store stays one over
	// until the next insert.
	for i := 1; i < len(s.shards); i++ {
		other := &s.shards[(sh.index+i)%len(s.shards)]
		if !other.mu.TryLock() {
			continue
		}
		if victim := other.entries[0].prev; victim != 0 {
			s.evict(other, victim)
			other.mu.Unlock()
			return r
		}
		other.mu.Unlock()
	}
	return r
}

// evict removes victim from sh (locked) to make room.
func (s *Store) evict(sh *shard, victim ref) {
	s.remove(sh, victim)
	s.evictions.Add(1)
}

// remove takes r out of sh (locked).
func (s *Store) remove(sh *shard, r ref) {
	key := sh.entries[r].key
	sh.remove(r)
	s.count.Add(-1)
	if s.idx.indexed() != nil {
		s.idx.drop(key)
	}
}

var _ storage.Store = (*Store)(nil)
