package postgres

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
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
// GOMAXPROCS (8 on 2 cores), within the pool's 10 connections. Beside
// ns/op, each reports server-ns/op: the server's CPU time per operation
// (Linux), which a request pays on a machine shared with the server.

// serverCPU returns the CPU time (user+system) the PostgreSQL server's
// processes have used so far (those pg_stat_activity lists: the backends,
// the WAL writer, the checkpointer...), from /proc: Linux only, ok false
// elsewhere. Clock ticks of 10ms: enough over a second of benchmark.
func serverCPU(b *testing.B, s *Store) (cpu time.Duration, ok bool) {
	rows, err := s.pool.Query(b.Context(), `SELECT pid FROM pg_stat_activity`)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			b.Fatal(err)
		}
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return 0, false
		}
		// Fields count from the last ')': utime and stime are 14 and 15.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 13 {
			return 0, false
		}
		u, err1 := strconv.ParseInt(f[11], 10, 64)
		k, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, false
		}
		cpu += time.Duration(u+k) * 10 * time.Millisecond
	}
	return cpu, rows.Err() == nil
}

// measured runs the sub-benchmark bench and reports, beside its ns/op,
// the server's CPU time per operation (server-ns/op): what each operation
// costs the machine beyond the client's own work.
func measured(b *testing.B, s *Store, name string, bench func(b *testing.B)) {
	b.Run(name, func(b *testing.B) {
		before, ok1 := serverCPU(b, s)
		bench(b)
		after, ok2 := serverCPU(b, s)
		if ok1 && ok2 && b.N > 0 {
			b.ReportMetric(float64(after-before)/float64(b.N), "server-ns/op")
		}
	})
}

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
	for _, sql := range []string{`VACUUM ANALYZE bench_sessions`, `CHECKPOINT`} {
		if out, err := srv.Psql(sql); err != nil {
			b.Fatalf("%s: %v: %s", sql, err, out)
		}
	}
	var seq atomic.Int64
	// Warm up a fresh server (its caches, the pool's connections and
	// prepared statements): the first sub-benchmark measured up to twice
	// as slow without it.
	warm := benchCreate(b, s, "bench-warm")
	for range 2000 {
		if _, err := s.Load(b.Context(), key); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Merge(b.Context(), warm, benchPatch, storage.MergeOptions{Now: time.Now(), IdleTimeout: time.Hour}); err != nil {
			b.Fatal(err)
		}
	}

	measured(b, s, "Load", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Load(b.Context(), key); err != nil {
				b.Fatal(err)
			}
		}
	})
	measured(b, s, "LoadParallel", func(b *testing.B) {
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
	measured(b, s, "LoadMissing", func(b *testing.B) {
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
	measured(b, s, "Merge", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := merge(b, key); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Each goroutine writes a session of its own, as concurrent
	// visitors do.
	measured(b, s, "MergeParallel", func(b *testing.B) {
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
	measured(b, s, "MergeParallelSameSession", func(b *testing.B) {
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
	measured(b, s, "Touch", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := s.Touch(b.Context(), key, time.Now().Add(time.Hour)); err != nil {
				b.Fatal(err)
			}
		}
	})
	measured(b, s, "Confirm", func(b *testing.B) {
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
	if len(rec.Values) != 5 {
		b.Fatalf("after the benchmarks the session holds %d keys, want its 5", len(rec.Values))
	}
}
