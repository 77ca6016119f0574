// Package memory is a session store in the process's memory: fast, bounded,
// and lost on restart. It serves one host only (each Caddy instance has its
// own sessions). It implements storage.Store and the optional
// storage.Confirmer, storage.Counter and storage.Indexer.
//
// The store is sharded by key so that requests for different sessions
// rarely wait on one another, and bounded twice: by Options.MaxSessions
// sessions and by Options.MaxBytes bytes (each session's encoded values
// plus SessionOverhead of bookkeeping). Past either bound it evicts new
// sessions first (Record.New: never presented back by their browser),
// oldest first, and only when none is left the least recently used
// confirmed session: a flood of single-use sessions churns through itself
// and cannot push real visitors out (S42). A background goroutine that
// Close stops sweeps expired sessions away.
//
// To hold a million sessions in a few hundred megabytes, a session is kept
// as one compact byte string (see values.go) plus a small fixed header free
// of pointers (see shard.go), not as a Go map.
package memory

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// Defaults for Options.
const (
	DefaultMaxSessions   = 100000
	DefaultMaxBytes      = 256 << 20
	DefaultSweepInterval = time.Minute
)

// SessionOverhead is what the store counts for each session on top of its
// encoded values towards MaxBytes: its entry (72 bytes), the slice header
// of its values (24), its slot in the shard's hash map (16 to 40 bytes, by
// how full the map is), and the slack of growing arrays and of rounding
// allocations up. Measured at about 150 bytes a session for a million
// small ones (BenchmarkMemoryHeap); the index (storage.Indexer) is not
// counted.
const SessionOverhead = 160

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
	// 100000). A new session past it evicts a new session (Record.New),
	// the oldest of its shard, or when the store holds none (but the one
	// being written), the least recently used session of its shard: with
	// sessions spread evenly over up to 64 shards, nearly the oldest or
	// least recently used of all.
	MaxSessions int

	// MaxBytes bounds the memory the sessions take (default 256 MiB),
	// counted as each session's encoded values plus SessionOverhead. A
	// write past it evicts as MaxSessions does until the store is under
	// it again. A single session larger than MaxBytes is refused (Merge
	// returns a *TooLargeError) and the store is left unchanged.
	MaxBytes int64

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
	shards   []shard
	names    names
	auds     audiences
	max      int64
	maxBytes int64
	now      func() time.Time

	count     atomic.Int64 // sessions held
	newCount  atomic.Int64 // of which new (Record.New)
	bytes     atomic.Int64 // their size (see size)
	evictions atomic.Uint64
	evictedOK atomic.Uint64 // of which confirmed sessions

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
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = DefaultSweepInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	n := min(maxShards, max(1, opts.MaxSessions/minPerShard))
	s := &Store{
		shards:   make([]shard, n),
		max:      int64(opts.MaxSessions),
		maxBytes: opts.MaxBytes,
		now:      opts.Now,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
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

// NewLen returns how many of the sessions Len counts are new (Record.New):
// created and not yet presented back by their browser.
func (s *Store) NewLen() int {
	return int(s.newCount.Load())
}

// Bytes returns the memory the store counts towards MaxBytes: the encoded
// values of every session it holds plus SessionOverhead each.
func (s *Store) Bytes() int64 {
	return s.bytes.Load()
}

// Evictions returns how many sessions have been evicted to keep the store
// within MaxSessions and MaxBytes since it was created, new and confirmed.
// New sessions evicted are mostly single-use ones (a flood, or visitors
// without cookies); see ConfirmedEvictions for the ones that matter.
func (s *Store) Evictions() uint64 {
	return s.evictions.Load()
}

// ConfirmedEvictions returns how many of Evictions were confirmed
// sessions. A rising count means a bound (MaxSessions or MaxBytes) is too
// low for the traffic: real visitors are being logged out early.
func (s *Store) ConfirmedEvictions() uint64 {
	return s.evictedOK.Load()
}

// TooLargeError is what Merge returns for a session that alone would take
// more than the store's MaxBytes. It unwraps to a *storage.LimitError
// (What "size"), so the handler answers it as any session over its limits.
type TooLargeError struct {
	Size     int64 // what the session would count towards MaxBytes
	MaxBytes int64 // the store's bound
}

// Error says what was refused and what to do.
func (e *TooLargeError) Error() string {
	return fmt.Sprintf("memory store: the session would take %d bytes with its bookkeeping, more than the whole store may hold (max_bytes %d); raise max_bytes or store less", e.Size, e.MaxBytes)
}

// Unwrap returns the storage.LimitError the handler tests for.
func (e *TooLargeError) Unwrap() error {
	return &storage.LimitError{What: "size", Limit: int(e.MaxBytes - SessionOverhead), Got: int(e.Size - SessionOverhead)}
}

// size is what a session whose encoded values are data counts towards
// MaxBytes.
func size(data []byte) int64 {
	return int64(len(data)) + SessionOverhead
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
		rotated := sh.rotatedAway(&k, now)
		sh.mu.Unlock()
		if rotated {
			return nil, storage.ErrRotated
		}
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
	// The audience's name is read under the lock, while the entry holds
	// its id (audiences).
	data, created, deadline, expires, isNew, version := sh.data[r], e.created, e.deadline, e.expires, e.new, e.version
	aud := s.auds.name(e.aud)
	sh.mu.Unlock()
	return &storage.Record{
		Values:   s.names.decode(data),
		Created:  time.Unix(0, created),
		Deadline: time.Unix(0, deadline),
		Expires:  time.Unix(0, expires),
		Audience: aud,
		New:      isNew,
		Version:  version,
	}, nil
}

// record returns entry r of sh as a Record (sh locked).
func (s *Store) record(sh *shard, r ref) *storage.Record {
	e := &sh.entries[r]
	return &storage.Record{
		Values:   s.names.decode(sh.data[r]),
		Created:  time.Unix(0, e.created),
		Deadline: time.Unix(0, e.deadline),
		Expires:  time.Unix(0, e.expires),
		Audience: s.auds.name(e.aud),
		New:      e.new,
		Version:  e.version,
	}
}

// Merge applies patch to the session under key; see storage.Store. The
// store keeps its own copy of the result, so the caller may reuse the
// patch's map and byte slices afterwards (the returned record shares them).
//
// A session it creates is new (Record.New) when opts.NewTTL is positive,
// whatever opts.Confirm says: no request has presented its cookie yet. A
// merge into a new session with opts.Confirm confirms it; one without
// keeps it new, its expiry capped at Created + opts.NewTTL. A session that
// alone would take more than MaxBytes is refused with a *TooLargeError.
func (s *Store) Merge(_ context.Context, key string, patch map[string]json.RawMessage, opts storage.MergeOptions) (*storage.Record, error) {
	k := parseKey(key)
	sh := s.shard(&k)
	now := s.now().UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()

	r := s.liveRef(sh, &k, now)
	if r == 0 && sh.rotatedAway(&k, now) {
		return nil, storage.ErrRotated
	}
	if r == 0 && !opts.Create {
		return nil, storage.ErrNotFound
	}
	if r != 0 && opts.Create && opts.Exclusive {
		return nil, storage.ErrExists
	}
	if opts.CheckVersion {
		if r == 0 {
			return nil, storage.ErrNotFound
		}
		if sh.entries[r].version != opts.IfVersion {
			return nil, &storage.VersionError{Current: s.record(sh, r)}
		}
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
	if n := size(data); n > s.maxBytes {
		return nil, &TooLargeError{Size: n, MaxBytes: s.maxBytes}
	}

	fresh := r == 0
	var e entry
	if fresh {
		deadline := opts.Deadline
		if !opts.SetDeadline.IsZero() {
			deadline = opts.SetDeadline
		}
		e = entry{key: k, created: opts.Now.UnixNano(), deadline: deadline.UnixNano(), new: opts.NewTTL > 0, version: opts.Version}
		e.expires = opts.ExpiresOf(opts.Now, deadline, e.new).UnixNano()
		if e.live(now) { // a session born dead would only evict a live one
			e.aud = s.auds.acquire(opts.Audience)
			r = s.insert(sh, e, data)
		}
	} else {
		p := &sh.entries[r]
		p.version = storage.NextVersion(p.version, patch)
		confirm := p.new && opts.Confirm
		if !opts.SetDeadline.IsZero() {
			p.deadline = opts.SetDeadline.UnixNano()
		}
		p.expires = opts.ExpiresOf(time.Unix(0, p.created), time.Unix(0, p.deadline), p.new && !confirm).UnixNano()
		grown := size(data) - size(sh.data[r])
		sh.data[r] = data
		if confirm {
			sh.confirm(r)
			s.newCount.Add(-1)
		} else {
			sh.touch(r)
		}
		if s.bytes.Add(grown) > s.maxBytes && grown > 0 {
			s.shed(sh, r)
		}
		e = sh.entries[r]
	}
	s.indexWrite(sh, &k, r, fresh, values, patch)
	// values is a fresh map from Apply; its byte slices are the caller's
	// patch and the store's immutable old data, both fine to share.
	return &storage.Record{
		Values:   values,
		Created:  time.Unix(0, e.created),
		Deadline: time.Unix(0, e.deadline),
		Expires:  time.Unix(0, e.expires),
		Audience: s.auds.name(e.aud),
		New:      e.new,
		Version:  e.version,
	}, nil
}

// Touch moves the expiry of a live session to expires, never past its
// deadline. It changes no value, so it cannot undo a concurrent Merge.
//
// A new session's expiry only ever moves earlier: it was capped at its
// Created + NewTTL, which Touch does not know. Confirm moves it later.
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
	if e.new {
		e.expires = min(expires.UnixNano(), e.expires)
	} else {
		e.expires = min(expires.UnixNano(), e.deadline)
	}
	if !e.live(now) {
		s.remove(sh, r)
		return nil
	}
	sh.touch(r)
	return nil
}

// Confirm confirms a new session (storage.Confirmer): it is no longer
// evicted before confirmed ones, and its expiry moves to expires, never
// past its deadline. It rewrites no value; it creates nothing when key
// holds no live session. On a confirmed session it acts as Touch.
func (s *Store) Confirm(_ context.Context, key string, expires time.Time) error {
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
	if !e.live(now) {
		s.remove(sh, r)
		return nil
	}
	e.expires = min(expires.UnixNano(), e.deadline)
	if !e.live(now) {
		s.remove(sh, r)
		return nil
	}
	if e.new {
		sh.confirm(r)
		s.newCount.Add(-1)
	} else {
		sh.touch(r)
	}
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

// liveRef returns the entry of k in sh (locked) if it is live at now (Unix
// ns), else 0, removing an expired one.
func (s *Store) liveRef(sh *shard, k *keyBytes, now int64) ref {
	r := sh.get(k)
	if r != 0 && !sh.entries[r].live(now) {
		s.remove(sh, r)
		r = 0
	}
	return r
}

// DeleteVersion removes the live session under key if it is at version
// (storage.VersionedDeleter).
func (s *Store) DeleteVersion(_ context.Context, key string, version uint64) error {
	k := parseKey(key)
	sh := s.shard(&k)
	now := s.now().UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := s.liveRef(sh, &k, now)
	switch {
	case r == 0 && sh.rotatedAway(&k, now):
		return storage.ErrRotated
	case r == 0:
		return storage.ErrNotFound
	case sh.entries[r].version != version:
		return &storage.VersionError{Current: s.record(sh, r)}
	}
	s.remove(sh, r)
	return nil
}

// Rotate moves the session under oldKey to newKey, replacing whatever
// newKey held. Both shards are locked for the move, so no call sees the
// session under both keys or under neither. The session keeps its
// audience and its New state; a new one counts as the newest of its new
// shard.
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
	s.auds.retain(e.aud) // the moved entry's reference; remove drops the old one's
	s.remove(from, r)
	if old := to.get(&kn); old != 0 {
		s.remove(to, old)
	}
	from.markRotated(ko, min(now+int64(storage.RotationGrace), e.expires))
	delete(to.tombs, kn) // a session rotated back to a key it left
	e.key = kn
	e.prev, e.next = 0, 0
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

// insert adds e with its values to sh (locked), taking over the caller's
// reference to e's audience, and evicts (evictOne) while that takes the
// store past MaxSessions or MaxBytes. It returns e's ref.
//
// Counting first and evicting after keeps the bounds under concurrent
// inserts into different shards: each insert that takes the count over
// takes one session out, and each that takes the bytes over takes
// sessions out until they are under. The one exception: when every other
// shard that could give a victim is locked by another call, the store
// stays over until the next write (waiting for those locks could
// deadlock, see evictOne).
func (s *Store) insert(sh *shard, e entry, data []byte) ref {
	r := sh.add(e, data)
	if e.new {
		s.newCount.Add(1)
	}
	s.bytes.Add(size(data))
	if s.count.Add(1) > s.max {
		s.evictOne(sh, r)
	}
	s.shed(sh, r)
	return r
}

// shed evicts sessions other than keep (in sh, locked) until the store is
// within MaxBytes.
func (s *Store) shed(sh *shard, keep ref) {
	for s.bytes.Load() > s.maxBytes {
		if !s.evictOne(sh, keep) {
			return
		}
	}
}

// evictOne evicts one session other than keep (in sh, locked), in the
// order of the contract: a new session of sh (its oldest), else one of
// another shard, else the least recently used confirmed session of sh,
// else one of another shard. It reports whether it found one.
//
// Other shards are locked with TryLock, never waited for: the caller
// holds sh (a Rotate holds two shards), and another insert waiting for
// sh while holding the one we want would deadlock. A shard that is busy
// is passed over; so the order holds exactly within a shard and nearly
// across shards (sessions spread evenly over them).
func (s *Store) evictOne(sh *shard, keep ref) bool {
	if v := sh.oldest(newList, keep); v != 0 {
		s.evict(sh, v)
		return true
	}
	ownNew := int64(0)
	if keep != 0 && sh.entries[keep].new {
		ownNew = 1
	}
	if s.newCount.Load() > ownNew && s.evictOther(sh, newList) {
		return true
	}
	if v := sh.oldest(confirmedList, keep); v != 0 {
		s.evict(sh, v)
		return true
	}
	return s.evictOther(sh, confirmedList) || s.evictOther(sh, newList)
}

// evictOther evicts the last session of list in a shard other than sh,
// the first it can lock without waiting, starting from sh's neighbour.
func (s *Store) evictOther(sh *shard, list ref) bool {
	for i := 1; i < len(s.shards); i++ {
		other := &s.shards[(sh.index+i)%len(s.shards)]
		if !other.mu.TryLock() {
			continue
		}
		if v := other.oldest(list, 0); v != 0 {
			s.evict(other, v)
			other.mu.Unlock()
			return true
		}
		other.mu.Unlock()
	}
	return false
}

// evict removes victim from sh (locked) to make room.
func (s *Store) evict(sh *shard, victim ref) {
	if !sh.entries[victim].new {
		s.evictedOK.Add(1)
	}
	s.remove(sh, victim)
	s.evictions.Add(1)
}

// remove takes r out of sh (locked), and out of the counts, the audience
// table and the index.
func (s *Store) remove(sh *shard, r ref) {
	e := &sh.entries[r]
	key, aud := e.key, e.aud
	if e.new {
		s.newCount.Add(-1)
	}
	s.bytes.Add(-size(sh.data[r]))
	sh.remove(r)
	s.count.Add(-1)
	s.auds.release(aud)
	if s.idx.indexed() != nil {
		s.idx.drop(key)
	}
}

var (
	_ storage.Store            = (*Store)(nil)
	_ storage.Confirmer        = (*Store)(nil)
	_ storage.VersionedDeleter = (*Store)(nil)
)
