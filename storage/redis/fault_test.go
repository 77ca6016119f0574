package redis

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/internal/testkit"
	"github.com/caddy-session/caddy-session/storage"
)

// The fault tests check S29 and S30: a dead or stalled Redis costs a call
// about its timeouts, the error says ErrUnavailable, and the store recovers
// by itself. Wall-clock bounds are generous (2 s for calls whose budget is
// a few hundred milliseconds) so that a loaded CI machine passes; the
// measured times are logged.

// slowBound is the most any call may take against a dead or stalled Redis
// with the default timeouts.
const slowBound = 2 * time.Second

// opsFor lists one call of each Store method on key, for fault tests.
func opsFor(s *Store, key string) map[string]func(context.Context) error {
	now := time.Now()
	opts := storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), IdleTimeout: time.Minute}
	s.Index("faultIndexed") // no network; released with the store
	return map[string]func(context.Context) error{
		"Load": func(ctx context.Context) error { _, err := s.Load(ctx, key); return err },
		"Merge": func(ctx context.Context) error {
			_, err := s.Merge(ctx, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)}, opts)
			return err
		},
		"Touch":   func(ctx context.Context) error { return s.Touch(ctx, key, time.Now().Add(time.Minute)) },
		"Confirm": func(ctx context.Context) error { return s.Confirm(ctx, key, time.Now().Add(time.Minute)) },
		"DeleteByValue": func(ctx context.Context) error {
			_, err := s.DeleteByValue(ctx, "faultIndexed", json.RawMessage(`"c_42"`), "")
			return err
		},
		"Delete": func(ctx context.Context) error { return s.Delete(ctx, key) },
		"Rotate": func(ctx context.Context) error { return s.Rotate(ctx, key, storage.Key("fault-rotated")) },
		"Count":  func(ctx context.Context) error { _, err := s.Count(ctx); return err },
		"Ping":   func(ctx context.Context) error { return s.Ping(ctx) },
	}
}

// mustFailFast runs every op and requires ErrUnavailable within slowBound.
func mustFailFast(t *testing.T, what string, ops map[string]func(context.Context) error) {
	t.Helper()
	for name, op := range ops {
		start := time.Now()
		err := op(t.Context())
		took := time.Since(start)
		t.Logf("%s: %s failed after %s: %v", what, name, took.Round(time.Millisecond), err)
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("%s: %s = %v, want ErrUnavailable", what, name, err)
		}
		if took > slowBound {
			t.Errorf("%s: %s took %s, want under %s", what, name, took, slowBound)
		}
	}
}

// New must not dial: `caddy validate` provisions the store with Redis down.
func TestNewDoesNotDial(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	// Nothing listens there.
	dead := "127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))
	for name, cfg := range map[string]Config{
		"url":      {URL: "redis://" + dead + "/0"},
		"address":  {Addresses: []string{dead}},
		"cluster":  {Addresses: []string{dead, dead}},
		"sentinel": {SentinelMaster: "mymaster", Addresses: []string{dead}},
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			s, err := New(cfg)
			if err != nil {
				t.Fatalf("New with Redis down = %v, want no error", err)
			}
			defer s.Close()
			if took := time.Since(start); took > 100*time.Millisecond {
				t.Errorf("New took %s: it must not connect", took)
			}
			mustFailFast(t, "nothing listening", opsFor(s, storage.Key("id")))
		})
	}
}

// A killed Redis fails calls fast; the same port back up serves again.
func TestFaultKillAndRestart(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := standalone(t)
	s := newStore(t, Config{Addresses: []string{srv.Addr()}})
	key := storage.Key("kill-test")
	ops := opsFor(s, key)
	for name, op := range ops {
		if err := op(t.Context()); err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("%s before the kill: %v", name, err)
		}
	}

	srv.Kill()
	mustFailFast(t, "killed", ops)

	srv.Restart()
	start := time.Now()
	for name, op := range ops {
		for {
			err := op(t.Context())
			if err == nil || errors.Is(err, storage.ErrNotFound) {
				break
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("%s still failing 5s after the restart: %v", name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("all calls succeed again %s after the restart", time.Since(start).Round(time.Millisecond))
}

// A stalled Redis (busy script, DEBUG SLEEP, CLIENT PAUSE) costs a call
// its timeouts, not the length of the stall.
func TestFaultStall(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	// Redis 7 refuses DEBUG unless started with it allowed.
	srv := startServer(t, "--enable-debug-command", "local")
	admin := srv.Client()
	s := newStore(t, Config{URL: "redis://" + srv.Addr()})
	key := storage.Key("stall-test")
	ops := opsFor(s, key)
	delete(ops, "Ping") // PING passes CLIENT PAUSE WRITE; the rest is covered
	for name, op := range ops {
		if err := op(t.Context()); err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("%s before the stall: %v", name, err)
		}
	}

	t.Run("DEBUG SLEEP", func(t *testing.T) {
		slept := make(chan error, 1)
		go func() { slept <- admin.Do(context.Background(), "DEBUG", "SLEEP", "3").Err() }()
		select {
		case err := <-slept:
			t.Fatalf("DEBUG SLEEP returned at once: %v", err)
		case <-time.After(100 * time.Millisecond): // asleep
		}
		mustFailFast(t, "DEBUG SLEEP 3", ops)
		if err := <-slept; err != nil {
			t.Fatalf("DEBUG SLEEP: %v", err)
		}
	})

	t.Run("CLIENT PAUSE", func(t *testing.T) {
		if err := admin.Do(t.Context(), "CLIENT", "PAUSE", "3000", "ALL").Err(); err != nil {
			t.Fatalf("CLIENT PAUSE: %v", err)
		}
		t.Cleanup(func() { admin.Do(context.Background(), "CLIENT", "UNPAUSE") })
		mustFailFast(t, "CLIENT PAUSE 3000", ops)
		admin.Do(t.Context(), "CLIENT", "UNPAUSE")
	})

	// Once the stall is over the store answers again.
	deadline := time.Now().Add(5 * time.Second)
	for name, op := range ops {
		for {
			err := op(t.Context())
			if err == nil || errors.Is(err, storage.ErrNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still failing 5s after the stall: %v", name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// A caller's deadline shorter than the timeouts wins, and a cancelled
// request reports both ErrUnavailable and the context's error.
func TestContextDeadline(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := standalone(t)
	admin := srv.Client()
	s := newStore(t, Config{Addresses: []string{srv.Addr()}, ReadTimeout: 2 * time.Second})
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(t.Context(), "CLIENT", "PAUSE", "2000", "ALL").Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	defer admin.Do(context.Background(), "CLIENT", "UNPAUSE")

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Load(ctx, storage.Key("x"))
	took := time.Since(start)
	if !errors.Is(err, storage.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Load past the caller's deadline = %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	if took > time.Second {
		t.Errorf("Load took %s with a 100ms deadline and a 2s read timeout", took)
	}
}
