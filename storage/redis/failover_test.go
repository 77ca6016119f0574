package redis

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// S35: with Sentinel, losing the master costs an outage of about the
// Sentinel's failover time, reported as ErrUnavailable (fast), after which
// the store follows the promoted replica with the sessions it had.
func TestSentinelFailover(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	set := sentinel(t)
	s := newStore(t, Config{SentinelMaster: set.Name, Addresses: []string{set.Sentinel.Addr()}})
	ctx := t.Context()
	key := storage.Key("failover")
	create(t, s, key, time.Minute)
	// Make sure the replica has it before the master dies.
	if n, err := set.Master.Client().Wait(ctx, 1, 2*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica = %d, %v", n, err)
	}

	set.Master.Kill()
	start := time.Now()
	_, err := s.Load(ctx, key)
	if took := time.Since(start); !errors.Is(err, storage.ErrUnavailable) || took > slowBound {
		t.Fatalf("Load with the master down = %v after %s, want ErrUnavailable within %s", err, took, slowBound)
	}

	var rec *storage.Record
	for {
		rec, err = s.Load(ctx, key)
		if err == nil {
			break
		}
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("Load during the failover = %v, want the session or ErrUnavailable", err)
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("still unavailable 30s after the master died: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("served again by the promoted replica %s after the master died", time.Since(start).Round(time.Millisecond))
	if string(rec.Values["b"]) != `"two"` {
		t.Fatalf("session after the failover = %v", rec.Values)
	}
	// Writes go to the new master, not to a read-only replica.
	now := time.Now()
	rec, err = s.Merge(ctx, key, map[string]json.RawMessage{"c": json.RawMessage(`3`)}, storage.MergeOptions{Now: now, IdleTimeout: time.Minute})
	if err != nil || len(rec.Values) != 3 {
		t.Fatalf("Merge after the failover = %v, %v", rec, err)
	}
}
