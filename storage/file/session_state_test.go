package file

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// Audience is set when a session is created, kept by every later merge
// (whatever the merge's own Audience), written in the file, and moved by
// Rotate with the New state.
func TestAudienceKept(t *testing.T) {
	s := newTestStore(t, t.TempDir(), Options{SweepInterval: -1})
	now := time.Now()
	key, next := storage.Key("aud-1"), storage.Key("aud-2")
	rec, err := s.Merge(ctx, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)},
		storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), Audience: "shop.example.com", NewTTL: time.Minute})
	if err != nil || rec.Audience != "shop.example.com" || !rec.New {
		t.Fatalf("created %+v, %v; want audience shop.example.com, New", rec, err)
	}
	rec, err = s.Merge(ctx, key, map[string]json.RawMessage{"b": json.RawMessage(`2`)},
		storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), Audience: "other.example"})
	if err != nil || rec.Audience != "shop.example.com" || !rec.New {
		t.Fatalf("merged %+v, %v; want the stored audience, still New", rec, err)
	}
	p, _ := s.path(key)
	data, _ := os.ReadFile(p.file)
	if !strings.Contains(string(data), `"audience":"shop.example.com"`) || !strings.Contains(string(data), `"new":true`) {
		t.Fatalf("file lacks the audience or the New flag: %s", data)
	}
	if err := s.Rotate(ctx, key, next); err != nil {
		t.Fatal(err)
	}
	rec, err = s.Load(ctx, next)
	if err != nil || rec.Audience != "shop.example.com" || !rec.New || len(rec.Values) != 2 {
		t.Fatalf("after Rotate: %+v, %v; want audience, New and both values", rec, err)
	}
}

// A file written before audiences and New existed reads as a confirmed
// session of no audience, and keeps working.
func TestOldFileReadable(t *testing.T) {
	s := newTestStore(t, t.TempDir(), Options{SweepInterval: -1})
	key := storage.Key("old")
	create(t, s, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)})
	p, _ := s.path(key)
	old := `{"v":1,"created":"2030-01-01T00:00:00Z","deadline":"2099-01-02T00:00:00Z","expires":"2099-01-02T00:00:00Z","values":{"customerId":"c_42"}}`
	if err := os.WriteFile(p.file, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	// The store's hint for scans: a file's modification time is its expiry.
	expiry := time.Date(2099, 1, 2, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(p.file, expiry, expiry); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Load(ctx, key)
	if err != nil || rec.New || rec.Audience != "" || string(rec.Values["customerId"]) != `"c_42"` {
		t.Fatalf("old file read as %+v, %v", rec, err)
	}
	if c, err := s.Count(ctx); err != nil || c != (storage.Counts{Confirmed: 1}) {
		t.Fatalf("Count = %+v, %v; want one confirmed", c, err)
	}
}

// New sessions: created New with an expiry capped at Created + NewTTL; an
// unconfirmed merge or a Touch never moves it past that; Confirm (or a
// merge with Confirm) clears New and extends to the confirmed expiry.
func TestNewSessions(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := newTestStore(t, t.TempDir(), Options{SweepInterval: -1, Now: clock.Now})
	created := clock.Now()
	deadline := created.Add(24 * time.Hour)
	opts := func(confirm bool) storage.MergeOptions {
		return storage.MergeOptions{Create: true, Now: clock.Now(), Deadline: deadline,
			IdleTimeout: 2 * time.Hour, NewTTL: time.Hour, Confirm: confirm}
	}
	patch := func(v string) map[string]json.RawMessage { return map[string]json.RawMessage{"a": json.RawMessage(v)} }
	check := func(step string, rec *storage.Record, wantNew bool, wantExpires time.Time) {
		t.Helper()
		if rec.New != wantNew || !rec.Expires.Equal(wantExpires) {
			t.Fatalf("%s: New %v, Expires %v; want %v, %v", step, rec.New, rec.Expires.Sub(created), wantNew, wantExpires.Sub(created))
		}
		got, err := s.Load(ctx, storage.Key("new"))
		if err != nil || got.New != wantNew || !got.Expires.Equal(wantExpires) {
			t.Fatalf("%s: Load = %+v, %v", step, got, err)
		}
	}
	key := storage.Key("new")

	rec, err := s.Merge(ctx, key, patch(`1`), opts(false))
	if err != nil {
		t.Fatal(err)
	}
	check("created", rec, true, created.Add(time.Hour))

	clock.Advance(10 * time.Minute)
	rec, err = s.Merge(ctx, key, patch(`2`), opts(false))
	if err != nil {
		t.Fatal(err)
	}
	check("unconfirmed merge", rec, true, created.Add(time.Hour))

	// Without NewTTL in the options (new_session_ttl turned off by a
	// reload) the cap stored with the session still holds.
	o := opts(false)
	o.NewTTL = 0
	if rec, err = s.Merge(ctx, key, patch(`3`), o); err != nil {
		t.Fatal(err)
	}
	check("unconfirmed merge without NewTTL", rec, true, created.Add(time.Hour))

	if err := s.Touch(ctx, key, clock.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	rec, _ = s.Load(ctx, key)
	check("touch", rec, true, created.Add(time.Hour))
	if err := s.Touch(ctx, key, created.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	rec, _ = s.Load(ctx, key)
	check("touch shortens", rec, true, created.Add(30*time.Minute))

	if err := s.Confirm(ctx, key, clock.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	rec, _ = s.Load(ctx, key)
	check("confirmed", rec, false, clock.Now().Add(2*time.Hour))
	if string(rec.Values["a"]) != `3` {
		t.Fatalf("Confirm changed the values: %s", rec.Values)
	}
	// A confirmed session is touched as any other; a second Confirm only
	// moves the expiry, never past the deadline.
	if err := s.Confirm(ctx, key, deadline.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	rec, _ = s.Load(ctx, key)
	check("confirmed twice", rec, false, deadline)

	// A merge with Confirm into a New session confirms it.
	key2 := storage.Key("new2")
	if _, err := s.Merge(ctx, key2, patch(`1`), opts(false)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(50 * time.Minute)
	rec, err = s.Merge(ctx, key2, patch(`2`), opts(true))
	if err != nil || rec.New || !rec.Expires.Equal(clock.Now().Add(2*time.Hour)) {
		t.Fatalf("merge with Confirm: %+v, %v; want confirmed, idle expiry", rec, err)
	}

	// Unconfirmed, a New session ends at Created + NewTTL.
	key3 := storage.Key("new3")
	if _, err := s.Merge(ctx, key3, patch(`1`), opts(false)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	if _, err := s.Load(ctx, key3); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("New session after NewTTL: %v, want ErrNotFound", err)
	}
	if err := s.Confirm(ctx, key3, clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, key3); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Confirm revived an expired session: %v", err)
	}
	// Confirm never creates.
	missing := storage.Key("never")
	if err := s.Confirm(ctx, missing, clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	p, _ := s.path(missing)
	if _, err := os.Stat(p.file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Confirm of a missing session created a file: %v", err)
	}
	// Without NewTTL, sessions are created confirmed.
	o = opts(false)
	o.NewTTL = 0
	if rec, err = s.Merge(ctx, storage.Key("plain"), patch(`1`), o); err != nil || rec.New {
		t.Fatalf("created without NewTTL: %+v, %v; want confirmed", rec, err)
	}
}
