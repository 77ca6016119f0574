package postgres

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/internal/testkit"
	"github.com/caddy-session/caddy-session/storage"
)

// Benchmarks against a private PostgreSQL server started for them
// (testkit.StartPostgres: a fresh cluster on a spare loopback port, with
// fsync, full_page_writes and synchronous_commit off, so that a commit
// waits for no disk): the cost of the store on the request path, the
// loopback round trips and the server's own work included. The server
// shares the machine's CPUs with the benchmark.
//
// One server for all of them: BenchmarkPostgres runs once and starts it,
// its sub-benchmarks measure. The parallel ones run 4 goroutines per
// GOMAXPROCS (8 on 2 cores), within the pool's 10 connections.

// benchSession is a typical storefront session, the one bench/run.sh
// creates: 5 keys, 153 bytes of JSON.
func benchSession() map[string]json.RawMessage {
	return map[string]json.RawMessage{
		"countryCode":    json.RawMessage(`"DE"`),
		"currency":       json.RawMessage(`"EUR"`),
		"locale":         json.RawMessage(`"de-DE"`),
		"cart":           json.RawMessage(`"gid://shopify/Cart/c1-7f3a9b2e4d6c"`),
		"recentlyViewed": json.RawMessage(`["p_1029","p_2210","p_3381","p_4417"]`),
	}
}

// benchPatch is a small API write: one key of the session.
var benchPatch = map[string]json.RawMessage{"cart": json.RawMessage(`"gid://shopify/Cart/c2-0a1b2c3d4e5f"`)}

// benchCreate stores a new, confirmed session of benchSession under a key
// made of name and returns the key.
func benchCreate(b *testing.B, s *Store, name string) string {
	key := storage.Key(name)
	now := time.Now()
	if _, err := s.Merge(b.Context(), key, benchSession(), storage.MergeOptions{
		Create: true, Now: now, Deadline: now.Add(24 * time.Hour), IdleTimeout: time.Hour,
	}); err != nil {
		b.Fatal(err)
	}
	return key
}

func BenchmarkPostgres(b *testing.B) {
	srv := testkit.StartPostgres(b) // skips when PostgreSQL is missing
	s, err := New(Config{DSN: srv.URL(), Table: "bench_sessions", CreateTable: true, SweepInterval: -1,
		Timeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	key := benchCreate(b, s, "bench")
	// Some rows beside it, so that the lookups go through a real index.
	for i := range 1000 {
		benchCreate(b, s, fmt.Sprint("bench-other-", i))
	}
	if out, err := srv.Psql(`ANALYZE bench_sessions`); err != nil {
		b.Fatalf("analyze: %v: %s", err, out)
	}
	var seq atomic.Int64

	b.Run("Load", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Load(b.Context(), key); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("LoadParallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Load(b.Context(), key); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	// A miss: a cookie whose session is gone.
	b.Run("LoadMissing", func(b *testing.B) {
		missing := storage.Key("bench-missing")
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Load(b.Context(), missing); err != storage.ErrNotFound {
				b.Fatalf("Load of a missing session = %v, want ErrNotFound", err)
			}
		}
	})
	merge := func(b *testing.B, key string) error {
		_, err := s.Merge(b.Context(), key, benchPatch, storage.MergeOptions{
			Now: time.Now(), IdleTimeout: time.Hour, Confirm: true,
		})
		return err
	}
	// Merge is one transaction: BEGIN, SELECT ... FOR UPDATE, UPDATE,
	// COMMIT, four round trips.
	b.Run("Merge", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := merge(b, key); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Each goroutine writes a session of its own, as concurrent
	// visitors do.
	b.Run("MergeParallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			own := benchCreate(b, s, fmt.Sprint("bench-writer-", seq.Add(1)))
			for pb.Next() {
				if err := merge(b, own); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	// Every goroutine writes the same session: the row lock serialises
	// the transactions.
	b.Run("MergeParallelSameSession", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := merge(b, key); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	// Touch and Confirm are one UPDATE each (an idle-timeout extension, a
	// new session's second request).
	b.Run("Touch", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := s.Touch(b.Context(), key, time.Now().Add(time.Hour)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Confirm", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := s.Confirm(b.Context(), key, time.Now().Add(time.Hour)); err != nil {
				b.Fatal(err)
			}
		}
	})
	rec, err := s.Load(b.Context(), key)
	if err != nil {
		b.Fatal(err)
	}
	if len(rec.Values) != 5 || string(rec.Values["cart"]) != string(benchPatch["cart"]) {
		b.Fatalf("after the benchmarks the session holds %v, want its 5 keys with the patched cart", rec.Values)
	}
}
