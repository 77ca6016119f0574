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
// keys (about 400 bytes) under key.
func benchStore(b *testing.B) (*Store, string) {
	srv := standalone(b)
	s := newStore(b, Config{Addresses: []string{srv.Addr()}})
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
	return s, key
}

func BenchmarkLoad(b *testing.B) {
	s, key := benchStore(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Load(b.Context(), key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMerge(b *testing.B) {
	s, key := benchStore(b)
	patch := map[string]json.RawMessage{"cart": json.RawMessage(`"gid://shopify/Cart/c1"`)}
	b.ReportAllocs()
	for b.Loop() {
		now := time.Now()
		if _, err := s.Merge(b.Context(), key, patch, storage.MergeOptions{Now: now, IdleTimeout: time.Hour}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoadParallel(b *testing.B) {
	s, key := benchStore(b)
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
