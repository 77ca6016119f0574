package redis

import (
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// Count lists with SCAN, on every master of a Cluster, and only under its
// own prefix, even one holding glob characters.
func TestCount(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	for name, topo := range map[string]func(t *testing.T) ([]string, *server){
		"standalone": func(t *testing.T) ([]string, *server) { s := standalone(t); return []string{s.Addr()}, s },
		"cluster":    func(t *testing.T) ([]string, *server) { n := cluster(t); return addrs(n), nil },
	} {
		t.Run(name, func(t *testing.T) {
			addresses, single := topo(t)
			s := newStore(t, Config{Addresses: addresses, KeyPrefix: "app[1]*:"})
			neighbour := newStore(t, Config{Addresses: addresses, KeyPrefix: "app1x:"})
			if n, err := s.Count(t.Context()); err != nil || n.Total() != 0 {
				t.Fatalf("Count of an empty store = %+v, %v", n, err)
			}
			const sessions = 150
			for i := range sessions {
				create(t, s, storage.Key(string(rune(i))), time.Minute)
				create(t, neighbour, storage.Key(string(rune(i))), time.Minute)
			}
			if single != nil {
				// Something else's data in the same database.
				if err := single.Client().Set(t.Context(), "app1*:x", "1", time.Minute).Err(); err != nil {
					t.Fatal(err)
				}
			}
			if n, err := s.Count(t.Context()); err != nil || n != (storage.Counts{Confirmed: sessions}) {
				t.Fatalf("Count = %+v, %v; want %d confirmed", n, err, sessions)
			}
		})
	}
}

// A record that Rotate moved away stays behind as a tombstone for
// tombstoneTTL; Count does not count it, so a rotation never shows as two
// sessions (the README's admin API section says so).
func TestCountSkipsRotationTombstones(t *testing.T) {
	t.Parallel()
	srv := standalone(t)
	s := newStore(t, Config{Addresses: []string{srv.Addr()}})
	oldKey, newKey := storage.Key("count-old"), storage.Key("count-new")
	create(t, s, oldKey, time.Minute)
	if err := s.Rotate(t.Context(), oldKey, newKey); err != nil {
		t.Fatal(err)
	}
	if n, err := srv.Client().Exists(t.Context(), s.prefix+oldKey).Result(); err != nil || n != 1 {
		t.Fatalf("the rotated-away record is not there as a tombstone (EXISTS = %d, %v): the test proves nothing", n, err)
	}
	if n, err := s.Count(t.Context()); err != nil || n != (storage.Counts{Confirmed: 1}) {
		t.Fatalf("Count after a rotation = %+v, %v; want one confirmed session", n, err)
	}
}
