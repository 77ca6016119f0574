package caddystorage

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"

	"github.com/caddy-session/caddy-session/storage"
)

// newTestStore returns a store on a fresh file storage, and that storage.
func newTestStore(t *testing.T, prefix string) (*Store, *certmagic.FileStorage) {
	t.Helper()
	fs := &certmagic.FileStorage{Path: t.TempDir()}
	s, err := New(fs, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return s, fs
}

func newKey() string { return storage.Key(rand.Text()) }

func create(t *testing.T, s *Store, key string, values string, now, deadline time.Time, idle time.Duration) {
	t.Helper()
	var v map[string]json.RawMessage
	if err := json.Unmarshal([]byte(values), &v); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Merge(context.Background(), key, v, storage.MergeOptions{
		Create: true, Now: now, Deadline: deadline, IdleTimeout: idle,
	}); err != nil {
		t.Fatalf("Merge: %v", err)
	}
}

// TestRecordOnDisk: one JSON file per session, named by the store key
// under the prefix, carrying its times; the session ID appears nowhere.
func TestRecordOnDisk(t *testing.T) {
	s, fs := newTestStore(t, "/shop/sessions/")
	id := rand.Text()
	key := storage.Key(id)
	now := time.Now()
	create(t, s, key, `{"countryCode":"DE","note":"<b>"}`, now, now.Add(time.Hour), 10*time.Minute)

	dir := filepath.Join(fs.Path, "shop", "sessions")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != key+".json" {
		t.Fatalf("files under the prefix: %v, want only %s.json", entries, key)
	}
	data, err := os.ReadFile(filepath.Join(dir, key+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), id) {
		t.Fatal("the record holds the session ID")
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("record is not JSON: %v\n%s", err, data)
	}
	if r.Version != 1 || string(r.Values["countryCode"]) != `"DE"` || string(r.Values["note"]) != `"<b>"` ||
		!r.Deadline.Equal(now.Add(time.Hour)) || !r.Expires.Equal(now.Add(10*time.Minute)) || !r.Created.Equal(now) {
		t.Fatalf("record = %s", data)
	}
}

// TestExpiredRemovedWhenSeen: Load never returns an expired record and
// removes it; so do Merge without Create and Touch.
func TestExpiredRemovedWhenSeen(t *testing.T) {
	s, fs := newTestStore(t, "")
	ctx := context.Background()
	past := time.Now().Add(-time.Hour)
	file := func(key string) string { return fs.Filename(s.name(key)) }

	for _, op := range []struct {
		name string
		run  func(key string) error
	}{
		{"Load", func(key string) error {
			_, err := s.Load(ctx, key)
			if !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			return nil
		}},
		{"Merge", func(key string) error {
			_, err := s.Merge(ctx, key, nil, storage.MergeOptions{Now: time.Now()})
			if !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			return nil
		}},
		{"Touch", func(key string) error { return s.Touch(ctx, key, time.Now().Add(time.Hour)) }},
	} {
		key := newKey()
		create(t, s, key, `{"a":1}`, past, past.Add(time.Minute), 0)
		if _, err := os.Stat(file(key)); err != nil {
			t.Fatalf("%s: the expired record was not written: %v", op.name, err)
		}
		if err := op.run(key); err != nil {
			t.Fatalf("%s of an expired session: %v", op.name, err)
		}
		if _, err := os.Stat(file(key)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s of an expired session left its record (%v)", op.name, err)
		}
	}

	// A damaged record is no session, and goes too.
	key := newKey()
	if err := os.MkdirAll(filepath.Dir(file(key)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file(key), []byte(`{"v":1,"values":{"a":1`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Load of a damaged record = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(file(key)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of a damaged record left it (%v)", err)
	}
}

// TestSweep removes expired and damaged records, keeps live ones and
// whatever else shares the prefix.
func TestSweep(t *testing.T) {
	s, fs := newTestStore(t, "")
	ctx := context.Background()
	if n, err := s.Sweep(ctx); n != 0 || err != nil {
		t.Fatalf("Sweep of an empty storage = %d, %v; want 0, nil", n, err)
	}

	now := time.Now()
	live, expired, idled, damaged := newKey(), newKey(), newKey(), newKey()
	create(t, s, live, `{"a":1}`, now, now.Add(time.Hour), time.Hour)
	create(t, s, expired, `{"a":2}`, now.Add(-2*time.Hour), now.Add(-time.Hour), 0)
	create(t, s, idled, `{"a":3}`, now.Add(-time.Hour), now.Add(time.Hour), time.Minute)
	if err := fs.Store(ctx, s.name(damaged), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	others := []string{DefaultPrefix + "/notes.txt", DefaultPrefix + "/" + strings.Repeat("z", 64) + ".json", "caddy-session/secret"}
	for _, k := range others {
		if err := fs.Store(ctx, k, []byte("keep me")); err != nil {
			t.Fatal(err)
		}
	}

	n, err := s.Sweep(ctx)
	if err != nil || n != 3 {
		t.Fatalf("Sweep = %d, %v; want 3 removed", n, err)
	}
	for _, k := range []string{expired, idled, damaged} {
		if fs.Exists(ctx, s.name(k)) {
			t.Errorf("Sweep left a dead record")
		}
	}
	if _, err := s.Load(ctx, live); err != nil {
		t.Fatalf("live session after Sweep: %v", err)
	}
	for _, k := range others {
		if !fs.Exists(ctx, k) {
			t.Errorf("Sweep removed %s, which is not a session record", k)
		}
	}
}

// TestStorageLockExcludes: a write waits for the session's lock in the
// storage, as it does when another instance holds it, and gives up with
// ErrUnavailable (a 503) rather than hang.
func TestStorageLockExcludes(t *testing.T) {
	t.Parallel()
	s, fs := newTestStore(t, "")
	ctx := context.Background()
	key := newKey()
	now := time.Now()
	create(t, s, key, `{"a":1}`, now, now.Add(time.Hour), 0)

	// Another instance holds the lock.
	if err := fs.Lock(ctx, s.lockName(key)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Merge(ctx, key, map[string]json.RawMessage{"b": json.RawMessage(`2`)}, storage.MergeOptions{Now: time.Now()})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Merge returned (%v) while another instance held the session's lock", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := fs.Unlock(ctx, s.lockName(key)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Merge after the lock was released: %v", err)
		}
	case <-time.After(lockWait):
		t.Fatal("Merge did not go on after the lock was released")
	}
	rec, err := s.Load(ctx, key)
	if err != nil || len(rec.Values) != 2 {
		t.Fatalf("Load = %v, %v; want a and b", rec, err)
	}

	// A lock that stays held: the write fails, bounded, as unavailable.
	if err := fs.Lock(ctx, s.lockName(key)); err != nil {
		t.Fatal(err)
	}
	defer fs.Unlock(ctx, s.lockName(key))
	start := time.Now()
	err = s.Delete(ctx, key)
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Delete with the lock held elsewhere = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > lockWait+time.Second {
		t.Fatalf("Delete gave up after %s, want about %s", d, lockWait)
	}
	if _, err := s.Load(ctx, key); err != nil {
		t.Fatalf("the session after a Delete that could not lock: %v", err)
	}
}

// TestRotateLocksBothInOrder: Rotates of one pair of keys in both
// directions at once never deadlock.
func TestRotateLocksBothInOrder(t *testing.T) {
	s, _ := newTestStore(t, "")
	ctx := context.Background()
	a, b := newKey(), newKey()
	now := time.Now()
	create(t, s, a, `{"a":1}`, now, now.Add(time.Hour), 0)
	done := make(chan error, 2)
	for range 50 {
		go func() { done <- s.Rotate(ctx, a, b) }()
		go func() { done <- s.Rotate(ctx, b, a) }()
		for range 2 {
			if err := <-done; err != nil && !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("Rotate: %v", err)
			}
		}
	}
	_, errA := s.Load(ctx, a)
	_, errB := s.Load(ctx, b)
	if (errA == nil) == (errB == nil) {
		t.Fatalf("after the rotations: Load(a) = %v, Load(b) = %v; want the session under exactly one", errA, errB)
	}
}

// TestInvalidKeys: only store keys reach the storage, and an error never
// carries the key.
func TestInvalidKeys(t *testing.T) {
	s, fs := newTestStore(t, "")
	ctx := context.Background()
	id := rand.Text()
	for _, key := range []string{"", id, "../../etc/passwd", strings.ToUpper(storage.Key(id)), storage.Key(id) + "0"} {
		_, err := s.Merge(ctx, key, nil, storage.MergeOptions{Create: true, Now: time.Now(), Deadline: time.Now().Add(time.Hour)})
		if err == nil {
			t.Fatalf("Merge accepted key %q", key)
		}
		if key != "" && strings.Contains(err.Error(), key) {
			t.Fatalf("the error names the key: %v", err)
		}
	}
	if keys, _ := fs.List(ctx, "", true); len(keys) != 0 {
		t.Fatalf("storage after invalid keys: %v", keys)
	}
}

func TestPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"":                       DefaultPrefix,
		"sessions":               "sessions",
		"/a/b/":                  "a/b",
		"caddy-session/sessions": "caddy-session/sessions",
	} {
		if got, err := cleanPrefix(in); err != nil || got != want {
			t.Errorf("cleanPrefix(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"/", "a//b", "../x", "a/./b", `a\b`} {
		if got, err := cleanPrefix(in); err == nil {
			t.Errorf("cleanPrefix(%q) = %q, want an error", in, got)
		}
	}
	if _, err := New(nil, ""); err == nil {
		t.Error("New(nil storage) succeeded")
	}
}

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, c := range []struct {
		in, prefix, err string
	}{
		{in: `caddy_storage`},
		{in: `caddy_storage {
		}`},
		{in: `caddy_storage {
			prefix shop/sessions
		}`, prefix: "shop/sessions"},
		{in: `caddy_storage {
			prefix {env.SESSION_PREFIX}
		}`, prefix: "{env.SESSION_PREFIX}"},
		{in: `caddy_storage sessions`, err: "wrong argument count"},
		{in: `caddy_storage {
			prefix
		}`, err: "wrong argument count"},
		{in: `caddy_storage {
			prefix a b
		}`, err: "wrong argument count"},
		{in: `caddy_storage {
			prefix ""
		}`, err: "prefix needs a path"},
		{in: `caddy_storage {
			prefix ../up
		}`, err: "want folder names"},
		{in: `caddy_storage {
			prefix a
			prefix b
		}`, err: `duplicate subdirective "prefix"`},
		{in: `caddy_storage {
			prefx a
		}`, err: `unknown subdirective "prefx"`},
	} {
		var s Store
		err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.in))
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.in, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want one containing %q", c.in, err, c.err)
		case c.err == "" && s.Prefix != c.prefix:
			t.Errorf("%s: prefix %q, want %q", c.in, s.Prefix, c.prefix)
		}
	}
}

// TestSweeper: the background sweeper removes expired records, and stops
// when told to (Cleanup does that).
func TestSweeper(t *testing.T) {
	s, fs := newTestStore(t, "")
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	past := time.Now().Add(-time.Hour)
	key := newKey()
	create(t, s, key, `{"a":1}`, past, past.Add(time.Minute), 0)

	go s.sweepEvery(ctx, 20*time.Millisecond, done)
	deadline := time.Now().Add(5 * time.Second)
	for fs.Exists(ctx, s.name(key)) {
		if time.Now().After(deadline) {
			t.Fatal("the sweeper did not remove the expired record")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the sweeper did not stop")
	}
}

// TestAudienceAndNew: a created session gets the merge's audience and, with
// a NewTTL, is New with its expiry at most Created + NewTTL; merges keep
// both (an unconfirmed merge or a Touch never extends a New session past
// that); Confirm, or a merge with Confirm, clears New and extends the
// expiry; Rotate moves both; Confirm never creates.
func TestAudienceAndNew(t *testing.T) {
	s, _ := newTestStore(t, "")
	ctx := context.Background()
	created := time.Now()
	deadline := created.Add(24 * time.Hour)
	opts := func(confirm bool) storage.MergeOptions {
		return storage.MergeOptions{Create: true, Now: time.Now(), Deadline: deadline, IdleTimeout: 2 * time.Hour,
			NewTTL: time.Hour, Confirm: confirm, Audience: "shop.example.com"}
	}
	patch := map[string]json.RawMessage{"a": json.RawMessage(`1`)}
	key, next := newKey(), newKey()
	check := func(step, key string, wantNew bool, wantExpires time.Time) {
		t.Helper()
		rec, err := s.Load(ctx, key)
		if err != nil || rec.New != wantNew || rec.Audience != "shop.example.com" || !rec.Expires.Equal(wantExpires) {
			t.Fatalf("%s: Load = %+v, %v; want New %v, expires created%+v", step, rec, err, wantNew, wantExpires.Sub(created))
		}
	}
	o := opts(false)
	o.Now = created
	if _, err := s.Merge(ctx, key, patch, o); err != nil {
		t.Fatal(err)
	}
	check("created", key, true, created.Add(time.Hour))
	o = opts(false)
	o.Audience, o.NewTTL = "other.example", 0
	if _, err := s.Merge(ctx, key, patch, o); err != nil {
		t.Fatal(err)
	}
	check("unconfirmed merge", key, true, created.Add(time.Hour))
	if err := s.Touch(ctx, key, time.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	check("touch", key, true, created.Add(time.Hour))
	if err := s.Rotate(ctx, key, next); err != nil {
		t.Fatal(err)
	}
	check("rotated", next, true, created.Add(time.Hour))
	confirmed := time.Now().Add(2 * time.Hour)
	if err := s.Confirm(ctx, next, confirmed); err != nil {
		t.Fatal(err)
	}
	check("confirmed", next, false, confirmed)

	// A merge with Confirm confirms.
	key2 := newKey()
	if _, err := s.Merge(ctx, key2, patch, opts(false)); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Merge(ctx, key2, patch, opts(true))
	if err != nil || rec.New || rec.Expires.Sub(time.Now()) < 110*time.Minute {
		t.Fatalf("merge with Confirm: %+v, %v; want confirmed, two hours' expiry", rec, err)
	}
	// Confirm never creates.
	missing := newKey()
	if err := s.Confirm(ctx, missing, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, missing); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Confirm of a missing session: Load = %v, want ErrNotFound", err)
	}
	// An unconfirmed session ends at Created + NewTTL.
	short := newKey()
	o = opts(false)
	o.NewTTL = 200 * time.Millisecond
	if _, err := s.Merge(ctx, short, patch, o); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := s.Load(ctx, short); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("New session after NewTTL: Load = %v, want ErrNotFound", err)
	}
}

// TestOldRecordReadable: a record written before audiences and New existed
// reads as a confirmed session of no audience.
func TestOldRecordReadable(t *testing.T) {
	s, fs := newTestStore(t, "")
	key := newKey()
	old := `{"v":1,"created":"2030-01-01T00:00:00Z","deadline":"2099-01-02T00:00:00Z","expires":"2099-01-02T00:00:00Z","values":{"customerId":"c_42"}}`
	if err := fs.Store(context.Background(), s.name(key), []byte(old)); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Load(context.Background(), key)
	if err != nil || rec.New || rec.Audience != "" || string(rec.Values["customerId"]) != `"c_42"` {
		t.Fatalf("old record read as %+v, %v", rec, err)
	}
}
