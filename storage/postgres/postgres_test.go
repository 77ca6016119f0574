package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-session/caddy-session/internal/testkit"
	"github.com/caddy-session/caddy-session/storage"
	"github.com/caddy-session/caddy-session/storage/storetest"
)

// server is the PostgreSQL server of TestPostgres; each store gets a
// table of its own.
var (
	server   *testkit.Postgres
	tableSeq struct {
		sync.Mutex
		n int
	}
)

func newTable() string {
	tableSeq.Lock()
	defer tableSeq.Unlock()
	tableSeq.n++
	return "sessions_" + strconv.Itoa(tableSeq.n)
}

// newStore returns a store on a fresh table of the test's server.
func newStore(t *testing.T, url string, cfg Config) *Store {
	t.Helper()
	cfg.DSN = url
	if cfg.Table == "" {
		cfg.Table = newTable()
	}
	cfg.CreateTable = true
	if cfg.Timeout == 0 {
		// The conformance kit races 20 goroutines on a shared 2-core
		// machine under -race: give each operation room.
		cfg.Timeout = 10 * time.Second
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPostgres(t *testing.T) {
	server = testkit.StartPostgres(t) // skips when PostgreSQL is missing
	url := server.URL()
	t.Run("Conformance", func(t *testing.T) {
		storetest.Options{Precision: time.Microsecond}.Run(t, func(t *testing.T) storage.Store {
			return newStore(t, url, Config{})
		})
	})
	t.Run("Indexer", func(t *testing.T) {
		storetest.RunIndexer(t, func(t *testing.T) storage.Store {
			return newStore(t, url, Config{})
		})
	})
	t.Run("CreateTable", func(t *testing.T) {
		table := newTable()
		s := newStore(t, url, Config{Table: table})
		if out, _ := server.Psql(`SELECT to_regclass('` + table + `') IS NULL`); out != "t" {
			t.Fatalf("table %s exists before first use (%q): New must not touch the database", table, out)
		}
		if _, err := s.Load(context.Background(), storage.Key("x")); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Load on a fresh table = %v, want ErrNotFound", err)
		}
		out, err := server.Psql(`SELECT indexname FROM pg_indexes WHERE tablename = '` + table + `' ORDER BY 1`)
		if err != nil {
			t.Fatalf("psql: %v: %s", err, out)
		}
		if !strings.Contains(out, table+"_expires_idx") || !strings.Contains(out, table+"_pkey") {
			t.Fatalf("indexes of %s = %q, want the primary key and %s_expires_idx", table, out, table)
		}
		// Without CreateTable a missing table is an error, not a miss.
		s2, err := New(Config{DSN: url, Table: newTable()})
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if _, err := s2.Load(context.Background(), storage.Key("x")); !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("Load without the table = %v, want ErrUnavailable", err)
		}
	})
	t.Run("Sweep", func(t *testing.T) {
		s := newStore(t, url, Config{SweepInterval: -1})
		ctx := context.Background()
		now := time.Now()
		short, long := storage.Key("short"), storage.Key("long")
		for key, d := range map[string]time.Duration{short: 50 * time.Millisecond, long: time.Hour} {
			if _, err := s.Merge(ctx, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)}, storage.MergeOptions{
				Create: true, Now: now, Deadline: now.Add(d),
			}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond)
		n, err := s.Sweep(ctx)
		if err != nil || n != 1 {
			t.Fatalf("Sweep = %d, %v; want 1 row deleted", n, err)
		}
		out, _ := server.Psql(`SELECT count(*) FROM ` + s.cfg.Table)
		if out != "1" {
			t.Fatalf("rows after the sweep = %s, want 1", out)
		}
		if _, err := s.Load(ctx, long); err != nil {
			t.Fatalf("Load of the live session after the sweep: %v", err)
		}
	})
	t.Run("SweepOneAtATime", func(t *testing.T) {
		// While another instance holds the sweeper's advisory lock, Sweep
		// deletes nothing; once it is released, it does.
		s := newStore(t, url, Config{SweepInterval: -1})
		ctx := context.Background()
		now := time.Now()
		if _, err := s.Merge(ctx, storage.Key("gone"), map[string]json.RawMessage{"a": json.RawMessage(`1`)}, storage.MergeOptions{
			Create: true, Now: now, Deadline: now.Add(10 * time.Millisecond),
		}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		other, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close(ctx)
		tx, err := other.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.lockID); err != nil {
			t.Fatal(err)
		}
		if n, err := s.Sweep(ctx); err != nil || n != 0 {
			t.Fatalf("Sweep while another instance sweeps = %d, %v; want 0, nil", n, err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := s.Sweep(ctx); err != nil || n != 1 {
			t.Fatalf("Sweep after the other instance is done = %d, %v; want 1, nil", n, err)
		}
	})
	t.Run("TwoInstances", func(t *testing.T) {
		// Two stores (two pools, as two Caddy instances) merging into one
		// session: the row lock, not a Go lock, keeps every write.
		a := newStore(t, url, Config{})
		b := newStore(t, url, Config{Table: a.cfg.Table})
		ctx := context.Background()
		key := storage.Key("shared")
		now := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for i := range 40 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.Merge(ctx, key, map[string]json.RawMessage{"k" + strconv.Itoa(i): json.RawMessage(strconv.Itoa(i))},
					storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour)})
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		rec, err := b.Load(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.Values) != 40 {
			t.Fatalf("after 40 concurrent merges from two instances the session holds %d keys, want 40", len(rec.Values))
		}
	})
	t.Run("Sweeper", func(t *testing.T) {
		s := newStore(t, url, Config{SweepInterval: 50 * time.Millisecond})
		ctx := context.Background()
		now := time.Now()
		if _, err := s.Merge(ctx, storage.Key("a"), map[string]json.RawMessage{"a": json.RawMessage(`1`)}, storage.MergeOptions{
			Create: true, Now: now, Deadline: now.Add(20 * time.Millisecond),
		}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			out, _ := server.Psql(`SELECT count(*) FROM ` + s.cfg.Table)
			if out == "0" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the sweeper left %s expired rows", out)
			}
			time.Sleep(50 * time.Millisecond)
		}
		s.Close()
		s.Close() // idempotent
	})
}

// TestNeverDials: New does not connect, and a database that does not
// answer fails the operation with ErrUnavailable within the timeout.
func TestNeverDials(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // a closed port

	s, err := New(Config{DSN: "postgres://postgres@" + addr + "/postgres?sslmode=disable", CreateTable: true})
	if err != nil {
		t.Fatalf("New with an unreachable DSN: %v", err)
	}
	defer s.Close()
	start := time.Now()
	_, err = s.Load(context.Background(), storage.Key("x"))
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Load = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*DefaultTimeout {
		t.Fatalf("Load took %v, want about the timeout (%v) at most", d, DefaultTimeout)
	}

	now := time.Now()
	if _, err := s.Merge(context.Background(), storage.Key("x"), map[string]json.RawMessage{"a": json.RawMessage(`1`)},
		storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour)}); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Merge = %v, want ErrUnavailable", err)
	}
	if _, err := s.Count(context.Background()); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Count = %v, want ErrUnavailable", err)
	}

	// A server that accepts and never answers: the timeout bounds the wait.
	stall, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stall.Close()
	go func() {
		for {
			c, err := stall.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	s2, err := New(Config{DSN: "postgres://postgres@" + stall.Addr().String() + "/postgres?sslmode=disable", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	start = time.Now()
	err = s2.Delete(context.Background(), storage.Key("x"))
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Delete against a stalled server = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Delete against a stalled server took %v, want about 200ms", d)
	}
}

func TestBadConfig(t *testing.T) {
	if _, err := New(Config{DSN: "postgres://x", Table: "a..b"}); err == nil {
		t.Fatal("New accepted the table name a..b")
	}
	if _, err := New(Config{DSN: "::not a dsn"}); err == nil {
		t.Fatal("New accepted a malformed DSN")
	}
}
