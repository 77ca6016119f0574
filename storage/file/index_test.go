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

// Count counts the live sessions, New apart from confirmed.
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
		var newTTL time.Duration
		if i%3 == 0 {
			newTTL = 2 * time.Hour // New: sessions 0 (expired), 3, 6, 9
		}
		key := storage.Key(time.Now().String() + string(rune('a'+i)))
		if _, err := s.Merge(ctx, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)},
			storage.MergeOptions{Create: true, Now: now.Add(-time.Hour), Deadline: deadline, NewTTL: newTTL}); err != nil {
			t.Fatal(err)
		}
		if i == 9 {
			if err := s.Confirm(ctx, key, deadline); err != nil {
				t.Fatal(err)
			}
		}
	}
	if c, err := s.Count(ctx); err != nil || c != (storage.Counts{New: 2, Confirmed: 8}) {
		t.Fatalf("Count = %+v, %v; want 2 new, 8 confirmed", c, err)
	}
}
