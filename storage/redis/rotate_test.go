package redis

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// create makes a session under key with values a=1, b="two", failing the
// test otherwise.
func create(t *testing.T, s *Store, key string, idle time.Duration) *storage.Record {
	t.Helper()
	now := time.Now()
	rec, err := s.Merge(t.Context(), key, map[string]json.RawMessage{
		"a": json.RawMessage(`1`), "b": json.RawMessage(`"two"`),
	}, storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), IdleTimeout: idle})
	if err != nil {
		t.Fatalf("creating a session: %v", err)
	}
	return rec
}

// A Rotate whose reply is lost after Redis ran it (go-redis then retries
// the same command) must recognise its own work by the nonce: same nonce
// ok, any other call ErrNotFound. The tombstone left behind is invisible,
// short-lived, and holds no values outside a Cluster.
func TestRotateRetryIsIdempotent(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := standalone(t)
	s := newStore(t, Config{Addresses: []string{srv.Addr()}})
	admin := srv.Client()
	ctx := t.Context()
	oldKey, newKey := storage.Key("old"), storage.Key("new")
	create(t, s, oldKey, time.Minute)

	keys := []string{s.prefix + oldKey, s.prefix + newKey}
	now := nanos(time.Now())
	ttl := strconv.FormatInt(int64(tombstoneTTL), 10)
	for i, want := range []string{"ok", "ok"} {
		got, err := rotateScript.Run(ctx, s.client, keys, now, "nonce-1", ttl).Text()
		if err != nil || got != want {
			t.Fatalf("attempt %d with the same nonce = %q, %v; want %q", i+1, got, err, want)
		}
	}
	if got, _ := rotateScript.Run(ctx, s.client, keys, now, "nonce-2", ttl).Text(); got != "notfound" {
		t.Fatalf("another Rotate of the moved key = %q, want notfound", got)
	}

	// The tombstone: only the nonce, a TTL of at most tombstoneTTL.
	fields, err := admin.HGetAll(ctx, keys[0]).Result()
	if err != nil || len(fields) != 1 || fields[fieldRotated] != "nonce-1" {
		t.Fatalf("tombstone = %v, %v; want only the nonce", fields, err)
	}
	if pttl := admin.PTTL(ctx, keys[0]).Val(); pttl <= 0 || pttl > tombstoneTTL {
		t.Fatalf("tombstone PTTL = %s, want in (0, %s]", pttl, tombstoneTTL)
	}
	checkTombstone(t, s, oldKey)
	if rec, err := s.Load(ctx, newKey); err != nil || string(rec.Values["b"]) != `"two"` {
		t.Fatalf("Load of the new key = %v, %v", rec, err)
	}
}

// The same for the two steps a Cluster takes: a retried take returns the
// contents again, another call finds nothing.
func TestRotateClusterTakeRetry(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	nodes := cluster(t)
	s := newStore(t, Config{Addresses: addrs(nodes)})
	ctx := t.Context()
	oldKey, newKey := storage.Key("old"), storage.Key("new")
	create(t, s, oldKey, time.Minute)

	keys := []string{s.prefix + oldKey}
	now := nanos(time.Now())
	ttl := strconv.FormatInt(int64(tombstoneTTL), 10)
	first, err := takeScript.Run(ctx, s.client, keys, now, "nonce-1", ttl).StringSlice()
	if err != nil || first[0] != "ok" {
		t.Fatalf("take = %v, %v", first, err)
	}
	again, err := takeScript.Run(ctx, s.client, keys, now, "nonce-1", ttl).StringSlice()
	if err != nil || len(again) != len(first) {
		t.Fatalf("retried take = %v, %v; want the contents again (%v)", again, err, first)
	}
	if other, _ := takeScript.Run(ctx, s.client, keys, now, "nonce-2", ttl).StringSlice(); len(other) != 1 || other[0] != "notfound" {
		t.Fatalf("another take of the taken key = %v, want notfound", other)
	}
	if pttl := s.client.PTTL(ctx, keys[0]).Val(); pttl <= 0 || pttl > tombstoneTTL {
		t.Fatalf("tombstone PTTL = %s, want in (0, %s]", pttl, tombstoneTTL)
	}
	checkTombstone(t, s, oldKey)

	// Rotate as a whole, and its refusal on the tombstone.
	other := storage.Key("other")
	create(t, s, other, time.Minute)
	if err := s.Rotate(ctx, other, newKey); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if err := s.Rotate(ctx, other, storage.Key("again")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Rotate of a rotated key = %v, want ErrNotFound", err)
	}
}

// checkTombstone requires the record Rotate left under key to read as no
// session everywhere, and Merge(Create) over it to start afresh.
func checkTombstone(t *testing.T, s *Store, key string) {
	t.Helper()
	ctx := t.Context()
	if _, err := s.Load(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Load of a tombstone = %v, want ErrNotFound", err)
	}
	now := time.Now()
	patch := map[string]json.RawMessage{"c": json.RawMessage(`3`)}
	if _, err := s.Merge(ctx, key, patch, storage.MergeOptions{Now: now}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Merge(Create=false) of a tombstone = %v, want ErrNotFound", err)
	}
	if err := s.Touch(ctx, key, now.Add(time.Hour)); err != nil {
		t.Fatalf("Touch of a tombstone: %v", err)
	}
	if err := s.Confirm(ctx, key, now.Add(time.Hour)); err != nil {
		t.Fatalf("Confirm of a tombstone: %v", err)
	}
	if pttl := s.client.PTTL(ctx, s.prefix+key).Val(); pttl > tombstoneTTL {
		t.Fatalf("Touch or Confirm extended a tombstone to %s", pttl)
	}
	// Within storage.RotationGrace the old key creates nothing: a request
	// that raced the rotation must not start a new session there.
	fieldsBefore, _ := s.client.HGetAll(ctx, s.prefix+key).Result()
	if _, err := s.Merge(ctx, key, patch, storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour)}); !errors.Is(err, storage.ErrRotated) {
		t.Fatalf("Merge(Create=true) over a tombstone = %v, want ErrRotated", err)
	}
	if _, err := s.Load(ctx, key); !errors.Is(err, storage.ErrRotated) {
		t.Fatalf("Load of a tombstone = %v, want ErrRotated", err)
	}
	if fields, _ := s.client.HGetAll(ctx, s.prefix+key).Result(); len(fields) != len(fieldsBefore) || fields[fieldRotated] != fieldsBefore[fieldRotated] {
		t.Fatalf("a refused Merge changed the tombstone: %v, was %v", fields, fieldsBefore)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
}

// Under a stall, Rotate reports ErrUnavailable, yet Redis may run it (and
// go-redis's retry) once awake: the old key must then be gone and the new
// one hold the session, never both and never an error reply left behind.
func TestRotateDuringStall(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := startServer(t, "--enable-debug-command", "local")
	admin := srv.Client()
	s := newStore(t, Config{Addresses: []string{srv.Addr()}})
	oldKey, newKey := storage.Key("old"), storage.Key("new")
	// Load the script first: a lost reply to EVALSHA's NOSCRIPT would
	// otherwise be the whole story.
	warm := storage.Key("warm")
	create(t, s, warm, time.Minute)
	if err := s.Rotate(t.Context(), warm, storage.Key("warm2")); err != nil {
		t.Fatal(err)
	}
	create(t, s, oldKey, time.Minute)

	slept := make(chan error, 1)
	go func() { slept <- admin.Do(context.Background(), "DEBUG", "SLEEP", "1").Err() }()
	time.Sleep(100 * time.Millisecond)
	err := s.Rotate(t.Context(), oldKey, newKey)
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Rotate during DEBUG SLEEP = %v, want ErrUnavailable", err)
	}
	if err := <-slept; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, errOld := s.Load(t.Context(), oldKey)
		rec, errNew := s.Load(t.Context(), newKey)
		if errors.Is(errOld, storage.ErrNotFound) && errNew == nil {
			if string(rec.Values["b"]) != `"two"` {
				t.Fatalf("moved session = %v", rec.Values)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the stall: old key %v, new key %v; want the session moved", errOld, errNew)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRotateSameKey(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := standalone(t)
	s := newStore(t, Config{Addresses: []string{srv.Addr()}})
	key := storage.Key("same")
	create(t, s, key, 0)
	if err := s.Rotate(t.Context(), key, key); err == nil || errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Rotate to the same key = %v, want a usage error", err)
	}
	if _, err := s.Load(t.Context(), key); err != nil {
		t.Fatalf("session after a refused Rotate: %v", err)
	}
}
