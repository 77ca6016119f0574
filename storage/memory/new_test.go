package memory

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// createNew creates a new session (Record.New) under key.
func createNew(t testing.TB, s *Store, key string, values map[string]json.RawMessage) {
	t.Helper()
	now := time.Now()
	if _, err := s.Merge(ctx, key, values, storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), NewTTL: time.Hour}); err != nil {
		t.Fatalf("Merge(NewTTL): %v", err)
	}
}

// confirmed creates a session and confirms it, as the handler does.
func confirmed(t testing.TB, s *Store, key string, values map[string]json.RawMessage) {
	t.Helper()
	createNew(t, s, key, values)
	if err := s.Confirm(ctx, key, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

// checkCounts compares the store's counters with what Count finds and with
// want.
func checkCounts(t *testing.T, s *Store, want storage.Counts) {
	t.Helper()
	got, err := s.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got != want || s.Len() != want.Total() || s.NewLen() != want.New {
		t.Fatalf("Count = %+v, Len %d, NewLen %d; want %+v", got, s.Len(), s.NewLen(), want)
	}
}

// TestNewEvictedFirst: in a shard, a new session (the oldest) goes before
// any confirmed one, however long unused; a confirmed one goes only when
// no other new session is left.
func TestNewEvictedFirst(t *testing.T) {
	s := newTestStore(t, Options{MaxSessions: 4})
	keys := keysInShard(s, 0, 7)
	one := map[string]json.RawMessage{"a": json.RawMessage(`1`)}
	confirmed(t, s, keys[0], one) // least recently used
	confirmed(t, s, keys[1], one)
	createNew(t, s, keys[2], one) // oldest new
	createNew(t, s, keys[3], one)
	if !has(s, keys[2]) { // a read does not save a new session
		t.Fatal("keys[2] missing")
	}
	createNew(t, s, keys[4], one) // evicts keys[2]
	createNew(t, s, keys[5], one) // evicts keys[3]
	checkCounts(t, s, storage.Counts{New: 2, Confirmed: 2})
	for i, want := range []bool{true, true, false, false, true, true} {
		if got := has(s, keys[i]); got != want {
			t.Errorf("keys[%d] present = %v, want %v", i, got, want)
		}
	}
	// Confirm keys[4]: then keys[5] is the only new one, and goes next.
	if err := s.Confirm(ctx, keys[4], time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	create(t, s, keys[6], one) // confirmed from the start: evicts keys[5]
	if has(s, keys[5]) || !has(s, keys[4]) || !has(s, keys[6]) {
		t.Fatal("keys[5] (the only new one) should have been evicted, keys[4] and keys[6] kept")
	}
	// No new session left: the least recently used confirmed one goes.
	createNew(t, s, keys[2], one)
	if has(s, keys[0]) || !has(s, keys[2]) {
		t.Fatal("with no other new session, the least recently used confirmed one (keys[0]) goes, and the new one stays")
	}
	if got, ok := s.Evictions(), s.ConfirmedEvictions(); got != 4 || ok != 1 {
		t.Errorf("Evictions() = %d, ConfirmedEvictions() = %d; want 4, 1", got, ok)
	}
	checkCounts(t, s, storage.Counts{New: 1, Confirmed: 3})
}

// TestFloodKeepsConfirmed: 50,000 new sessions into a store of 5,000 that
// holds 1,000 confirmed ones: every confirmed one is still there.
func TestFloodKeepsConfirmed(t *testing.T) {
	const max, real, flood = 5000, 1000, 50000
	s := newTestStore(t, Options{MaxSessions: max, SweepInterval: -1})
	var keys []string
	for i := range real {
		key := storage.Key(fmt.Sprint("real-", i))
		keys = append(keys, key)
		confirmed(t, s, key, smallSession(i))
	}
	// From two goroutines, to go through the cross-shard path under load.
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < flood; i += 2 {
				createNew(t, s, storage.Key(fmt.Sprint("flood-", i)), smallSession(i))
			}
		}()
	}
	// Real visitors keep using their sessions meanwhile.
	for range 3 {
		for _, key := range keys {
			if !has(s, key) {
				t.Fatal("a confirmed session was evicted during the flood")
			}
		}
	}
	wg.Wait()
	for i, key := range keys {
		if !has(s, key) {
			t.Fatalf("confirmed session %d was evicted by the flood", i)
		}
	}
	if s.Len() > max {
		t.Fatalf("Len() = %d, over MaxSessions %d", s.Len(), max)
	}
	checkCounts(t, s, storage.Counts{New: max - real, Confirmed: real})
	if got, want := s.Evictions(), uint64(flood-(max-real)); got != want || s.ConfirmedEvictions() != 0 {
		t.Errorf("Evictions() = %d, ConfirmedEvictions() = %d; want %d, 0", got, s.ConfirmedEvictions(), want)
	}
}

// largeSession is about n bytes of values.
func largeSession(i, n int) map[string]json.RawMessage {
	return map[string]json.RawMessage{
		"id":   json.RawMessage(fmt.Sprint(i)),
		"blob": json.RawMessage(`"` + strings.Repeat("x", n) + `"`),
	}
}

// TestMaxBytes: Bytes never goes past MaxBytes, large new sessions push out
// each other before any confirmed one, and Bytes is what the sessions
// take.
func TestMaxBytes(t *testing.T) {
	const maxBytes = 1 << 20
	s := newTestStore(t, Options{MaxBytes: maxBytes, SweepInterval: -1})
	var keys []string
	for i := range 5 { // 5 × ~60 KiB confirmed: ~300 KiB
		key := randomKey()
		keys = append(keys, key)
		confirmed(t, s, key, largeSession(i, 60<<10))
	}
	for i := range 200 { // 200 × ~60 KiB new: 12 MiB through a 1 MiB store
		createNew(t, s, randomKey(), largeSession(i, 60<<10))
		if s.Bytes() > maxBytes {
			t.Fatalf("after %d large new sessions: Bytes() = %d, over MaxBytes %d", i+1, s.Bytes(), maxBytes)
		}
	}
	for i, key := range keys {
		if !has(s, key) {
			t.Fatalf("confirmed session %d was evicted while new ones were there", i)
		}
	}
	if s.NewLen() == 0 {
		t.Fatal("no new session left: they should have evicted each other, not all gone")
	}

	// Bytes is the sum of what each session counts.
	var sum int64
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, r := range sh.m {
			sum += size(sh.data[r])
		}
		sh.mu.Unlock()
	}
	if sum != s.Bytes() {
		t.Fatalf("Bytes() = %d, the sessions count %d", s.Bytes(), sum)
	}

	// Growing a confirmed session past the bound evicts others (new
	// first), not itself.
	for range 10 {
		if _, err := s.Merge(ctx, keys[0], largeSession(0, 63<<10), storage.MergeOptions{Now: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if s.Bytes() > maxBytes {
			t.Fatalf("after a merge grew a session: Bytes() = %d, over MaxBytes %d", s.Bytes(), maxBytes)
		}
	}

	// Confirmed sessions past the bound: the new ones go first, then
	// confirmed ones (least recently used of a shard; across shards, the
	// order is only nearly kept, so this checks no more), never the one
	// being written.
	for i := range 30 {
		key := randomKey()
		confirmed(t, s, key, largeSession(i, 60<<10))
		if s.Bytes() > maxBytes {
			t.Fatalf("Bytes() = %d, over MaxBytes %d", s.Bytes(), maxBytes)
		}
		if !has(s, key) {
			t.Fatal("the session just written was evicted")
		}
	}
	if s.NewLen() != 0 {
		t.Fatalf("NewLen() = %d after confirmed sessions needed the room, want 0", s.NewLen())
	}

	// Deleting everything gives every byte back.
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, r := range sh.m {
			s.remove(sh, r)
		}
		sh.mu.Unlock()
	}
	if s.Bytes() != 0 || s.Len() != 0 || s.NewLen() != 0 {
		t.Fatalf("empty store: Bytes %d, Len %d, NewLen %d; want 0", s.Bytes(), s.Len(), s.NewLen())
	}
}

// TestTooLarge: a session larger than the whole store is refused, with an
// error the handler reads as a size limit, and nothing changes.
func TestTooLarge(t *testing.T) {
	s := newTestStore(t, Options{MaxBytes: 32 << 10})
	key := randomKey()
	create(t, s, key, largeSession(0, 10<<10))
	before := s.Bytes()
	_, err := s.Merge(ctx, key, largeSession(0, 40<<10), storage.MergeOptions{Now: time.Now()})
	var tl *TooLargeError
	var le *storage.LimitError
	if !errors.As(err, &tl) || !errors.As(err, &le) || le.What != "size" {
		t.Fatalf("Merge of a session over MaxBytes = %v, want a *TooLargeError unwrapping to a size *storage.LimitError", err)
	}
	if !strings.Contains(err.Error(), "max_bytes") {
		t.Errorf("error %q does not name max_bytes", err)
	}
	rec, err := s.Load(ctx, key)
	if err != nil || len(rec.Values["blob"]) != 10<<10+2 || s.Bytes() != before {
		t.Fatalf("the refused merge changed the session or the count: %v, Bytes %d (was %d)", err, s.Bytes(), before)
	}
	fresh := randomKey()
	if _, err := s.Merge(ctx, fresh, largeSession(0, 40<<10), storage.MergeOptions{Create: true, Now: time.Now(), Deadline: time.Now().Add(time.Hour)}); !errors.As(err, &tl) {
		t.Fatalf("creating a session over MaxBytes = %v, want a *TooLargeError", err)
	}
	if has(s, fresh) || !has(s, key) || s.Evictions() != 0 {
		t.Fatal("a refused session was created or evicted another")
	}
}

// TestNewSessionLife: expiry of new sessions, Touch, Confirm and Rotate.
func TestNewSessionLife(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := newTestStore(t, Options{Now: clock.Now, SweepInterval: -1})
	now := clock.Now()
	key := randomKey()
	rec, err := s.Merge(ctx, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)}, storage.MergeOptions{
		Create: true, Now: now, Deadline: now.Add(24 * time.Hour), IdleTimeout: 2 * time.Hour, NewTTL: time.Hour, Audience: "shop",
	})
	if err != nil || !rec.New || !rec.Expires.Equal(now.Add(time.Hour)) || rec.Audience != "shop" {
		t.Fatalf("Merge = %+v, %v; want a new session of audience shop expiring in an hour", rec, err)
	}
	// Touch does not extend a new session; it may shorten it.
	if err := s.Touch(ctx, key, now.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if rec, _ := s.Load(ctx, key); !rec.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("Touch moved a new session's expiry to %s", rec.Expires)
	}
	// Rotate keeps it new, and its audience.
	moved := randomKey()
	if err := s.Rotate(ctx, key, moved); err != nil {
		t.Fatal(err)
	}
	rec, err = s.Load(ctx, moved)
	if err != nil || !rec.New || rec.Audience != "shop" {
		t.Fatalf("after Rotate: %+v, %v; want new, audience shop", rec, err)
	}
	checkCounts(t, s, storage.Counts{New: 1})
	// Confirm: no longer new, the expiry moved.
	if err := s.Confirm(ctx, moved, now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	rec, _ = s.Load(ctx, moved)
	if rec.New || !rec.Expires.Equal(now.Add(2*time.Hour)) {
		t.Fatalf("after Confirm: %+v", rec)
	}
	checkCounts(t, s, storage.Counts{Confirmed: 1})
	// Confirm creates nothing.
	ghost := randomKey()
	if err := s.Confirm(ctx, ghost, now.Add(time.Hour)); err != nil || has(s, ghost) {
		t.Fatalf("Confirm of a missing session: %v, created %v", err, has(s, ghost))
	}
	// An unconfirmed new session is gone after its NewTTL.
	other := randomKey()
	if _, err := s.Merge(ctx, other, map[string]json.RawMessage{"a": json.RawMessage(`1`)}, storage.MergeOptions{
		Create: true, Now: now, Deadline: now.Add(24 * time.Hour), NewTTL: time.Hour,
	}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(61 * time.Minute)
	if has(s, other) || !has(s, moved) {
		t.Fatal("after the NewTTL: the new session should be gone, the confirmed one there")
	}
	s.sweep()
	checkCounts(t, s, storage.Counts{Confirmed: 1})
}

// TestAudienceTable: audiences are interned once, and freed with their
// last session, so that a stream of invented audiences cannot grow the
// table.
func TestAudienceTable(t *testing.T) {
	s := newTestStore(t, Options{MaxSessions: 1000})
	now := time.Now()
	opts := func(aud string) storage.MergeOptions {
		return storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), Audience: aud}
	}
	var keys []string
	for i := range 3000 { // evictions free audiences too
		key := randomKey()
		keys = append(keys, key)
		if _, err := s.Merge(ctx, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)}, opts(fmt.Sprintf("host-%d.example", i%1500))); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.auds.len(); n > 1000 {
		t.Fatalf("the audience table holds %d audiences for 1000 sessions", n)
	}
	for _, key := range keys {
		if err := s.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.auds.len(); n != 0 {
		t.Fatalf("the audience table holds %d audiences with no session left", n)
	}
	// Ids are reused, and names read back right.
	a, b := randomKey(), randomKey()
	if _, err := s.Merge(ctx, a, nil, opts("a.example")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Merge(ctx, b, nil, opts("b.example")); err != nil {
		t.Fatal(err)
	}
	ra, _ := s.Load(ctx, a)
	rb, _ := s.Load(ctx, b)
	if ra.Audience != "a.example" || rb.Audience != "b.example" {
		t.Fatalf("audiences read back %q, %q", ra.Audience, rb.Audience)
	}
	if list := *s.auds.list.Load(); len(list) > 1501 {
		t.Fatalf("the id list grew to %d", len(list))
	}
}

// TestAudienceTableConcurrent races sessions of a few audiences being
// created, rotated and removed, so that ids are freed and taken again
// while others read them.
func TestAudienceTableConcurrent(t *testing.T) {
	s := newTestStore(t, Options{MaxSessions: 128})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				aud := fmt.Sprintf("aud-%d", (i+w)%3)
				key := randomKey()
				now := time.Now()
				if _, err := s.Merge(ctx, key, nil, storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), Audience: aud}); err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					moved := randomKey()
					if err := s.Rotate(ctx, key, moved); err != nil {
						continue // evicted meanwhile
					}
					key = moved
				}
				if rec, err := s.Load(ctx, key); err == nil && rec.Audience != aud {
					t.Errorf("session of %q read back as %q", aud, rec.Audience)
					return
				}
				if i%2 == 0 {
					s.Delete(ctx, key)
				}
			}
		}()
	}
	wg.Wait()
}
