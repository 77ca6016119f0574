package memory

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
	"github.com/caddy-session/caddy-session/storage/storetest"
)

func TestIndexer(t *testing.T) {
	storetest.RunIndexer(t, func(t *testing.T) storage.Store {
		return newTestStore(t, Options{})
	})
}

// Sessions written before the name was indexed are found too.
func TestIndexBackfill(t *testing.T) {
	s := newTestStore(t, Options{})
	now := time.Now()
	var keys []string
	for i := range 10 {
		key := randomKey()
		v := `"c_1"`
		if i%2 == 1 {
			v = `"c_2"`
		}
		if _, err := s.Merge(ctx, key, map[string]json.RawMessage{"customerId": json.RawMessage(v)},
			storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	release := s.Index("customerId")
	defer release()
	n, err := s.DeleteByValue(ctx, "customerId", json.RawMessage(`"c_1"`), "")
	if err != nil || len(n) != 1 || n[""] != 5 {
		t.Fatalf("DeleteByValue = %v, %v; want 5 of no audience", n, err)
	}
	for i, key := range keys {
		_, err := s.Load(ctx, key)
		if gone := err != nil; gone != (i%2 == 0) {
			t.Fatalf("session %d: Load error %v", i, err)
		}
	}
}

// The index forgets sessions that the store evicts or that expire, so it
// does not grow past the store.
func TestIndexForgetsEvictedAndExpired(t *testing.T) {
	clock := time.Now()
	s := newTestStore(t, Options{MaxSessions: 64, SweepInterval: -1, Now: func() time.Time { return clock }})
	defer s.Index("customerId")()
	for range 200 {
		if _, err := s.Merge(ctx, randomKey(), map[string]json.RawMessage{"customerId": json.RawMessage(`"c_1"`)},
			storage.MergeOptions{Create: true, Now: clock, Deadline: clock.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	s.idx.mu.Lock()
	indexed := len(s.idx.byKey)
	s.idx.mu.Unlock()
	if indexed != s.Len() {
		t.Fatalf("index holds %d sessions, the store %d", indexed, s.Len())
	}
	clock = clock.Add(2 * time.Minute)
	s.sweep()
	s.idx.mu.Lock()
	indexed, terms := len(s.idx.byKey), len(s.idx.terms)
	s.idx.mu.Unlock()
	if indexed != 0 || terms != 0 || s.Len() != 0 {
		t.Fatalf("after expiry and a sweep: index %d sessions, %d values; store %d", indexed, terms, s.Len())
	}
}

// Count leaves out expired sessions the sweeper has not removed yet.
func TestCount(t *testing.T) {
	clock := time.Now()
	s := newTestStore(t, Options{SweepInterval: -1, Now: func() time.Time { return clock }})
	for i := range 30 {
		life := time.Hour
		if i < 10 {
			life = time.Minute
		}
		if _, err := s.Merge(ctx, randomKey(), map[string]json.RawMessage{"a": json.RawMessage(`1`)},
			storage.MergeOptions{Create: true, Now: clock, Deadline: clock.Add(life)}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Count(ctx); err != nil || n != (storage.Counts{Confirmed: 30}) {
		t.Fatalf("Count = %+v, %v; want 30 confirmed", n, err)
	}
	clock = clock.Add(2 * time.Minute)
	if n, err := s.Count(ctx); err != nil || n != (storage.Counts{Confirmed: 20}) {
		t.Fatalf("Count after 10 expired = %+v, %v; want 20 confirmed", n, err)
	}
}

// The index compares JSON values: sessions written before and after Index,
// in any spelling, are found by any other spelling, per audience; a value
// that is not JSON is not indexed, and asking for one is an error.
func TestIndexJSONValueAndAudience(t *testing.T) {
	s := newTestStore(t, Options{})
	now := time.Now()
	write := func(v, aud string) string {
		t.Helper()
		key := randomKey()
		if _, err := s.Merge(ctx, key, map[string]json.RawMessage{"customerId": json.RawMessage(v), "n": json.RawMessage(`1`)},
			storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), Audience: aud}); err != nil {
			t.Fatal(err)
		}
		return key
	}
	before := write(`"gid:\/\/shopify\/Customer\/7001"`, "a.example")
	release := s.Index("customerId")
	defer release()
	after := write(`"gid://shopify/Customer/7001"`, "b.example")
	other := write(`"gid://shopify/Customer/7001"`, "a.example")
	bad := write(`"not json`, "a.example")
	num := write(`1e2`, "")

	got, err := s.DeleteByValue(ctx, "customerId", json.RawMessage(`"gid:\u002F\u002Fshopify/Customer/7001"`), "a.example")
	if err != nil || len(got) != 1 || got["a.example"] != 2 {
		t.Fatalf("DeleteByValue for a.example = %v, %v; want map[a.example:2]", got, err)
	}
	if has(s, before) || has(s, other) || !has(s, after) {
		t.Fatal("a.example's sessions should be gone, b.example's there")
	}
	got, err = s.DeleteByValue(ctx, "customerId", json.RawMessage(`"gid://shopify/Customer/7001"`), "")
	if err != nil || len(got) != 1 || got["b.example"] != 1 {
		t.Fatalf("DeleteByValue for every audience = %v, %v; want map[b.example:1]", got, err)
	}
	got, err = s.DeleteByValue(ctx, "customerId", json.RawMessage(`100.0`), "")
	if err != nil || got[""] != 1 || has(s, num) {
		t.Fatalf("DeleteByValue(100.0) = %v, %v; want the session of 1e2 deleted", got, err)
	}
	got, err = s.DeleteByValue(ctx, "customerId", json.RawMessage(`"not json`), "")
	if err == nil || got == nil || len(got) != 0 {
		t.Fatalf("DeleteByValue of a value that is not JSON = %v, %v; want an error and an empty map", got, err)
	}
	if !has(s, bad) {
		t.Fatal("the session holding a value that is not JSON is gone")
	}
	s.idx.mu.Lock()
	indexed := len(s.idx.byKey)
	s.idx.mu.Unlock()
	if indexed != 0 {
		t.Fatalf("the index holds %d sessions, want 0 (the one left holds no JSON value)", indexed)
	}
}
