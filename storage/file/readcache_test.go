package file

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// TestReadCacheSeesOtherWriters: a store serving a session from its read
// cache must see every change another store (another process) makes to the
// same directory: merges, touches, deletes and rotations.
func TestReadCacheSeesOtherWriters(t *testing.T) {
	dir := t.TempDir()
	a, err := New(dir, Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(dir, Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	key := storage.Key("session-one")
	opts := storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour)}
	for i := range 20 {
		v := json.RawMessage(`"v` + string(rune('a'+i)) + `"`)
		if _, err := a.Merge(ctx, key, map[string]json.RawMessage{"k": v}, opts); err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second read comes from the cache
			rec, err := b.Load(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if string(rec.Values["k"]) != string(v) {
				t.Fatalf("round %d: read %s, want %s", i, rec.Values["k"], v)
			}
		}
	}
	// A Touch elsewhere moves Expires.
	exp := now.Add(30 * time.Minute)
	if err := a.Touch(ctx, key, exp); err != nil {
		t.Fatal(err)
	}
	if rec, err := b.Load(ctx, key); err != nil || !rec.Expires.Equal(exp) {
		t.Fatalf("after touch: %v %v, want expires %v", rec, err, exp)
	}
	// A caller changing the returned map must not change the cache.
	rec, _ := b.Load(ctx, key)
	rec.Values["k"] = json.RawMessage(`"mutated"`)
	if rec, _ := b.Load(ctx, key); string(rec.Values["k"]) == `"mutated"` {
		t.Fatal("the cached record was changed through a returned map")
	}
	// Rotation and deletion elsewhere.
	key2 := storage.Key("session-two")
	if err := a.Rotate(ctx, key, key2); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Load(ctx, key); err != storage.ErrRotated {
		t.Fatalf("old key after rotate: %v, want ErrRotated", err)
	}
	if _, err := b.Load(ctx, key2); err != nil {
		t.Fatal(err)
	}
	if err := a.Delete(ctx, key2); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Load(ctx, key2); err != storage.ErrNotFound {
		t.Fatalf("after delete: %v, want ErrNotFound", err)
	}
}
