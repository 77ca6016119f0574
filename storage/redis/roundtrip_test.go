package redis

import (
	"context"
	"encoding/json"
	"net"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-session/caddy-session/storage"
)

// countHook counts the commands and pipelines a client sends: each is one
// round trip to Redis.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next goredis.DialHook) goredis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return next(ctx, network, addr)
	}
}

func (h *countHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// The request path's budget: one round trip for a read, one for a write,
// once the scripts are cached on the server (the first use of each costs
// one NOSCRIPT reply more).
func TestRoundTrips(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	for name, topo := range map[string]func(t *testing.T) Config{
		"standalone": func(t *testing.T) Config { return Config{Addresses: []string{standalone(t).Addr()}} },
		"cluster":    func(t *testing.T) Config { return Config{Addresses: addrs(cluster(t))} },
	} {
		t.Run(name, func(t *testing.T) {
			s := newStore(t, topo(t))
			hook := &countHook{}
			s.client.AddHook(hook)
			ctx := t.Context()
			key := storage.Key("round-trips")
			now := time.Now()
			opts := storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), IdleTimeout: time.Minute,
				Audience: "shop.example.com", NewTTL: 10 * time.Minute}
			patch := map[string]json.RawMessage{"a": json.RawMessage(`1`)}

			loadScripts(t, s)
			rotateTrips := int64(1)
			if s.split {
				rotateTrips = 2 // take, then put: see Store.Rotate
			}
			rotations := 0
			steps := []struct {
				name string
				want int64
				run  func() error
			}{
				{"Merge", 1, func() error { _, err := s.Merge(ctx, key, patch, opts); return err }},
				{"Load", 1, func() error { _, err := s.Load(ctx, key); return err }},
				{"Touch", 1, func() error { return s.Touch(ctx, key, time.Now().Add(time.Minute)) }},
				{"Confirm", 1, func() error { return s.Confirm(ctx, key, time.Now().Add(time.Minute)) }},
				{"Rotate", rotateTrips, func() error {
					rotations++
					next := storage.Key("round-trips-" + string(rune('a'+rotations)))
					err := s.Rotate(ctx, key, next)
					key = next
					return err
				}},
				{"Delete", 1, func() error { return s.Delete(ctx, key) }},
			}
			for _, step := range steps {
				hook.n.Store(0)
				if err := step.run(); err != nil {
					t.Fatalf("%s: %v", step.name, err)
				}
				if got := hook.n.Load(); got != step.want {
					t.Errorf("%s took %d round trips, want %d", step.name, got, step.want)
				}
			}
		})
	}
}

// loadScripts caches every script on every master, as a warm server has
// them, so that counts and benchmarks see steady-state EVALSHA.
func loadScripts(t testing.TB, s *Store) {
	t.Helper()
	ctx := context.Background()
	load := func(ctx context.Context, c goredis.Scripter) error {
		for _, sc := range []*goredis.Script{mergeScript, touchScript, rotateScript, takeScript, putScript} {
			if err := sc.Load(ctx, c).Err(); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	if cc, ok := s.client.(*goredis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error { return load(ctx, c) })
	} else {
		err = load(ctx, s.client)
	}
	if err != nil {
		t.Fatalf("loading the scripts: %v", err)
	}
}
