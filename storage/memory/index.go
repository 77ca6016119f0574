package memory

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/caddy-session/caddy-session/storage"
)

// index finds sessions by the value of an indexed name (storage.Indexer),
// exactly: it is updated under the lock of the session's shard on every
// write, move and removal, so it never holds a session that is gone nor
// misses one that is there.
//
// Lock order: a shard's lock (or two, in Rotate and eviction), then mu.
// Nothing takes a shard lock while holding mu.
type index struct {
	// names is the list of indexed names, published whole so that
	// the write path reads it with one atomic load and no lock. Nil or
	// empty: nothing is indexed, and every hook returns at once.
	names atomic.Pointer[[]string]

	mu    sync.Mutex
	refs  map[string]int                   // indexed name → configurations using it
	terms map[string]map[keyBytes]struct{} // name + "\x00" + canonical value (term) → sessions
	byKey map[keyBytes][]string            // session → its terms, one per indexed name it holds
}

// term is the index entry of one name's value, in its canonical form
// (storage.IndexValue), so that every encoding of one JSON value gives the
// same term. ok is false for a value IndexValue refuses: it is not
// indexed (no DeleteByValue could ask for it).
func term(name string, value []byte) (t string, ok bool) {
	v, err := storage.IndexValue(value)
	if err != nil {
		return "", false
	}
	return name + "\x00" + string(v), true
}

// indexed returns the indexed names, nil when there are none.
func (x *index) indexed() []string {
	if p := x.names.Load(); p != nil {
		return *p
	}
	return nil
}

// publish republishes names from refs (mu held).
func (x *index) publish() {
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

// indexWrite updates the index after a Merge wrote r under k (sh locked):
// only when something is indexed, the session is stored (r is 0 for one
// born expired), and the write created it or wrote an indexed name.
func (s *Store) indexWrite(sh *shard, k *keyBytes, r ref, fresh bool, values, patch map[string]json.RawMessage) {
	names := s.idx.indexed()
	if names == nil || r == 0 || !(fresh || touches(names, patch)) || sh.get(k) != r {
		return
	}
	s.idx.set(*k, names, values)
}

// set records the terms of a session's values (its shard locked),
// replacing the ones it had.
func (x *index) set(k keyBytes, names []string, values map[string]json.RawMessage) {
	var terms []string
	for _, n := range names {
		if v, ok := values[n]; ok && !storage.IsNull(v) {
			if t, ok := term(n, v); ok {
				terms = append(terms, t)
			}
		}
	}
	x.mu.Lock()
	x.dropLocked(k)
	x.attachLocked(k, terms)
	x.mu.Unlock()
}

// drop forgets a session (its shard locked).
func (x *index) drop(k keyBytes) {
	x.mu.Lock()
	x.dropLocked(k)
	x.mu.Unlock()
}

// detach forgets a session and returns its terms, for Rotate to attach
// them to the session's new key.
func (x *index) detach(k keyBytes) []string {
	if x.indexed() == nil {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	terms := x.byKey[k]
	x.dropLocked(k)
	return terms
}

// attach records terms for a session (its shard locked).
func (x *index) attach(k keyBytes, terms []string) {
	if len(terms) == 0 {
		return
	}
	x.mu.Lock()
	x.attachLocked(k, terms)
	x.mu.Unlock()
}

func (x *index) dropLocked(k keyBytes) {
	for _, t := range x.byKey[k] {
		if set := x.terms[t]; set != nil {
			delete(set, k)
			if len(set) == 0 {
				delete(x.terms, t)
			}
		}
	}
	delete(x.byKey, k)
}

func (x *index) attachLocked(k keyBytes, terms []string) {
	if len(terms) == 0 {
		return
	}
	if x.terms == nil {
		x.terms = make(map[string]map[keyBytes]struct{})
		x.byKey = make(map[keyBytes][]string)
	}
	for _, t := range terms {
		set := x.terms[t]
		if set == nil {
			set = make(map[keyBytes]struct{})
			x.terms[t] = set
		}
		set[k] = struct{}{}
	}
	x.byKey[k] = terms
}

// holds reports whether a session is indexed under t (its shard locked).
func (x *index) holds(k keyBytes, t string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	_, ok := x.terms[t][k]
	return ok
}

// touches reports whether a patch writes an indexed name.
func touches(names []string, patch map[string]json.RawMessage) bool {
	for _, n := range names {
		if _, ok := patch[n]; ok {
			return true
		}
	}
	return false
}

// Index starts indexing sessions by their value of name (storage.Indexer).
// Sessions already in the store are indexed before it returns, one shard
// at a time. Several callers may index one name; the index goes when the
// last one releases it. It costs a map entry per indexed session, and on
// every write that sets the name, a parse of its value into its canonical
// form (storage.IndexValue) and a short lock. A value that is not one JSON
// value is not indexed.
func (s *Store) Index(name string) (release func()) {
	x := &s.idx
	x.mu.Lock()
	if x.refs == nil {
		x.refs = make(map[string]int)
	}
	x.refs[name]++
	first := x.refs[name] == 1
	if first {
		x.publish()
	}
	x.mu.Unlock()
	if first {
		s.backfill(name)
	}
	var once sync.Once
	return func() { once.Do(func() { s.unindex(name) }) }
}

// backfill indexes the sessions that held name before it was indexed.
// Writes that run meanwhile index their sessions themselves: they read the
// published names under their shard's lock, which this takes after
// publishing.
func (s *Store) backfill(name string) {
	now := s.now().UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for r := firstRef; int(r) < len(sh.entries); r++ {
			e := &sh.entries[r]
			if !e.live(now) { // a free slot is a zero entry, never live
				continue
			}
			values := s.names.decode(sh.data[r])
			v, ok := values[name]
			if !ok || storage.IsNull(v) {
				continue
			}
			t, ok := term(name, v)
			if !ok {
				continue
			}
			s.idx.mu.Lock()
			if _, done := s.idx.terms[t][e.key]; !done {
				terms := append(append([]string(nil), s.idx.byKey[e.key]...), t)
				s.idx.dropLocked(e.key)
				s.idx.attachLocked(e.key, terms)
			}
			s.idx.mu.Unlock()
		}
		sh.mu.Unlock()
	}
}

// unindex drops one user of name's index, and the index when it was the
// last.
func (s *Store) unindex(name string) {
	x := &s.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.refs[name]--; x.refs[name] > 0 {
		return
	}
	delete(x.refs, name)
	x.publish()
	prefix := name + "\x00"
	for t, set := range x.terms {
		if len(t) < len(prefix) || t[:len(prefix)] != prefix {
			continue
		}
		for k := range set {
			kept := x.byKey[k][:0:0]
			for _, other := range x.byKey[k] {
				if other != t {
					kept = append(kept, other)
				}
			}
			if len(kept) == 0 {
				delete(x.byKey, k)
			} else {
				x.byKey[k] = kept
			}
		}
		delete(x.terms, t)
	}
}

// DeleteByValue deletes every live session whose value of name is value
// (as JSON values: see storage.IndexValue) and, when audience is not
// empty, whose audience is audience, and returns how many it deleted per
// audience (storage.Indexer): only audiences with a deletion, an empty map
// when none. It looks the sessions up in the index, never scanning the
// store.
func (s *Store) DeleteByValue(ctx context.Context, name string, value json.RawMessage, audience string) (map[string]int, error) {
	deleted := map[string]int{}
	t, ok := term(name, value)
	if !ok {
		_, err := storage.IndexValue(value)
		return deleted, fmt.Errorf("memory store: DeleteByValue of %q: %w", name, err)
	}
	s.idx.mu.Lock()
	if s.idx.refs[name] == 0 {
		s.idx.mu.Unlock()
		return deleted, fmt.Errorf("memory store: %w: %q (name it in index_key first)", storage.ErrNotIndexed, name)
	}
	keys := make([]keyBytes, 0, len(s.idx.terms[t]))
	for k := range s.idx.terms[t] {
		keys = append(keys, k)
	}
	s.idx.mu.Unlock()

	for i := range keys {
		if err := ctx.Err(); err != nil {
			return deleted, err
		}
		k := &keys[i]
		sh := s.shard(k)
		now := s.now().UnixNano()
		sh.mu.Lock()
		// The session may have changed value, moved or gone since the
		// index was read: only what the index says now, under the
		// shard's lock, counts.
		if r := sh.get(k); r != 0 && s.idx.holds(*k, t) {
			e := &sh.entries[r]
			aud := s.auds.name(e.aud)
			switch {
			case !e.live(now):
				s.remove(sh, r) // expired: gone anyway, not counted
			case audience == "" || aud == audience:
				deleted[aud]++
				s.remove(sh, r)
			}
		}
		sh.mu.Unlock()
	}
	return deleted, nil
}

// Count returns how many live sessions the store holds, new and confirmed
// (storage.Counter): unlike Len and NewLen, it leaves out expired sessions
// the sweeper has not removed yet. It visits every session, one shard at a
// time, so a session written meanwhile may or may not be counted.
func (s *Store) Count(ctx context.Context) (storage.Counts, error) {
	var c storage.Counts
	for i := range s.shards {
		if err := ctx.Err(); err != nil {
			return storage.Counts{}, err
		}
		sh := &s.shards[i]
		now := s.now().UnixNano()
		sh.mu.Lock()
		// In slot order: a free slot is a zero entry, never live.
		for r := firstRef; int(r) < len(sh.entries); r++ {
			switch e := &sh.entries[r]; {
			case !e.live(now):
			case e.new:
				c.New++
			default:
				c.Confirmed++
			}
		}
		sh.mu.Unlock()
	}
	return c, nil
}

var (
	_ storage.Indexer = (*Store)(nil)
	_ storage.Counter = (*Store)(nil)
)
