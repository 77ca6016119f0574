package memory

import (
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// smallSession is a typical storefront session: 5 keys, about 100 bytes of
// values, different for each i.
func smallSession(i int) map[string]json.RawMessage {
	return map[string]json.RawMessage{
		"countryCode": json.RawMessage(`"CA"`),
		"locale":      json.RawMessage(`"fr-CA"`),
		"currency":    json.RawMessage(`"CAD"`),
		"customerId":  json.RawMessage(fmt.Sprintf(`"gid://shopify/Customer/%010d"`, i)),
		"cartId":      json.RawMessage(fmt.Sprintf(`"gid://shopify/Cart/c1-%032x"`, i)),
	}
}

// fill writes n small sessions into s from all CPUs, and returns their keys
// when keep is set. It stores what Merge would, without Merge's Apply (key
// checks, limits), which would make the million-session setup several
// times slower; TestFillMatchesMerge keeps the two in step.
func fill(tb testing.TB, s *Store, n int, keep bool) []string {
	var keys []string
	if keep {
		keys = make([]string, n)
	}
	now := time.Now()
	deadline := now.Add(24 * time.Hour)
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				key := storage.Key(fmt.Sprint("bench-session-", i))
				if keep {
					keys[i] = key
				}
				put(s, key, smallSession(i), now, deadline, now.Add(time.Hour))
			}
		}()
	}
	wg.Wait()
	return keys
}

// put stores a new session as Merge(Create=true) does.
func put(s *Store, key string, values map[string]json.RawMessage, created, deadline, expires time.Time) {
	k := parseKey(key)
	sh := s.shard(&k)
	e := entry{
		key:      k,
		created:  created.UnixNano(),
		deadline: deadline.UnixNano(),
		expires:  expires.UnixNano(),
	}
	data := s.names.encode(values)
	sh.mu.Lock()
	if old := sh.get(&k); old != 0 {
		s.remove(sh, old)
	}
	s.insert(sh, e, data)
	sh.mu.Unlock()
}

// TestFillMatchesMerge: a session put by the benchmarks' fast path reads
// back as one written by Merge.
func TestFillMatchesMerge(t *testing.T) {
	s := newTestStore(t, Options{})
	now := time.Now()
	deadline, expires := now.Add(time.Hour), now.Add(time.Minute)
	put(s, storage.Key("put"), smallSession(7), now, deadline, expires)
	if _, err := s.Merge(ctx, storage.Key("merge"), smallSession(7), storage.MergeOptions{
		Create: true, Now: now, Deadline: deadline, IdleTimeout: time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	a, err1 := s.Load(ctx, storage.Key("put"))
	b, err2 := s.Load(ctx, storage.Key("merge"))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("put: %+v\nmerge: %+v", a, b)
	}
}

// filled caches the stores BenchmarkMemoryLoad reads, so that the 1M setup
// runs once, not once per b.N round.
var filled struct {
	sync.Mutex
	stores map[int]*Store
	keys   map[int][]string
}

func filledStore(b *testing.B, n int) (*Store, []string) {
	filled.Lock()
	defer filled.Unlock()
	if filled.stores == nil {
		filled.stores, filled.keys = map[int]*Store{}, map[int][]string{}
	}
	if s := filled.stores[n]; s != nil {
		return s, filled.keys[n]
	}
	// MaxBytes lifted: a million small sessions count about 280 MB, past
	// the 256 MiB default.
	s := New(Options{MaxSessions: n, MaxBytes: 1 << 40, SweepInterval: -1})
	keys := fill(b, s, n, true)
	if s.Len() != n {
		b.Fatalf("filled %d sessions, store holds %d", n, s.Len())
	}
	filled.stores[n], filled.keys[n] = s, keys
	return s, keys
}

// BenchmarkMemoryLoad reads random sessions of a store holding 1000 or a
// million: the difference is the cost of cache misses, not of the
// algorithm.
func BenchmarkMemoryLoad(b *testing.B) {
	for _, n := range []int{1000, 1000000} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			if n > 1000 && testing.Short() {
				b.Skip("large setup")
			}
			s, keys := filledStore(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			x := uint64(88172645463325252)
			for range b.N {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				if _, err := s.Load(ctx, keys[x%uint64(len(keys))]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMemoryLoadParallel reads from every CPU at once: the shards
// should keep this close to BenchmarkMemoryLoad divided by GOMAXPROCS.
func BenchmarkMemoryLoadParallel(b *testing.B) {
	s, keys := filledStore(b, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.Load(ctx, keys[i%len(keys)]); err != nil {
				b.Fatal(err)
			}
			i += 7
		}
	})
}

// BenchmarkMemoryMerge writes one key into an existing 5-key session, the
// common write: an upstream setting a cart ID.
func BenchmarkMemoryMerge(b *testing.B) {
	s := New(Options{SweepInterval: -1})
	defer s.Close()
	key := storage.Key("bench")
	now := time.Now()
	if _, err := s.Merge(ctx, key, smallSession(0), storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	patch := map[string]json.RawMessage{"cartId": json.RawMessage(`"gid://shopify/Cart/c1-00000000000000000000000000000001"`)}
	opts := storage.MergeOptions{Now: now, IdleTimeout: 30 * time.Minute}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := s.Merge(ctx, key, patch, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemoryHeap reports the heap a million small sessions take
// (HeapAlloc after a GC, before and after filling the store), and fails
// past the 300 MB budget.
func BenchmarkMemoryHeap(b *testing.B) {
	const n = 1000000
	if testing.Short() {
		b.Skip("large setup")
	}
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := New(Options{MaxSessions: n, MaxBytes: 1 << 40, SweepInterval: -1})
		fill(b, s, n, false)
		runtime.GC()
		runtime.ReadMemStats(&after)
		if s.Len() != n {
			b.Fatalf("store holds %d sessions, want %d", s.Len(), n)
		}
		used := float64(after.HeapAlloc) - float64(before.HeapAlloc)
		b.ReportMetric(used/1e6, "MB/1M-sessions")
		b.ReportMetric(used/n, "B/session")
		if used > 300e6 {
			b.Errorf("a million small sessions take %.0f MB, over the 300 MB budget", used/1e6)
		}
		runtime.KeepAlive(s)
	}
}

// BenchmarkMemoryGC is one full garbage collection of a heap holding a
// million small sessions: what the store costs every GC cycle of the
// process it lives in, whatever the traffic (CPU time, in ns/op, on all
// the cores the collector uses). A store that holds its sessions in
// pointer-free arrays is marked without being scanned.
func BenchmarkMemoryGC(b *testing.B) {
	const n = 1000000
	if testing.Short() {
		b.Skip("large setup")
	}
	s := New(Options{MaxSessions: n, MaxBytes: 1 << 40, SweepInterval: -1})
	fill(b, s, n, false)
	runtime.GC()
	b.ResetTimer()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for b.Loop() {
		runtime.GC()
	}
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.PauseTotalNs-before.PauseTotalNs)/float64(b.N), "pause-ns/op")
	b.ReportMetric(after.GCCPUFraction, "gc-cpu-fraction")
	runtime.KeepAlive(s)
}

// BenchmarkMemoryBytes writes 20,000 new sessions of 60 KiB (1.2 GB in
// all) through a store bounded to 64 MiB, and reports what the store
// counts (Bytes) against the heap it really takes (HeapAlloc after a GC,
// less the heap before), and the peak heap the Go runtime held (HeapSys):
// how well MaxBytes bounds the process. It asserts nothing about time.
func BenchmarkMemoryBytes(b *testing.B) {
	const n, maxBytes = 20000, 64 << 20
	blob := json.RawMessage(`"` + strings.Repeat("x", 60<<10) + `"`)
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := New(Options{MaxBytes: maxBytes, SweepInterval: -1})
		now := time.Now()
		for i := range n {
			if _, err := s.Merge(ctx, storage.Key(fmt.Sprint("big-", i)), map[string]json.RawMessage{"i": json.RawMessage(fmt.Sprint(i)), "blob": blob},
				storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), NewTTL: time.Hour}); err != nil {
				b.Fatal(err)
			}
			if s.Bytes() > maxBytes {
				b.Fatalf("Bytes() = %d, over MaxBytes", s.Bytes())
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
		b.ReportMetric(float64(s.Bytes())/(1<<20), "counted-MiB")
		b.ReportMetric(heap/(1<<20), "heap-MiB")
		b.ReportMetric(float64(after.HeapSys)/(1<<20), "heapsys-MiB")
		b.ReportMetric(float64(s.Len()), "sessions")
		b.ReportMetric(heap/float64(s.Bytes()), "heap/counted")
		runtime.KeepAlive(s)
		s.Close()
	}
}
