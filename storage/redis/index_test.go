package redis

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
	"github.com/caddy-session/caddy-session/storage/storetest"
)

func indexerKit(t *testing.T, cfg Config) {
	cfg.DialTimeout, cfg.ReadTimeout, cfg.WriteTimeout = 2*time.Second, 2*time.Second, 2*time.Second
	storetest.RunIndexer(t, func(t *testing.T) storage.Store { return newStore(t, cfg) })
}

func TestIndexerStandalone(t *testing.T) {
	t.Parallel()
	indexerKit(t, Config{Addresses: []string{standalone(t).Addr()}})
}

// In a Cluster the index set and the sessions live in different slots.
func TestIndexerCluster(t *testing.T) {
	t.Parallel()
	indexerKit(t, Config{Addresses: addrs(cluster(t))})
}

// Index sets expire with their last session's deadline, hold no customer
// ID in their name, and are not counted as sessions.
func TestIndexKeys(t *testing.T) {
	t.Parallel()
	srv := standalone(t)
	s := newStore(t, Config{Addresses: []string{srv.Addr()}})
	defer s.Index("customerId")()
	now := time.Now()
	for range 3 {
		if _, err := s.Merge(t.Context(), storage.Key(now.String()+t.Name()+string(rune(now.Nanosecond()))), map[string]json.RawMessage{"customerId": json.RawMessage(`"c_secret_42"`)},
			storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Millisecond)
	}
	c := srv.Client()
	defer c.Close()
	keys, err := c.Keys(t.Context(), "*").Result() // a test server: KEYS is fine here
	if err != nil {
		t.Fatal(err)
	}
	var sets []string
	for _, k := range keys {
		if strings.Contains(k, "c_secret_42") {
			t.Fatalf("a key names the customer: %q", k)
		}
		if s.isIndexKey(k) {
			sets = append(sets, k)
		}
	}
	if len(sets) != 1 {
		t.Fatalf("index sets %q, want one", sets)
	}
	ttl, err := c.PTTL(t.Context(), sets[0]).Result()
	if err != nil || ttl <= 0 || ttl > time.Minute+time.Second {
		t.Fatalf("index set TTL %v, %v; want about a minute", ttl, err)
	}
	if n, err := s.Count(t.Context()); err != nil || n.Total() != 3 {
		t.Fatalf("Count = %+v, %v; want 3 (the index set is not a session)", n, err)
	}
}

// TestIndexFollowsSetDeadline: a Merge that moves a session's deadline
// later (MergeOptions.SetDeadline, with no values) makes its index entry,
// and the index set's TTL, last as long, so "log out everywhere" still
// finds the session after its first deadline; the session's own TTL
// follows too.
func TestIndexFollowsSetDeadline(t *testing.T) {
	t.Parallel()
	srv := standalone(t)
	s := newStore(t, Config{Addresses: []string{srv.Addr()}})
	defer s.Index("customerId")()
	now := time.Now()
	key := storage.Key("set-deadline" + now.String())
	if _, err := s.Merge(t.Context(), key, map[string]json.RawMessage{"customerId": json.RawMessage(`"c_7"`)},
		storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	far := now.Add(24 * time.Hour)
	rec, err := s.Merge(t.Context(), key, nil, storage.MergeOptions{Now: now, SetDeadline: far})
	if err != nil || !rec.Deadline.Equal(far) {
		t.Fatalf("Merge with SetDeadline: %v, %v", rec, err)
	}
	c := srv.Client()
	defer c.Close()
	keys, err := c.Keys(t.Context(), "*").Result() // a test server: KEYS is fine here
	if err != nil {
		t.Fatal(err)
	}
	var set string
	for _, k := range keys {
		if s.isIndexKey(k) {
			set = k
		}
	}
	if set == "" {
		t.Fatalf("no index set among %q", keys)
	}
	score, err := c.ZScore(t.Context(), set, key).Result()
	if err != nil || int64(score) != far.UnixMilli() {
		t.Fatalf("index entry ends at %v (%v), want %d", int64(score), err, far.UnixMilli())
	}
	for _, k := range []string{set, s.prefix + key} {
		ttl, err := c.PTTL(t.Context(), k).Result()
		if err != nil || ttl < 23*time.Hour || ttl > 24*time.Hour {
			t.Errorf("%s: TTL %v, %v; want about a day", k, ttl, err)
		}
	}
}
