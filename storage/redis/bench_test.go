package redis

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// Benchmarks against a local redis-server: the cost of the store on the
// request path, loopback round trip included.

// benchStore returns a warm store on a fresh server and a session of ten
// keys (about 400 bytes) under key. The local cache is off unless cached:
// BenchmarkLoad measures the round trip.
func benchStore(b *testing.B, cached bool) (*Store, string) {
	srv := standalone(b)
	cfg := Config{Addresses: []string{srv.Addr()}, LocalCache: -1}
	if cached {
		cfg.LocalCache = 0
	}
	s := newStore(b, cfg)
	loadScripts(b, s)
	key := storage.Key("bench")
	patch := make(map[string]json.RawMessage)
	for i := range 10 {
		patch[fmt.Sprintf("key%d", i)] = json.RawMessage(fmt.Sprintf(`"value %d of a typical session, c_42"`, i))
	}
	now := time.Now()
	if _, err := s.Merge(b.Context(), key, patch, storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	if cached {
		warmBench(b, s, key)
	}
	return s, key
}

// warmBench loads key until the local cache holds it.
func warmBench(b *testing.B, s *Store, key string) {
	deadline := time.Now().Add(5 * time.Second)
	for !cachedKey(s, key) {
		if _, err := s.Load(b.Context(), key); err != nil {
			b.Fatal(err)
		}
		if time.Now().After(deadline) {
			b.Fatal("the local cache did not take the session within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func BenchmarkLoad(b *testing.B) {
	s, key := benchStore(b, false)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Load(b.Context(), key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMerge(b *testing.B) {
	s, key := benchStore(b, false)
	patch := map[string]json.RawMessage{"cart": json.RawMessage(`"gid://shopify/Cart/c1"`)}
	b.ReportAllocs()
	for b.Loop() {
		now := time.Now()
		if _, err := s.Merge(b.Context(), key, patch, storage.MergeOptions{Now: now, IdleTimeout: time.Hour}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoadParallel(b *testing.B) { loadParallel(b, false) }

// loadParallel reads one session from every CPU at once, through the local
// cache or not.
func loadParallel(b *testing.B, cached bool) {
	s, key := benchStore(b, cached)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Load(b.Context(), key); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkLoadCached is a Load served by the local cache: no round trip.
func BenchmarkLoadCached(b *testing.B) {
	s, key := benchStore(b, true)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Load(b.Context(), key); err != nil {
			b.Fatal(err)
		}
	}
	if !cachedKey(s, key) {
		b.Fatal("the session left the cache during the benchmark")
	}
}

func BenchmarkLoadCachedParallel(b *testing.B) { loadParallel(b, true) }
