package file

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
	"github.com/caddy-session/caddy-session/storage/storetest"
)

func TestIndexer(t *testing.T) {
	storetest.RunIndexer(t, func(t *testing.T) storage.Store {
		s, err := New(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// Count counts the files whose expiry (their modification time) has not
// passed.
func TestCount(t *testing.T) {
	ctx := context.Background()
	s, err := New(t.TempDir(), Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	for i := range 12 {
		deadline := now.Add(time.Hour)
		if i < 2 {
			deadline = now.Add(-time.Second) // born expired
		}
		key := storage.Key(time.Now().String() + string(rune('a'+i)))
		if _, err := s.Merge(ctx, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)},
			storage.MergeOptions{Create: true, Now: now.Add(-time.Hour), Deadline: deadline}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Count(ctx); err != nil || n != 10 {
		t.Fatalf("Count = %d, %v; want 10", n, err)
	}
}
