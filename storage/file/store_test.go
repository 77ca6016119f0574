package file

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
	"github.com/caddy-session/caddy-session/storage/storetest"
)

var ctx = context.Background()

func newTestStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := New(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Options{Sessions: 300}.Run(t, func(t *testing.T) storage.Store {
		return newTestStore(t, t.TempDir(), Options{OnCorrupt: func(path string, err error) {
			t.Errorf("corrupt session file %s: %v", path, err)
		}})
	})
}

// TestConformanceSharedDir: two stores on one directory are one store.
func TestConformanceSharedDir(t *testing.T) {
	storetest.Options{Sessions: 100, Rounds: 5}.Run(t, func(t *testing.T) storage.Store {
		dir := t.TempDir()
		return &twoStores{newTestStore(t, dir, Options{}), newTestStore(t, dir, Options{})}
	})
}

// twoStores sends reads to one store and writes to both, alternately, the
// way two Caddy instances sharing the directory would.
type twoStores struct{ a, b *Store }

func (s *twoStores) pick(key string) (*Store, *Store) {
	if key[len(key)-1]%2 == 0 {
		return s.a, s.b
	}
	return s.b, s.a
}

func (s *twoStores) Load(ctx context.Context, key string) (*storage.Record, error) {
	_, r := s.pick(key)
	return r.Load(ctx, key)
}

func (s *twoStores) Merge(ctx context.Context, key string, patch map[string]json.RawMessage, opts storage.MergeOptions) (*storage.Record, error) {
	w, _ := s.pick(key)
	return w.Merge(ctx, key, patch, opts)
}

func (s *twoStores) Touch(ctx context.Context, key string, expires time.Time) error {
	_, w := s.pick(key)
	return w.Touch(ctx, key, expires)
}

func (s *twoStores) Delete(ctx context.Context, key string) error {
	w, _ := s.pick(key)
	return w.Delete(ctx, key)
}

func (s *twoStores) Rotate(ctx context.Context, oldKey, newKey string) error {
	_, w := s.pick(oldKey)
	return w.Rotate(ctx, oldKey, newKey)
}

func (s *twoStores) Confirm(ctx context.Context, key string, expires time.Time) error {
	_, w := s.pick(key)
	return w.Confirm(ctx, key, expires)
}

var _ storage.Confirmer = (*twoStores)(nil)

func create(t testing.TB, s storage.Store, key string, values map[string]json.RawMessage) *storage.Record {
	t.Helper()
	now := time.Now()
	rec, err := s.Merge(ctx, key, values, storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour)})
	if err != nil {
		t.Fatalf("Merge: %v", err)
	}
	return rec
}

func TestDirectoryErrors(t *testing.T) {
	// A path through a regular file cannot be created.
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(filepath.Join(f, "sessions"), Options{})
	if err == nil || !strings.Contains(err.Error(), "give the Caddy user write access") {
		t.Errorf("New under a file: %v, want an error saying what to do", err)
	}
	if _, err := New(f, Options{}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("New on a file: %v, want 'not a directory'", err)
	}
	if _, err := New("", Options{}); err == nil {
		t.Error("New with no directory succeeded")
	}

	// A directory every user may write to is refused.
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := New(open, Options{}); err == nil || !strings.Contains(err.Error(), "writable by every user") {
		t.Errorf("New on a world-writable directory: %v, want a refusal", err)
	}

	// A directory this user cannot write to (root can write anywhere).
	if os.Geteuid() == 0 {
		t.Log("running as root: skipping the read-only directory case")
		return
	}
	ro := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	_, err = New(ro, Options{})
	if err == nil || !strings.Contains(err.Error(), "is not writable") || !strings.Contains(err.Error(), "give the Caddy user write access") {
		t.Errorf("New on a read-only directory: %v, want 'is not writable' and what to do", err)
	}
}

// TestInvalidKeys: only storage.Key shapes become paths, and the error
// never repeats the key (it could be a session ID passed by mistake).
func TestInvalidKeys(t *testing.T) {
	dir := t.TempDir()
	s := newTestStore(t, dir, Options{})
	now := time.Now()
	good := storage.Key("x")
	for _, key := range []string{"", "../../../../etc/passwd", "secret-session-id-123", strings.ToUpper(good), good[:63], good + "0", "../" + good[3:]} {
		_, err := s.Load(ctx, key)
		if err == nil || errors.Is(err, storage.ErrNotFound) || (key != "" && strings.Contains(err.Error(), key)) {
			t.Errorf("Load(%q) = %v, want an invalid-key error that does not repeat the key", key, err)
		}
		if _, err := s.Merge(ctx, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)}, storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour)}); err == nil {
			t.Errorf("Merge(%q) succeeded", key)
		}
		if err := s.Rotate(ctx, good, key); err == nil {
			t.Errorf("Rotate to %q succeeded", key)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("invalid keys left %d entries in the directory", len(entries))
	}
}

// corruptions are file contents that must each read as no session.
var corruptions = map[string]string{
	"empty":         ``,
	"cut short":     `{"v":1,"created":"2030-01-01T00:00:00Z","deadline":"2030-01-02T00:00:00Z","expires":"2030-01-02T00:00:00Z","values":{"a":`,
	"not JSON":      "\x00\x00\x00\x00garbage",
	"trailing data": `{"v":1,"created":"2030-01-01T00:00:00Z","deadline":"2030-01-02T00:00:00Z","expires":"2030-01-02T00:00:00Z","values":{}}{}`,
	"no values":     `{"v":1,"created":"2030-01-01T00:00:00Z","deadline":"2030-01-02T00:00:00Z","expires":"2030-01-02T00:00:00Z"}`,
	"no expiry":     `{"v":1,"created":"2030-01-01T00:00:00Z","deadline":"2030-01-02T00:00:00Z","values":{}}`,
	"no version":    `{"created":"2030-01-01T00:00:00Z","deadline":"2030-01-02T00:00:00Z","expires":"2030-01-02T00:00:00Z","values":{}}`,
	"bad key":       `{"v":1,"created":"2030-01-01T00:00:00Z","deadline":"2030-01-02T00:00:00Z","expires":"2030-01-02T00:00:00Z","values":{"1x":1}}`,
	"array":         `[]`,
}

func TestCorruptFile(t *testing.T) {
	for name, content := range corruptions {
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			var reported []string
			s := newTestStore(t, t.TempDir(), Options{OnCorrupt: func(path string, err error) {
				mu.Lock()
				reported = append(reported, path)
				mu.Unlock()
			}})
			key := storage.Key(name)
			create(t, s, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)})
			p, _ := s.path(key)
			if err := os.WriteFile(p.file, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}

			if _, err := s.Load(ctx, key); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("Load of a corrupt file = %v, want ErrNotFound", err)
			}
			if len(reported) != 1 || reported[0] != p.file {
				t.Fatalf("OnCorrupt got %v, want [%s]", reported, p.file)
			}
			if _, err := os.Stat(p.file); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("corrupt file not removed: %v", err)
			}
			if _, err := s.Merge(ctx, key, map[string]json.RawMessage{"b": json.RawMessage(`2`)}, storage.MergeOptions{Now: time.Now()}); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("Merge(Create=false) after a corrupt file = %v, want ErrNotFound", err)
			}
		})
	}

	// Merge over a corrupt file starts afresh, and reports it too.
	var n int
	var mu sync.Mutex
	s := newTestStore(t, t.TempDir(), Options{OnCorrupt: func(string, error) { mu.Lock(); n++; mu.Unlock() }})
	key := storage.Key("merge over corrupt")
	create(t, s, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)})
	p, _ := s.path(key)
	os.WriteFile(p.file, []byte("{"), 0o600)
	rec := create(t, s, key, map[string]json.RawMessage{"b": json.RawMessage(`2`)})
	if len(rec.Values) != 1 || n != 1 {
		t.Fatalf("Merge over a corrupt file: values %v, %d reports; want only b, 1 report", rec.Values, n)
	}
}

// TestNewerVersionKept: a file written by a newer store is not served and
// not deleted.
func TestNewerVersionKept(t *testing.T) {
	var reports int
	s := newTestStore(t, t.TempDir(), Options{OnCorrupt: func(string, error) { reports++ }})
	key := storage.Key("v2")
	create(t, s, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)})
	p, _ := s.path(key)
	v2 := `{"v":2,"whatever":true}`
	os.WriteFile(p.file, []byte(v2), 0o600)
	if _, err := s.Load(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Load of a newer file = %v, want ErrNotFound", err)
	}
	if got, _ := os.ReadFile(p.file); string(got) != v2 || reports != 1 {
		t.Fatalf("newer file now %q after %d reports; want it kept, 1 report", got, reports)
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

func TestSweep(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	dir := t.TempDir()
	var corrupt []string
	s := newTestStore(t, dir, Options{Now: clock.Now, SweepInterval: -1, TempMaxAge: time.Minute,
		OnCorrupt: func(path string, err error) { corrupt = append(corrupt, path) }})
	now := clock.Now()
	write := func(name string, idle time.Duration) paths {
		key := storage.Key(name)
		if _, err := s.Merge(ctx, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)}, storage.MergeOptions{
			Create: true, Now: now, Deadline: now.Add(time.Hour), IdleTimeout: idle,
		}); err != nil {
			t.Fatal(err)
		}
		p, _ := s.path(key)
		return p
	}
	short, long := write("short", time.Minute), write("long", 10*time.Minute)
	bad := write("bad", 10*time.Minute)
	os.WriteFile(bad.file, []byte("{"), 0o600)

	// Leftovers of crashed writes, old and new; and a stranger's file.
	oldTemp := filepath.Join(short.dir, tempPrefix+"old")
	newTemp := filepath.Join(short.dir, tempPrefix+"new")
	topTemp := filepath.Join(dir, tempPrefix+"probe-old")
	stranger := filepath.Join(short.dir, "README")
	for _, f := range []string{oldTemp, newTemp, topTemp, stranger} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// An edit or a damaged write dates the corrupt file before the sweep.
	past := now.Add(-2 * time.Minute)
	for _, f := range []string{oldTemp, topTemp, bad.file} {
		os.Chtimes(f, past, past)
	}
	// The fresh temp file is dated by the fake clock, not the real one.
	os.Chtimes(newTemp, now, now)

	exists := func(path string) bool { _, err := os.Stat(path); return err == nil }

	s.sweep()
	if !exists(short.file) || !exists(long.file) {
		t.Fatal("the sweep removed a live session")
	}
	if exists(bad.file) || len(corrupt) != 1 {
		t.Fatalf("corrupt file: exists %v, %d reports; want removed and reported", exists(bad.file), len(corrupt))
	}
	if exists(oldTemp) || exists(topTemp) || !exists(newTemp) {
		t.Fatalf("temp files: old %v, top %v, new %v; want old ones removed, the new one kept", exists(oldTemp), exists(topTemp), exists(newTemp))
	}

	clock.Advance(5 * time.Minute)
	s.sweep()
	if exists(short.file) || !exists(long.file) {
		t.Fatalf("after 5 minutes: short %v, long %v; want short swept, long kept", exists(short.file), exists(long.file))
	}
	if exists(newTemp) {
		t.Fatal("a temp file older than TempMaxAge was kept")
	}
	clock.Advance(time.Hour)
	s.sweep()
	if exists(long.file) {
		t.Fatal("expired session file kept")
	}
	if !exists(stranger) || !exists(filepath.Join(short.dir, lockName)) {
		t.Fatal("the sweep removed a file that is not a session's")
	}
}

// TestSweepReadsFilesWithoutHint: a file whose modification time is not
// its expiry (a filesystem that refused Chtimes, a copy) is still swept
// when expired, and kept when live.
func TestSweepReadsFilesWithoutHint(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := newTestStore(t, t.TempDir(), Options{Now: clock.Now, SweepInterval: -1})
	now := clock.Now()
	key := storage.Key("nohint")
	s.Merge(ctx, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)}, storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), IdleTimeout: time.Minute})
	p, _ := s.path(key)
	past := now.Add(-time.Hour)
	os.Chtimes(p.file, past, past)
	s.sweep()
	if _, err := os.Stat(p.file); err != nil {
		t.Fatal("a live session without the hint was swept")
	}
	clock.Advance(2 * time.Minute)
	s.sweep()
	if _, err := os.Stat(p.file); err == nil {
		t.Fatal("an expired session without the hint was kept")
	}
}

func TestCloseStopsSweeper(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := New(t.TempDir(), Options{SweepInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // a few sweeps
	s.Close()
	select {
	case <-s.done:
	default:
		t.Fatal("Close returned before the sweeper stopped")
	}
	s.Close() // idempotent
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Close, %d before New: the sweeper leaked", n, before)
	}
	key := storage.Key("after close")
	create(t, s, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)})
	if _, err := s.Load(ctx, key); err != nil {
		t.Fatalf("store unusable after Close: %v", err)
	}
}

func TestContextCanceled(t *testing.T) {
	s := newTestStore(t, t.TempDir(), Options{})
	c, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Load(c, storage.Key("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Load with a canceled context = %v", err)
	}
}

// TestValuesVerbatim: values come back as the bytes that were written.
func TestValuesVerbatim(t *testing.T) {
	s := newTestStore(t, t.TempDir(), Options{})
	key := storage.Key("verbatim")
	values := map[string]json.RawMessage{
		"html":    json.RawMessage(`"<b>Tom & Jerry</b>"`),
		"unicode": json.RawMessage(`"caf\u00e9 €\u2028"`),
		"nested":  json.RawMessage(`{"z":1,"a":[true,null,1.50]}`),
	}
	create(t, s, key, values)
	rec, err := s.Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range values {
		if string(rec.Values[name]) != string(v) {
			t.Errorf("%s = %s, want %s", name, rec.Values[name], v)
		}
	}
}
