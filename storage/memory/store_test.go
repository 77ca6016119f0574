package memory

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/caddy-session/caddy-session/storage"
	"github.com/caddy-session/caddy-session/storage/storetest"
)

var ctx = context.Background()

func newTestStore(t *testing.T, opts Options) *Store {
	t.Helper()
	s := New(opts)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store {
		return newTestStore(t, Options{})
	})
}

// TestConformanceAfterClose: Close only stops the sweeper; the store keeps
// its contract.
func TestConformanceAfterClose(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store {
		s := New(Options{})
		s.Close()
		return s
	})
}

func randomKey() string { return storage.Key(rand.Text()) }

// keysInShard returns n fresh keys that all land in shard i of s.
func keysInShard(s *Store, i, n int) []string {
	var keys []string
	for len(keys) < n {
		key := randomKey()
		k := parseKey(key)
		if s.shard(&k) == &s.shards[i] {
			keys = append(keys, key)
		}
	}
	return keys
}

func create(t *testing.T, s storage.Store, key string, values map[string]json.RawMessage) {
	t.Helper()
	now := time.Now()
	if _, err := s.Merge(ctx, key, values, storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour)}); err != nil {
		t.Fatalf("Merge: %v", err)
	}
}

func has(s storage.Store, key string) bool {
	_, err := s.Load(ctx, key)
	return err == nil
}

func TestLRUEviction(t *testing.T) {
	s := newTestStore(t, Options{MaxSessions: 4})
	keys := keysInShard(s, 0, 6)
	for _, key := range keys[:4] {
		create(t, s, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)})
	}
	// Use keys[0] and keys[1] (a read and a touch): keys[2] is now the
	// least recently used, then keys[3].
	if !has(s, keys[0]) {
		t.Fatal("keys[0] missing before the shard was full")
	}
	if err := s.Touch(ctx, keys[1], time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	create(t, s, keys[4], map[string]json.RawMessage{"a": json.RawMessage(`1`)})
	create(t, s, keys[5], map[string]json.RawMessage{"a": json.RawMessage(`1`)})

	for i, want := range []bool{true, true, false, false, true, true} {
		if got := has(s, keys[i]); got != want {
			t.Errorf("keys[%d] present = %v, want %v", i, got, want)
		}
	}
	if got := s.Evictions(); got != 2 {
		t.Errorf("Evictions() = %d, want 2", got)
	}
	if got := s.Len(); got != 4 {
		t.Errorf("Len() = %d, want 4", got)
	}
}

func TestBound(t *testing.T) {
	for _, max := range []int{1, 10, 1000, 10000} {
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			s := newTestStore(t, Options{MaxSessions: max})
			var keys []string
			for i := range 5 * max {
				key := randomKey()
				keys = append(keys, key)
				create(t, s, key, map[string]json.RawMessage{"i": json.RawMessage(fmt.Sprint(i))})
				if s.Len() > max {
					t.Fatalf("after %d sessions: Len() = %d, over the bound %d", i+1, s.Len(), max)
				}
			}
			if s.Len() != max {
				t.Errorf("Len() = %d, want the bound %d", s.Len(), max)
			}
			if got, want := s.Evictions(), uint64(4*max); got != want {
				t.Errorf("Evictions() = %d, want %d", got, want)
			}
			// The most recent sessions are all there: the victims are
			// the least recently used of their shards, and a full shard
			// holds at least 64.
			recent := 1
			if max >= 1000 {
				recent = 20
			}
			for _, key := range keys[len(keys)-recent:] {
				if !has(s, key) {
					t.Errorf("a recent session was evicted")
				}
			}
			// And the count is right: every key is either there or not.
			present := 0
			for _, key := range keys {
				if has(s, key) {
					present++
				}
			}
			if present != max {
				t.Errorf("%d sessions can be loaded, want %d", present, max)
			}
		})
	}
}

// TestEvictFromOtherShard: when the shard that takes a new session holds
// nothing else, the victim comes from another shard, and the bound holds.
func TestEvictFromOtherShard(t *testing.T) {
	s := newTestStore(t, Options{MaxSessions: 2 * minPerShard})
	if len(s.shards) != 2 {
		t.Fatalf("%d shards, want 2", len(s.shards))
	}
	s.max = 1 // a bound smaller than the shard count: only reachable here
	first, second := keysInShard(s, 0, 1)[0], keysInShard(s, 1, 1)[0]
	create(t, s, first, map[string]json.RawMessage{"a": json.RawMessage(`1`)})
	create(t, s, second, map[string]json.RawMessage{"a": json.RawMessage(`1`)})
	if has(s, first) || !has(s, second) || s.Len() != 1 || s.Evictions() != 1 {
		t.Fatalf("first present %v, second present %v, Len %d, Evictions %d; want false, true, 1, 1",
			has(s, first), has(s, second), s.Len(), s.Evictions())
	}
}

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestSweeper(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := newTestStore(t, Options{Now: clock.Now, SweepInterval: 5 * time.Millisecond})
	now := clock.Now()
	for i := range 100 {
		_, err := s.Merge(ctx, randomKey(), map[string]json.RawMessage{"a": json.RawMessage(`1`)}, storage.MergeOptions{
			Create: true, Now: now, Deadline: now.Add(time.Hour), IdleTimeout: time.Duration(i%2+1) * time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond) // sweeps that must remove nothing
	if s.Len() != 100 {
		t.Fatalf("Len() = %d before any expiry, want 100", s.Len())
	}
	clock.Advance(90 * time.Second) // half the sessions idle out
	if !waitFor(func() bool { return s.Len() == 50 }) {
		t.Fatalf("Len() = %d after half the sessions expired, want 50", s.Len())
	}
	clock.Advance(time.Hour)
	if !waitFor(func() bool { return s.Len() == 0 }) {
		t.Fatalf("Len() = %d after every session expired, want 0", s.Len())
	}
}

func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func TestCloseStopsSweeper(t *testing.T) {
	before := runtime.NumGoroutine()
	s := New(Options{SweepInterval: time.Millisecond})
	select {
	case <-s.done:
		t.Fatal("sweeper not running after New")
	default:
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	default:
		t.Fatal("Close returned before the sweeper stopped")
	}
	if err := s.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	if !waitFor(func() bool { return runtime.NumGoroutine() <= before }) {
		t.Fatalf("%d goroutines after Close, %d before New: the sweeper leaked", runtime.NumGoroutine(), before)
	}

	// Still usable, as documented.
	key := randomKey()
	create(t, s, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)})
	if !has(s, key) {
		t.Fatal("store unusable after Close")
	}

	// A store without a sweeper closes too.
	New(Options{SweepInterval: -1}).Close()
}

// TestLoadIsolation: the map Load returns is the caller's; the value bytes
// are shared but capped, so an append cannot reach the store.
func TestLoadIsolation(t *testing.T) {
	s := newTestStore(t, Options{})
	key := randomKey()
	create(t, s, key, map[string]json.RawMessage{"a": json.RawMessage(`"x"`), "b": json.RawMessage(`"y"`)})
	rec, err := s.Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range rec.Values {
		if cap(v) != len(v) {
			t.Errorf("value %q has room to grow into the store's memory: len %d, cap %d", name, len(v), cap(v))
		}
		_ = append(v, "zzzz"...)
	}
	rec.Values["c"] = json.RawMessage(`1`)
	again, err := s.Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Values) != 2 || string(again.Values["a"]) != `"x"` || string(again.Values["b"]) != `"y"` {
		t.Fatalf("stored values changed: %v", again.Values)
	}
}

// TestValuesEncoding round-trips names that are interned and names past
// the table, values of every JSON kind, and sizes that need multi-byte
// lengths.
func TestValuesEncoding(t *testing.T) {
	var tbl names
	// Fill the table, so that the next names are stored inline.
	for i := 0; i < maxNames; i += 100 {
		m := map[string]json.RawMessage{}
		for j := i; j < min(i+100, maxNames); j++ {
			m[fmt.Sprintf("n%d", j)] = json.RawMessage(`0`)
		}
		tbl.intern(m)
	}
	cases := []map[string]json.RawMessage{
		{},
		{"n1": json.RawMessage(`1`)},
		{"n1": json.RawMessage(`"x"`), "inline": json.RawMessage(`{"a":[1,2,null]}`), "n4095": json.RawMessage(`true`)},
		{"big": json.RawMessage(`"` + string(make([]byte, 70000)) + `"`), "n2": json.RawMessage(`null`)},
	}
	for i, values := range cases {
		got := tbl.decode(tbl.encode(values))
		if len(got) != len(values) {
			t.Fatalf("case %d: %d values back, want %d", i, len(got), len(values))
		}
		for name, v := range values {
			if string(got[name]) != string(v) {
				t.Errorf("case %d: %q = %.40q, want %.40q", i, name, got[name], v)
			}
		}
	}
	if _, ok := tbl.lookup("inline"); ok {
		t.Error("a name past maxNames was interned")
	}
}

func TestParseKey(t *testing.T) {
	key := storage.Key("id")
	k := parseKey(key)
	if fmt.Sprintf("%x", k[:]) != key {
		t.Fatalf("parseKey(%s) = %x", key, k)
	}
	others := []string{"", "x", key[:63], key + "0", "A" + key[1:], "g" + key[1:]}
	seen := map[keyBytes]string{k: key}
	for _, o := range others {
		ko := parseKey(o)
		if prev, ok := seen[ko]; ok {
			t.Errorf("parseKey(%q) = parseKey(%q)", o, prev)
		}
		seen[ko] = o
	}
}

// TestLoadAllocs guards the hot path: a Record, a map and its table.
func TestLoadAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	s := newTestStore(t, Options{})
	key := randomKey()
	create(t, s, key, smallSession(1))
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := s.Load(ctx, key); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 3 {
		t.Errorf("Load of a 5-key session: %.1f allocations, want at most 3", allocs)
	}
}

func TestMissingKeyErrors(t *testing.T) {
	s := newTestStore(t, Options{})
	if _, err := s.Load(ctx, "not-a-store-key"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Load of an arbitrary string key = %v, want ErrNotFound", err)
	}
}

// TestPrefixCollision: keys that share the 8 bytes the main map is keyed by
// are still separate sessions, whichever of them comes and goes first.
func TestPrefixCollision(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := newTestStore(t, Options{Now: clock.Now, SweepInterval: -1})
	p := "00112233445566ff"
	keys := []string{
		p + strings.Repeat("a", 48),
		p + strings.Repeat("b", 48),
		p + strings.Repeat("c", 48),
	}
	val := func(i int) map[string]json.RawMessage {
		return map[string]json.RawMessage{"i": json.RawMessage(fmt.Sprint(i))}
	}
	check := func(step string, want ...int) { // want[i] = -1: missing
		t.Helper()
		n := 0
		for i, w := range want {
			rec, err := s.Load(ctx, keys[i])
			switch {
			case w < 0 && !errors.Is(err, storage.ErrNotFound):
				t.Fatalf("%s: keys[%d]: Load = %v, want ErrNotFound", step, i, err)
			case w >= 0 && err != nil:
				t.Fatalf("%s: keys[%d]: Load: %v", step, i, err)
			case w >= 0 && string(rec.Values["i"]) != fmt.Sprint(w):
				t.Fatalf("%s: keys[%d] holds i=%s, want %d", step, i, rec.Values["i"], w)
			}
			if w >= 0 {
				n++
			}
		}
		if s.Len() != n {
			t.Fatalf("%s: Len() = %d, want %d", step, s.Len(), n)
		}
	}
	for i, key := range keys {
		create(t, s, key, val(i))
	}
	check("all three", 0, 1, 2)
	if err := s.Delete(ctx, keys[0]); err != nil { // the one in the main map
		t.Fatal(err)
	}
	check("first deleted", -1, 1, 2)
	create(t, s, keys[0], val(10))
	check("first re-created", 10, 1, 2)
	if _, err := s.Merge(ctx, keys[2], val(12), storage.MergeOptions{Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	check("third merged", 10, 1, 12)
	moved := randomKey()
	if err := s.Rotate(ctx, keys[1], moved); err != nil {
		t.Fatal(err)
	}
	if err := s.Rotate(ctx, moved, keys[1]); err != nil {
		t.Fatal(err)
	}
	check("second rotated away and back", 10, 1, 12)

	// The sweeper finds expired entries in the overflow map too.
	if err := s.Touch(ctx, keys[2], clock.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second)
	s.sweep()
	if s.Len() != 2 {
		t.Fatalf("Len() = %d after the sweep, want 2", s.Len())
	}
	check("third expired", 10, 1, -1)
}

// lruKeys returns a shard's confirmed keys from the most recently used to
// the least, then its new keys from the newest to the oldest.
func lruKeys(sh *shard) []keyBytes {
	var keys []keyBytes
	for _, list := range []ref{confirmedList, newList} {
		for r := sh.entries[list].next; r != list; r = sh.entries[r].next {
			keys = append(keys, sh.entries[r].key)
		}
		keys = append(keys, keyBytes{}) // between the lists
	}
	return keys
}

// After a peak, the sweeper compacts a shard: its arrays shrink to what
// it holds, and the survivors keep their values, times and use order.
func TestSweepCompacts(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	s := newTestStore(t, Options{MaxSessions: 100000, SweepInterval: -1, Now: func() time.Time { return time.Unix(0, now.Load()) }})
	start := time.Unix(0, now.Load())
	const n = 100000
	for i := range n {
		idle := time.Second // most sessions idle out
		if i%10 == 0 {
			idle = time.Hour
		}
		var newTTL time.Duration
		if i%20 == 0 { // half the survivors are new sessions
			newTTL = 2 * time.Hour
		}
		if _, err := s.Merge(ctx, storage.Key(fmt.Sprint("s", i)), map[string]json.RawMessage{"n": json.RawMessage(fmt.Sprint(i))},
			storage.MergeOptions{Create: true, Now: start, Deadline: start.Add(24 * time.Hour), IdleTimeout: idle, NewTTL: newTTL}); err != nil {
			t.Fatal(err)
		}
	}
	// Use some survivors, so that the use order is not the insert order.
	for i := n - 10; i >= 0; i -= 1000 {
		if _, err := s.Load(ctx, storage.Key(fmt.Sprint("s", i))); err != nil {
			t.Fatal(err)
		}
	}
	now.Add(int64(time.Minute))
	var before [][]keyBytes
	for i := range s.shards {
		var live []keyBytes
		for _, k := range lruKeys(&s.shards[i]) {
			sh := &s.shards[i]
			if k == (keyBytes{}) || sh.entries[sh.get(&k)].live(now.Load()) {
				live = append(live, k)
			}
		}
		before = append(before, live)
	}
	s.sweep()
	if s.Len() != n/10 {
		t.Fatalf("after the sweep the store holds %d sessions, want %d", s.Len(), n/10)
	}
	for i := range s.shards {
		sh := &s.shards[i]
		if got := len(sh.entries) - int(firstRef); got != sh.len() || cap(sh.entries) > sh.len()+int(firstRef) || len(sh.free) != 0 {
			t.Fatalf("shard %d: %d slots (cap %d, %d free) for %d sessions: not compacted", i, got, cap(sh.entries), len(sh.free), sh.len())
		}
		if !slices.Equal(lruKeys(sh), before[i]) {
			t.Fatalf("shard %d: the use order changed in the compaction", i)
		}
	}
	for i := 0; i < n; i += 10 {
		rec, err := s.Load(ctx, storage.Key(fmt.Sprint("s", i)))
		if err != nil || string(rec.Values["n"]) != fmt.Sprint(i) || !rec.Created.Equal(start) {
			t.Fatalf("session %d after the compaction: %+v, %v", i, rec, err)
		}
	}
	// The freed capacity is reused: more sessions fit, the bound holds.
	for i := range 1000 {
		if _, err := s.Merge(ctx, storage.Key(fmt.Sprint("new", i)), map[string]json.RawMessage{"n": json.RawMessage(`1`)},
			storage.MergeOptions{Create: true, Now: time.Unix(0, now.Load()), Deadline: start.Add(24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if s.Len() != n/10+1000 {
		t.Fatalf("store holds %d, want %d", s.Len(), n/10+1000)
	}
}

// TestEntryPointerFree guards the entry's layout: no pointer for the
// garbage collector to scan (see entry), and 72 bytes.
func TestEntryPointerFree(t *testing.T) {
	var walk func(reflect.Type) bool
	walk = func(typ reflect.Type) bool {
		switch typ.Kind() {
		case reflect.Struct:
			for i := range typ.NumField() {
				if !walk(typ.Field(i).Type) {
					return false
				}
			}
			return true
		case reflect.Array:
			return walk(typ.Elem())
		case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return true
		}
		return false
	}
	if !walk(reflect.TypeFor[entry]()) {
		t.Fatal("entry holds a pointer (string, slice, map, ...): the collector would scan every session")
	}
	// 80: 72 before Record.Version (8 bytes a session, 8 MB a million).
	if size := unsafe.Sizeof(entry{}); size > 80 {
		t.Fatalf("entry is %d bytes, was 80: a million sessions take %d MB more", size, (size-80)*1000000/1e6)
	}
}
