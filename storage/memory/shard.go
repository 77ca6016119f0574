package memory

import (
	"encoding/binary"
	"sync"
)

// ref is an entry's position in its shard's arrays. 0 and 1 are the
// sentinels of the shard's two lists (confirmed, new), never entries, so 0
// also means "none".
type ref uint32

// The list sentinels, and the first ref of an entry.
const (
	confirmedList ref = 0 // confirmed sessions, most recently used first
	newList       ref = 1 // new sessions (Record.New), newest first
	firstRef      ref = 2
)

// entry is one stored session, kept in its shard's entries array. It holds
// no pointer (times are Unix nanoseconds, links are refs, the values live
// in the parallel data array), so that the garbage collector never scans
// the array: at a million sessions, scanning one object per session was
// most of the cost of every GC cycle of the whole process.
type entry struct {
	key keyBytes
	// created, deadline and expires are Unix nanoseconds.
	created, deadline, expires int64
	version                    uint64 // Record.Version
	prev, next                 ref    // the shard's list the entry is in (new or confirmed)
	aud                        uint32 // Record.Audience, interned (audience.go); 0 is ""
	new                        bool   // Record.New: in the new list, not the confirmed one
}

// list returns the sentinel of the list e belongs in.
func (e *entry) list() ref {
	if e.new {
		return newList
	}
	return confirmedList
}

// live reports whether the session can be served at now (Unix ns); the
// same rule as storage.Record.Live.
func (e *entry) live(now int64) bool {
	return now < e.expires && now < e.deadline
}

// shard is one lock's worth of the store: maps for lookups, and the
// entries with two doubly linked lists through them, for eviction: the new
// sessions in creation order (evicted first, oldest first), and the
// confirmed ones in use order (evicted least recently used first). All
// fields are guarded by mu.
//
// The main map is keyed by the first 8 bytes of the key, not all 32: at a
// million sessions that saves about 60 bytes a session of hash table. Two
// keys that share those bytes (about one chance in 10^7 for a million
// random keys, but possible) are told apart by the full key in the entry;
// the second one goes to the overflow map, which is otherwise empty. Both
// maps hold refs, not pointers: the collector skips them too.
type shard struct {
	mu       sync.Mutex
	index    int // position in Store.shards, for lock ordering
	m        map[uint64]ref
	overflow map[keyBytes]ref // keys whose prefix m already holds; usually nil

	// entries[confirmedList] is the sentinel of the confirmed sessions:
	// its next is the most recently used, its prev the least.
	// entries[newList] is the sentinel of the new ones: its next is the
	// newest, its prev the oldest. data[r] is entry r's encoded values
	// (values.go), replaced, never written to. Slots of removed entries
	// are reused (free) and compacted away by the sweeper after a peak
	// (sweep.go).
	entries []entry
	data    [][]byte
	free    []ref

	peak int // most entries m held since it was last rebuilt (see sweep.go)

	// tombs maps each key that Rotate moved a session away from to when
	// the store stops remembering it (Unix ns; see storage.ErrRotated).
	// nil until the first rotation; pruned by the sweeper.
	tombs map[keyBytes]int64
}

// rotatedAway reports whether Rotate moved a session away from k less
// than storage.RotationGrace ago, forgetting a mark that has run out.
func (sh *shard) rotatedAway(k *keyBytes, now int64) bool {
	until, ok := sh.tombs[*k]
	switch {
	case !ok:
		return false
	case now < until:
		return true
	}
	delete(sh.tombs, *k)
	return false
}

// markRotated remembers that Rotate moved a session away from k, until
// until (Unix ns).
func (sh *shard) markRotated(k keyBytes, until int64) {
	if sh.tombs == nil {
		sh.tombs = make(map[keyBytes]int64)
	}
	sh.tombs[k] = until
}

func (sh *shard) init(index int) {
	sh.index = index
	sh.m = make(map[uint64]ref)
	sh.overflow = nil
	sh.initArrays(0)
}

// initArrays makes empty entry and data arrays with room for n entries:
// just the two sentinels, each linked to itself.
func (sh *shard) initArrays(n int) {
	sh.entries = make([]entry, firstRef, int(firstRef)+n)
	sh.entries[newList].prev, sh.entries[newList].next = newList, newList
	sh.data = make([][]byte, firstRef, int(firstRef)+n)
	sh.free = nil
}

// oldest returns the last entry of list (the least recently used
// confirmed session, or the oldest new one) other than skip, or 0.
func (sh *shard) oldest(list, skip ref) ref {
	r := sh.entries[list].prev
	if r == skip {
		r = sh.entries[r].prev
	}
	if r == list {
		return 0
	}
	return r
}

// prefix is the main map's key for k.
func prefix(k *keyBytes) uint64 {
	return binary.LittleEndian.Uint64(k[:8])
}

// get returns the entry under k, or 0.
func (sh *shard) get(k *keyBytes) ref {
	if r := sh.m[prefix(k)]; r != 0 && sh.entries[r].key == *k {
		return r
	}
	if len(sh.overflow) > 0 {
		return sh.overflow[*k]
	}
	return 0
}

// len returns how many entries the shard holds.
func (sh *shard) len() int {
	return len(sh.m) + len(sh.overflow)
}

// touch marks a confirmed entry as the most recently used. A new one
// keeps its place: new sessions go in creation order.
func (sh *shard) touch(r ref) {
	e := &sh.entries[r]
	if e.new || sh.entries[confirmedList].next == r {
		return
	}
	sh.unlink(r)
	sh.pushFront(r)
}

// pushFront puts r first in the list its new flag says.
func (sh *shard) pushFront(r ref) {
	e := &sh.entries[r]
	list := e.list()
	head := sh.entries[list].next
	e.prev, e.next = list, head
	sh.entries[head].prev = r
	sh.entries[list].next = r
}

// confirm moves a new entry to the front of the confirmed list.
func (sh *shard) confirm(r ref) {
	sh.unlink(r)
	sh.entries[r].new = false
	sh.pushFront(r)
}

func (sh *shard) unlink(r ref) {
	e := &sh.entries[r]
	prev, next := e.prev, e.next
	sh.entries[prev].next = next
	sh.entries[next].prev = prev
	e.prev, e.next = 0, 0
}

// add stores e (whose key is not in the shard) with its values first in
// its list (the most recently used, or the newest) and returns its ref. The store bounds the total
// (Store.insert).
func (sh *shard) add(e entry, data []byte) ref {
	var r ref
	if n := len(sh.free); n > 0 {
		r = sh.free[n-1]
		sh.free = sh.free[:n-1]
	} else {
		r = ref(len(sh.entries))
		sh.entries = append(sh.entries, entry{})
		sh.data = append(sh.data, nil)
	}
	sh.entries[r] = e
	sh.data[r] = data
	p := prefix(&e.key)
	if sh.m[p] == 0 {
		sh.m[p] = r
		sh.peak = max(sh.peak, len(sh.m))
	} else {
		if sh.overflow == nil {
			sh.overflow = make(map[keyBytes]ref)
		}
		sh.overflow[e.key] = r
	}
	sh.pushFront(r)
	return r
}

// remove takes r out of the shard and frees its slot.
func (sh *shard) remove(r ref) {
	e := &sh.entries[r]
	if p := prefix(&e.key); sh.m[p] == r {
		delete(sh.m, p)
	} else {
		delete(sh.overflow, e.key)
	}
	sh.unlink(r)
	*e = entry{}
	sh.data[r] = nil
	sh.free = append(sh.free, r)
}
