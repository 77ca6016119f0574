package file

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// The file benchmarks measure the filesystem under t.TempDir more than the
// code: every write is two fsyncs (file and folder).

func smallSession(i int) map[string]json.RawMessage {
	return map[string]json.RawMessage{
		"countryCode": json.RawMessage(`"CA"`),
		"locale":      json.RawMessage(`"fr-CA"`),
		"currency":    json.RawMessage(`"CAD"`),
		"customerId":  json.RawMessage(fmt.Sprintf(`"gid://shopify/Customer/%010d"`, i)),
		"cartId":      json.RawMessage(fmt.Sprintf(`"gid://shopify/Cart/c1-%032x"`, i)),
	}
}

// BenchmarkFileMerge writes one key into an existing session, one write
// after another.
func BenchmarkFileMerge(b *testing.B) {
	s := newTestStore(b, b.TempDir(), Options{SweepInterval: -1})
	key := storage.Key("bench")
	create(b, s, key, smallSession(0))
	patch := map[string]json.RawMessage{"cartId": json.RawMessage(`"gid://shopify/Cart/c1-00000000000000000000000000000001"`)}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := s.Merge(ctx, key, patch, storage.MergeOptions{Now: time.Now(), IdleTimeout: 30 * time.Minute}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFileMergeParallel writes into many sessions from every CPU:
// the throughput of a busy site, as far as the disk allows.
func BenchmarkFileMergeParallel(b *testing.B) {
	s := newTestStore(b, b.TempDir(), Options{SweepInterval: -1})
	const n = 256
	keys := make([]string, n)
	for i := range keys {
		keys[i] = storage.Key(fmt.Sprint("bench-", i))
		create(b, s, keys[i], smallSession(i))
	}
	patch := map[string]json.RawMessage{"cartId": json.RawMessage(`"gid://shopify/Cart/c1-00000000000000000000000000000001"`)}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.Merge(ctx, keys[i%n], patch, storage.MergeOptions{Now: time.Now(), IdleTimeout: 30 * time.Minute}); err != nil {
				b.Error(err)
				return
			}
			i += 7
		}
	})
}

// BenchmarkFileLoad reads an existing session: no lock, one file read.
func BenchmarkFileLoad(b *testing.B) {
	s := newTestStore(b, b.TempDir(), Options{SweepInterval: -1})
	key := storage.Key("bench")
	create(b, s, key, smallSession(0))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := s.Load(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}
