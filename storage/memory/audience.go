package memory

import (
	"strings"
	"sync"
	"sync/atomic"
)

// audiences interns Record.Audience: an entry holds a uint32 id, not a
// string, so that the entries array stays free of pointers (see entry).
// Id 0 is the empty audience and is never counted.
//
// Each id counts the sessions that hold it and is freed with the last one,
// so the table holds only the audiences of sessions in the store: an
// audience taken from requests (a host name) cannot grow it without bound.
//
// Whoever stores an id in an entry holds one reference to it (acquire or
// retain), which Store.remove releases. A name is read (name) only while a
// reference is held, under the lock of the shard of an entry holding it:
// the id cannot be freed and reused meanwhile.
type audiences struct {
	mu   sync.RWMutex
	ids  map[string]uint32 // guarded by mu
	free []uint32          // ids to reuse; guarded by mu

	// list[id] is the audience of id, nil when free. It is published
	// whole after each change (copy on write), so name reads it with
	// one atomic load and no lock.
	list atomic.Pointer[[]*audience]
}

type audience struct {
	name string
	refs atomic.Int64
}

// acquire returns the id of name, holding one reference to it.
func (t *audiences) acquire(name string) uint32 {
	if name == "" {
		return 0
	}
	t.mu.RLock()
	id, ok := t.ids[name]
	if ok {
		// Under the read lock: release frees an id only under the write
		// lock, after checking that nobody took it meanwhile.
		(*t.list.Load())[id].refs.Add(1)
	}
	t.mu.RUnlock()
	if ok {
		return id
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	var list []*audience
	if p := t.list.Load(); p != nil {
		list = *p
	}
	if id, ok := t.ids[name]; ok {
		list[id].refs.Add(1)
		return id
	}
	if t.ids == nil {
		t.ids = make(map[string]uint32)
		list = []*audience{nil} // id 0: ""
	}
	a := &audience{name: strings.Clone(name)} // not pinning the caller's memory
	a.refs.Store(1)
	list = append([]*audience(nil), list...)
	if n := len(t.free); n > 0 {
		id = t.free[n-1]
		t.free = t.free[:n-1]
		list[id] = a
	} else {
		id = uint32(len(list))
		list = append(list, a)
	}
	t.ids[a.name] = id
	t.list.Store(&list)
	return id
}

// retain adds a reference to id, which the caller holds one of.
func (t *audiences) retain(id uint32) {
	if id != 0 {
		(*t.list.Load())[id].refs.Add(1)
	}
}

// release drops a reference to id, and frees id with the last one.
func (t *audiences) release(id uint32) {
	if id == 0 || (*t.list.Load())[id].refs.Add(-1) > 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	list := *t.list.Load()
	a := list[id]
	if a == nil || a.refs.Load() > 0 { // freed, or acquired again, meanwhile
		return
	}
	delete(t.ids, a.name)
	list = append([]*audience(nil), list...)
	list[id] = nil
	t.free = append(t.free, id)
	t.list.Store(&list)
}

// name returns the audience of id, which the caller holds a reference to.
func (t *audiences) name(id uint32) string {
	if id == 0 {
		return ""
	}
	return (*t.list.Load())[id].name
}

// len returns how many audiences the table holds, for tests.
func (t *audiences) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.ids)
}
