package memory

import (
	"encoding/binary"
	"encoding/json"
	"sync"
	"sync/atomic"
)

// A session's values are stored as one byte string rather than a Go map: a
// map of five keys costs about 400 bytes of hash table, the string about
// 110. The layout is
//
//	count            uvarint
//	count × {
//	    name         uvarint tag: index<<1|1 for an interned name,
//	                 or length<<1 followed by the name's bytes
//	    value length uvarint
//	    value        bytes (compact JSON, as given)
//	}
//
// Names repeat from session to session (countryCode, cartId, ...), so the
// store keeps one copy of each in a table and a session refers to it by
// index, which also spares Load an allocation per name.

// maxNames bounds the name table: an upstream that invents names per
// session (cart-<id>) would otherwise grow it forever. Names past it are
// stored inline.
const maxNames = 4096

// names is the store's table of interned value names. It only grows.
type names struct {
	mu    sync.RWMutex
	index map[string]uint64 // name → position in list; guarded by mu

	// list is published whole after each append, so that decode reads it
	// with one atomic load and no lock. Appends may write into the same
	// backing array, but only past the length of every published
	// snapshot, which readers never look at.
	list atomic.Pointer[[]string]
}

// lookup returns the index of an interned name.
func (t *names) lookup(name string) (uint64, bool) {
	t.mu.RLock()
	i, ok := t.index[name]
	t.mu.RUnlock()
	return i, ok
}

// intern adds the names of values that are not in the table yet, while
// there is room.
func (t *names) intern(values map[string]json.RawMessage) {
	var missing bool
	t.mu.RLock()
	for name := range values {
		if _, ok := t.index[name]; !ok {
			missing = true
			break
		}
	}
	full := len(t.index) >= maxNames
	t.mu.RUnlock()
	if !missing || full {
		return
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.index == nil {
		t.index = make(map[string]uint64)
	}
	var list []string
	if p := t.list.Load(); p != nil {
		list = *p
	}
	for name := range values {
		if _, ok := t.index[name]; ok || len(list) >= maxNames {
			continue
		}
		// A copy of the name: it must not pin the caller's memory.
		name = string([]byte(name))
		t.index[name] = uint64(len(list))
		list = append(list, name)
	}
	t.list.Store(&list)
}

// encode returns values in the layout above.
func (t *names) encode(values map[string]json.RawMessage) []byte {
	t.intern(values)
	t.mu.RLock()
	defer t.mu.RUnlock()

	size := uvarintLen(uint64(len(values)))
	for name, v := range values {
		if i, ok := t.index[name]; ok {
			size += uvarintLen(i<<1 | 1)
		} else {
			size += uvarintLen(uint64(len(name))<<1) + len(name)
		}
		size += uvarintLen(uint64(len(v))) + len(v)
	}

	b := make([]byte, 0, size)
	b = binary.AppendUvarint(b, uint64(len(values)))
	for name, v := range values {
		if i, ok := t.index[name]; ok {
			b = binary.AppendUvarint(b, i<<1|1)
		} else {
			b = binary.AppendUvarint(b, uint64(len(name))<<1)
			b = append(b, name...)
		}
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

// decode returns the values data holds, as a new map whose values share
// data's bytes. data comes from encode, so it is trusted.
func (t *names) decode(data []byte) map[string]json.RawMessage {
	n, i := binary.Uvarint(data)
	m := make(map[string]json.RawMessage, n)
	var list []string
	if p := t.list.Load(); p != nil {
		list = *p
	}
	for range n {
		tag, w := binary.Uvarint(data[i:])
		i += w
		var name string
		if tag&1 == 1 {
			name = list[tag>>1]
		} else {
			l := int(tag >> 1)
			name = string(data[i : i+l])
			i += l
		}
		l, w := binary.Uvarint(data[i:])
		i += w
		end := i + int(l)
		// The full slice expression caps the value, so a caller that
		// appends to it gets a copy instead of overwriting the next entry.
		m[name] = json.RawMessage(data[i:end:end])
		i = end
	}
	return m
}

// uvarintLen returns how many bytes binary.AppendUvarint uses for x.
func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}
