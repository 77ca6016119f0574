package memory

import (
	"encoding/binary"
	"sync"
)

// entry is one stored session. It is kept small (96 bytes) because a store
// may hold a million of them: times are Unix nanoseconds, values one
// encoded byte string.
type entry struct {
	key  keyBytes
	data []byte // encoded values (values.go); replaced, never written to
	// created, deadline and expires are Unix nanoseconds.
	created, deadline, expires int64
	prev, next                 *entry // the shard's LRU list
}

// live reports whether the session can be served at now (Unix ns); the
// same rule as storage.Record.Live.
func (e *entry) live(now int64) bool {
	return now < e.expires && now < e.deadline
}

// shard is one lock's worth of the store: maps for lookups and a doubly
// linked list in use order for eviction. All fields are guarded by mu.
//
// The main map is keyed by the first 8 bytes of the key, not all 32: at a
// million sessions that saves about 60 bytes a session of hash table. Two
// keys that share those bytes (about one chance in 10^7 for a million
// random keys, but possible) are told apart by the full key in the entry;
// the second one goes to the overflow map, which is otherwise empty.
type shard struct {
	mu       sync.Mutex
	index    int // position in Store.shards, for lock ordering
	m        map[uint64]*entry
	overflow map[keyBytes]*entry // keys whose prefix m already holds; usually nil
	lru      entry               // sentinel: lru.next is the most recently used entry, lru.prev the least
	peak     int                 // most entries m held since it was last rebuilt (see sweep.go)
}

func (sh *shard) init(index int) {
	sh.index = index
	sh.m = make(map[uint64]*entry)
	sh.lru.next = &sh.lru
	sh.lru.prev = &sh.lru
}

// prefix is the main map's key for k.
func prefix(k *keyBytes) uint64 {
	return binary.LittleEndian.Uint64(k[:8])
}

// get returns the entry under k, or nil.
func (sh *shard) get(k *keyBytes) *entry {
	if e := sh.m[prefix(k)]; e != nil && e.key == *k {
		return e
	}
	if len(sh.overflow) > 0 {
		return sh.overflow[*k]
	}
	return nil
}

// len returns how many entries the shard holds.
func (sh *shard) len() int {
	return len(sh.m) + len(sh.overflow)
}

// touch marks e as the most recently used.
func (sh *shard) touch(e *entry) {
	if sh.lru.next == e {
		return
	}
	sh.unlink(e)
	sh.pushFront(e)
}

func (sh *shard) pushFront(e *entry) {
	e.prev = &sh.lru
	e.next = sh.lru.next
	e.next.prev = e
	sh.lru.next = e
}

func (sh *shard) unlink(e *entry) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

// insert adds e (whose key is not in the shard) as the most recently used
// entry. The store bounds the total (Store.insert).
func (sh *shard) insert(e *entry) {
	p := prefix(&e.key)
	if sh.m[p] == nil {
		sh.m[p] = e
		sh.peak = max(sh.peak, len(sh.m))
	} else {
		if sh.overflow == nil {
			sh.overflow = make(map[keyBytes]*entry)
		}
		sh.overflow[e.key] = e
	}
	sh.pushFront(e)
}

// remove takes e out of the shard.
func (sh *shard) remove(e *entry) {
	if p := prefix(&e.key); sh.m[p] == e {
		delete(sh.m, p)
	} else {
		delete(sh.overflow, e.key)
	}
	sh.unlink(e)
}
