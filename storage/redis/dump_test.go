package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-session/caddy-session/storage"
)

// S31 and S32: after a mix of every write, a dump of the whole database
// (SCAN, every node of a Cluster) shows only prefixed keys, each with a TTL
// no later than its session's deadline, and not one session ID in any key
// or value.
func TestDumpStandalone(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := standalone(t)
	s := newStore(t, Config{Addresses: []string{srv.Addr()}})
	ids := writeMix(t, s)
	dump(t, []*goredis.Client{srv.Client()}, s.prefix, ids)
}

func TestDumpCluster(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	nodes := cluster(t)
	s := newStore(t, Config{Addresses: addrs(nodes)})
	ids := writeMix(t, s)
	clients := make([]*goredis.Client, len(nodes))
	for i, n := range nodes {
		clients[i] = n.Client()
	}
	dump(t, clients, s.prefix, ids)
}

// writeMix creates, merges, touches, rotates and deletes sessions keyed by
// storage.Key of random-looking IDs, and returns the IDs.
func writeMix(t *testing.T, s *Store) []string {
	t.Helper()
	ctx := t.Context()
	var ids []string
	now := time.Now()
	for i := range 40 {
		id := fmt.Sprintf("SeSsIoNiD%02dxJ8k2LqPz0WvR4tY7u", i)
		ids = append(ids, id)
		key := storage.Key(id)
		// The ID also appears nowhere in the values the handler writes;
		// put in one that embeds a neighbour's key to show keys are fine.
		_, err := s.Merge(ctx, key, map[string]json.RawMessage{
			"n":     json.RawMessage(fmt.Sprint(i)),
			"other": json.RawMessage(`"` + storage.Key(fmt.Sprint(i)) + `"`),
		}, storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Duration(i+1) * time.Minute), IdleTimeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		switch i % 4 {
		case 1:
			if err := s.Touch(ctx, key, now.Add(time.Hour)); err != nil { // capped at the deadline
				t.Fatal(err)
			}
		case 2:
			newID := id + "-rotated"
			ids = append(ids, newID)
			if err := s.Rotate(ctx, key, storage.Key(newID)); err != nil {
				t.Fatal(err)
			}
		case 3:
			if err := s.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ids
}

// dump scans every client's database and checks each key.
func dump(t *testing.T, clients []*goredis.Client, prefix string, ids []string) {
	t.Helper()
	ctx := context.Background()
	seen := 0
	for _, c := range clients {
		iter := c.Scan(ctx, 0, "*", 100).Iterator()
		for iter.Next(ctx) {
			key := iter.Val()
			seen++
			if !strings.HasPrefix(key, prefix) {
				t.Errorf("key %q lacks the prefix %q", key, prefix)
			}
			asked := time.Now()
			pttl := c.PTTL(ctx, key).Val()
			if pttl <= 0 {
				t.Errorf("key %q has no TTL (PTTL %s)", key, pttl)
			}
			fields := c.HGetAll(ctx, key).Val()
			if d, ok := fields[fieldDeadline]; ok {
				deadline, _ := parseNanos(d)
				// PTTL counts from when Redis answered, after asked.
				if until := deadline.Sub(asked); pttl > until+time.Millisecond {
					t.Errorf("key %q: TTL %s outlives the deadline (%s away)", key, pttl, until)
				}
			}
			text := key
			for f, v := range fields {
				text += "\x00" + f + "\x00" + v
			}
			for _, id := range ids {
				if strings.Contains(text, id) {
					t.Errorf("key %q holds the session ID %q", key, id)
				}
			}
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if seen == 0 {
		t.Fatal("the dump found no key at all")
	}
	t.Logf("checked %d keys", seen)
}
