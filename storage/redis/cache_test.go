package redis

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/caddy-session/caddy-session/storage"
)

// The local cache tests run a second Store on the same server as another
// Caddy instance would, and count HGETALLs on the server itself (INFO
// commandstats), so that a hit is proved by the absence of a round trip.

// seenBound is how long another instance's write may take to reach a
// cached reader in these tests: Redis's invalidation normally arrives well
// under a millisecond after the write; the margin is for a loaded CI box.
const seenBound = time.Second

// hgetalls returns how many HGETALLs the server has run.
func hgetalls(t *testing.T, admin *goredis.Client) int64 {
	t.Helper()
	info, err := admin.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_hgetall:calls=")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
		if err != nil {
			t.Fatalf("INFO commandstats: %q: %v", line, err)
		}
		return n
	}
	return 0
}

// waitCacheOn starts s's tracker and waits until its cache serves.
func waitCacheOn(t *testing.T, s *Store) {
	t.Helper()
	if s.cache == nil {
		t.Fatal("the store has no local cache")
	}
	s.track.start()
	deadline := time.Now().Add(5 * time.Second)
	for !s.cache.usable(time.Now()) {
		if time.Now().After(deadline) {
			t.Fatal("the local cache did not turn on within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cachedKey reports whether the cache holds key.
func cachedKey(s *Store, key string) bool {
	return s.cache.shard(key).lookup(key) != nil
}

// warm loads key until the cache holds it: the Load right after a write
// often does not insert, because the write's own invalidation overtakes
// its HGETALL (rule 1 of the package doc).
func warm(t *testing.T, s *Store, key string) *storage.Record {
	t.Helper()
	waitCacheOn(t, s)
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec, err := s.Load(t.Context(), key)
		if err != nil {
			t.Fatalf("Load while warming the cache: %v", err)
		}
		if cachedKey(s, key) {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatal("the cache did not take the session within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventually polls cond until it holds or seenBound passes, and returns
// how long it took.
func eventually(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > seenBound {
			t.Fatalf("%s: not within %s", what, seenBound)
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	t.Logf("%s after %s", what, took.Round(10*time.Microsecond))
	return took
}

// valueOf loads key from s and returns its value of name, or the error's
// text.
func valueOf(t *testing.T, s *Store, key, name string) string {
	rec, err := s.Load(t.Context(), key)
	if err != nil {
		return err.Error()
	}
	return string(rec.Values[name])
}

func merge(t *testing.T, s *Store, key, name, value string) {
	t.Helper()
	now := time.Now()
	_, err := s.Merge(t.Context(), key, map[string]json.RawMessage{name: json.RawMessage(value)},
		storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour)})
	if err != nil {
		t.Fatalf("Merge: %v", err)
	}
}

// A repeated Load is served from memory: no HGETALL reaches Redis, and
// the record is a copy the caller may change.
func TestCacheSecondLoadNoRoundTrip(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := standalone(t)
	admin := srv.Client()
	s := newStore(t, Config{Addresses: []string{srv.Addr()}})
	key := storage.Key("cached")
	create(t, s, key, time.Minute)
	warm(t, s, key)

	before := hgetalls(t, admin)
	for range 10 {
		rec, err := s.Load(t.Context(), key)
		if err != nil || string(rec.Values["b"]) != `"two"` {
			t.Fatalf("cached Load = %v, %v", rec, err)
		}
		rec.Values["b"] = json.RawMessage(`"changed by the caller"`)
		delete(rec.Values, "a")
	}
	if n := hgetalls(t, admin) - before; n != 0 {
		t.Fatalf("10 Loads of a cached session made %d HGETALLs, want 0", n)
	}
	rec, _ := s.Load(t.Context(), key)
	if string(rec.Values["b"]) != `"two"` || string(rec.Values["a"]) != "1" {
		t.Fatalf("a caller's change of its copy reached the cache: %v", rec.Values)
	}

	// A missing session is not cached: each Load asks Redis.
	before = hgetalls(t, admin)
	for range 3 {
		if _, err := s.Load(t.Context(), storage.Key("none")); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Load of a missing session = %v", err)
		}
	}
	if n := hgetalls(t, admin) - before; n != 3 {
		t.Fatalf("3 Loads of a missing session made %d HGETALLs, want 3", n)
	}
}

// Turned off, every Load is a round trip.
func TestCacheOff(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := standalone(t)
	admin := srv.Client()
	s := newStore(t, Config{URL: "redis://" + srv.Addr(), LocalCache: -1})
	if s.cache != nil || s.track != nil {
		t.Fatal("LocalCache -1 must leave the store without a cache")
	}
	key := storage.Key("uncached")
	create(t, s, key, time.Minute)
	before := hgetalls(t, admin)
	for range 5 {
		if _, err := s.Load(t.Context(), key); err != nil {
			t.Fatal(err)
		}
	}
	if n := hgetalls(t, admin) - before; n != 5 {
		t.Fatalf("5 uncached Loads made %d HGETALLs, want 5", n)
	}
}

// Which configurations get a cache, and how big.
func TestCacheConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		want int
	}{
		{"url", Config{URL: "redis://127.0.0.1:1/0"}, DefaultLocalCache},
		{"unix", Config{URL: "unix:///tmp/redis.sock"}, DefaultLocalCache},
		{"one address", Config{Addresses: []string{"127.0.0.1:1"}}, DefaultLocalCache},
		{"sized", Config{Addresses: []string{"127.0.0.1:1"}, LocalCache: 100}, 100},
		{"off", Config{Addresses: []string{"127.0.0.1:1"}, LocalCache: -1}, 0},
		{"cluster", Config{Addresses: []string{"127.0.0.1:1", "127.0.0.1:2"}}, 0},
		{"cluster endpoint", Config{Addresses: []string{"127.0.0.1:1"}, Cluster: true}, 0},
		{"sentinel", Config{Addresses: []string{"127.0.0.1:1"}, SentinelMaster: "m"}, 0},
		{"rediss url", Config{URL: "rediss://127.0.0.1:1/0"}, 0},
		{"tls config", Config{Addresses: []string{"127.0.0.1:1"}, TLS: &tls.Config{}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cfg.localCacheSize(); got != tc.want {
				t.Fatalf("localCacheSize = %d, want %d", got, tc.want)
			}
			s := newStore(t, tc.cfg)
			if (s.cache != nil) != (tc.want > 0) {
				t.Fatalf("cache present = %v, want %v", s.cache != nil, tc.want > 0)
			}
			if s.cache != nil && len(s.cache.shards)*s.cache.perShard < tc.want {
				t.Fatalf("cache of %d×%d entries, want at least %d", len(s.cache.shards), s.cache.perShard, tc.want)
			}
		})
	}
}

// Full, the cache drops an entry for each new one and stays in bounds.
func TestCacheBounded(t *testing.T) {
	t.Parallel()
	c := newLocalCache(10)
	c.enable(c.mono(time.Now()))
	now := time.Now()
	for i := range 100 {
		key := fmt.Sprint(i)
		tk, ok := c.begin(key, now)
		if !ok {
			t.Fatal("an enabled, live cache refused a ticket")
		}
		c.put(tk, key, &storage.Record{Values: map[string]json.RawMessage{}, Expires: now.Add(time.Hour), Deadline: now.Add(time.Hour)})
	}
	if n := c.len(); n > 10 || n == 0 {
		t.Fatalf("cache of 10 holds %d entries", n)
	}
}

// Rule 1: a Load whose HGETALL an invalidation, a local write or a flush
// overtook does not insert its (maybe older) reply.
func TestCacheTicketOvertaken(t *testing.T) {
	t.Parallel()
	now := time.Now()
	rec := &storage.Record{Values: map[string]json.RawMessage{}, Expires: now.Add(time.Hour), Deadline: now.Add(time.Hour)}
	for name, overtake := range map[string]func(c *localCache){
		"evict":   func(c *localCache) { c.evict("k") },
		"flush":   func(c *localCache) { c.flush() },
		"disable": func(c *localCache) { c.disable(); c.enable(c.mono(time.Now())) },
		"none":    func(c *localCache) {},
	} {
		c := newLocalCache(100)
		c.enable(c.mono(time.Now()))
		tk, _ := c.begin("k", now)
		overtake(c)
		c.put(tk, "k", rec)
		if got, want := c.get("k", time.Now()) != nil, name == "none"; got != want {
			t.Errorf("%s: inserted = %v, want %v", name, got, want)
		}
	}
	// Nor does a cache whose connection stopped answering serve.
	c := newLocalCache(100)
	c.enable(c.mono(time.Now()))
	c.answered.Store(c.mono(time.Now()) - int64(2*liveWindow))
	if _, ok := c.begin("k", time.Now()); ok {
		t.Error("a cache without a recent pong gave a ticket")
	}
}

// Another instance's Merge, Touch, Rotate and Delete reach a cached reader
// within seenBound (in practice a millisecond or so).
func TestCacheSeesOtherInstance(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := standalone(t)
	a := newStore(t, Config{Addresses: []string{srv.Addr()}})
	b := newStore(t, Config{URL: "redis://" + srv.Addr()})
	key := storage.Key("shared")
	create(t, a, key, time.Minute)

	warm(t, a, key)
	merge(t, b, key, "b", `"three"`)
	eventually(t, "a Merge by another instance seen", func() bool { return valueOf(t, a, key, "b") == `"three"` })

	warm(t, a, key)
	later := time.Now().Add(10 * time.Minute) // before the deadline, unlike the current expiry
	if err := b.Touch(t.Context(), key, later); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a Touch by another instance seen", func() bool {
		rec, err := a.Load(t.Context(), key)
		return err == nil && rec.Expires.Equal(later)
	})

	warm(t, a, key)
	moved := storage.Key("shared-rotated")
	if err := b.Rotate(t.Context(), key, moved); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a Rotate by another instance seen", func() bool {
		_, err := a.Load(t.Context(), key)
		return errors.Is(err, storage.ErrNotFound)
	})
	if v := valueOf(t, a, moved, "b"); v != `"three"` {
		t.Fatalf("rotated session = %s", v)
	}

	warm(t, a, moved)
	if err := b.Delete(t.Context(), moved); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a Delete by another instance seen", func() bool {
		_, err := a.Load(t.Context(), moved)
		return errors.Is(err, storage.ErrNotFound)
	})

	// This instance's own writes are seen at once, whatever the
	// invalidation's timing.
	own := storage.Key("own")
	create(t, a, own, time.Minute)
	for i := range 20 {
		warm(t, a, own)
		v := fmt.Sprint(i)
		merge(t, a, own, "n", v)
		if got := valueOf(t, a, own, "n"); got != v {
			t.Fatalf("Load right after this store's Merge = %s, want %s", got, v)
		}
	}
}

// A record whose own expiry passed, or whose key Redis expired, is not
// served from the cache.
func TestCacheExpiry(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := standalone(t)
	admin := srv.Client()
	s := newStore(t, Config{Addresses: []string{srv.Addr()}})

	// The record's idle expiry.
	idle := storage.Key("idle")
	rec := create(t, s, idle, 300*time.Millisecond)
	warm(t, s, idle)
	time.Sleep(time.Until(rec.Expires) + 5*time.Millisecond)
	if _, err := s.Load(t.Context(), idle); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Load past the record's expiry = %v, want ErrNotFound", err)
	}

	// A key that Redis expires before the record's own times say: the
	// expiry's invalidation evicts it.
	short := storage.Key("short-ttl")
	create(t, s, short, time.Minute)
	if err := admin.PExpire(t.Context(), s.prefix+short, 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	warm(t, s, short)
	time.Sleep(300 * time.Millisecond)
	eventually(t, "a key expired by Redis seen gone", func() bool {
		_, err := s.Load(t.Context(), short)
		return errors.Is(err, storage.ErrNotFound)
	})
}

// Killing the tracking connection turns the cache off at once; a write
// made while it is down is seen; the cache comes back by itself.
func TestCacheTrackingConnectionKilled(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := standalone(t)
	admin := srv.Client()
	a := newStore(t, Config{Addresses: []string{srv.Addr()}})
	b := newStore(t, Config{Addresses: []string{srv.Addr()}, LocalCache: -1})
	key := storage.Key("killed")
	create(t, a, key, time.Minute)

	for round := range 3 {
		warm(t, a, key)
		id := a.track.connID.Load()
		var n int64
		var err error
		if round%2 == 0 {
			n, err = admin.ClientKillByFilter(t.Context(), "ID", strconv.FormatInt(id, 10)).Result()
		} else {
			n, err = admin.ClientKillByFilter(t.Context(), "TYPE", "pubsub").Result()
		}
		if err != nil || n != 1 {
			t.Fatalf("CLIENT KILL of the tracking connection = %d, %v", n, err)
		}
		// The invalidation of this write goes nowhere: the
		// connection is gone.
		v := fmt.Sprintf(`"round %d"`, round)
		merge(t, b, key, "b", v)
		eventually(t, "a write made while the tracking connection was down seen", func() bool {
			return valueOf(t, a, key, "b") == v
		})
		// Until the tracker has reconnected, no Load goes back to the
		// value from before the write. (The cache may take entries
		// before the tracker has read the end of its connection: they
		// are read after the write, and no hit is served meanwhile,
		// since the connection has unread bytes: its end.)
		for deadline := time.Now().Add(2 * time.Second); a.track.connID.Load() == id && time.Now().Before(deadline); {
			if got := valueOf(t, a, key, "b"); got != v {
				t.Fatalf("with the tracking connection down, a Load returned %s after %s was written and seen", got, v)
			}
			time.Sleep(time.Millisecond)
		}

		// Back: a new connection, hits again.
		warm(t, a, key)
		if a.track.connID.Load() == id {
			t.Fatal("the cache is on again on the killed connection")
		}
		before := hgetalls(t, admin)
		if got := valueOf(t, a, key, "b"); got != v {
			t.Fatalf("after the reconnect: %s, want %s", got, v)
		}
		if n := hgetalls(t, admin) - before; n != 0 {
			t.Fatalf("a Load after the reconnect made %d HGETALLs, want a hit", n)
		}
	}
}

// Rule 1 under fire, with the bound rule 2 gives: while another instance
// writes a session, a reader never gets a value older than the last write
// that returned before a ping Redis has since answered (every invalidation
// sent before that ping has been applied), and all readers see the last
// write. Within the delivery of an invalidation a reader may still get the
// previous value from the cache: that is the documented window.
func TestCacheNoStaleEntryUnderWrites(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := standalone(t)
	a := newStore(t, Config{Addresses: []string{srv.Addr()}})
	b := newStore(t, Config{Addresses: []string{srv.Addr()}})
	key := storage.Key("counter")
	merge(t, b, key, "n", "0")
	waitCacheOn(t, a)

	const writes = 500
	var done [writes + 1]atomic.Int64 // when write i returned (a's mono time)
	for i := range done {
		done[i].Store(1 << 62)
	}
	done[0].Store(0)
	floor := func(answered int64) int {
		f := 0
		for i := 1; i <= writes && done[i].Load() <= answered; i++ {
			f = i
		}
		return f
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	var checked atomic.Int64
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				min := floor(a.cache.answered.Load())
				n, err := strconv.Atoi(valueOf(t, a, key, "n"))
				if err != nil {
					errs <- err
					return
				}
				if n < min {
					errs <- fmt.Errorf("a reader got %d after write %d was surely invalidated: a stale entry was cached", n, min)
					return
				}
				if min > 0 {
					checked.Add(1)
				}
			}
		})
	}
	for i := 1; i <= writes; i++ {
		merge(t, b, key, "n", strconv.Itoa(i))
		done[i].Store(a.cache.mono(time.Now()))
		if i%4 == 0 {
			time.Sleep(2 * time.Millisecond) // let readers fill the cache
		}
	}
	eventually(t, "the last write seen", func() bool { return valueOf(t, a, key, "n") == strconv.Itoa(writes) })
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if checked.Load() == 0 {
		t.Error("no read was checked against a floor: no pong during the writes?")
	}
	t.Logf("%d reads checked against a floor", checked.Load())
}

// Redis refusing tracking (no CLIENT command, or no access to the
// invalidation channel) leaves the cache off, logged once, and the store
// working as before.
func TestCacheTrackingRefused(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := startServer(t,
		"--user", "noclient", "on", ">pw", "~*", "&*", "+@all", "-client",
		"--user", "nochannel", "on", ">pw", "~*", "resetchannels", "+@all")
	admin := srv.Client()
	for _, user := range []string{"noclient", "nochannel"} {
		t.Run(user, func(t *testing.T) {
			var logged []string
			var mu sync.Mutex
			s := newStore(t, Config{Addresses: []string{srv.Addr()}, Username: user, Password: "pw",
				Log: func(msg string) { mu.Lock(); logged = append(logged, msg); mu.Unlock() }})
			key := storage.Key("refused-" + user)
			create(t, s, key, time.Minute)
			deadline := time.Now().Add(5 * time.Second)
			for {
				if _, err := s.Load(t.Context(), key); err != nil {
					t.Fatalf("Load without tracking: %v", err)
				}
				mu.Lock()
				n := len(logged)
				mu.Unlock()
				if n > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no log line within 5s of tracking being refused")
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(3 * pingInterval)
			before := hgetalls(t, admin)
			for range 5 {
				if v := valueOf(t, s, key, "b"); v != `"two"` {
					t.Fatalf("Load = %s", v)
				}
			}
			if n := hgetalls(t, admin) - before; n != 5 {
				t.Fatalf("5 Loads with tracking refused made %d HGETALLs, want 5", n)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(logged) != 1 {
				t.Fatalf("logged %d times, want once: %q", len(logged), logged)
			}
			t.Logf("logged: %s", logged[0])
			if !strings.Contains(logged[0], "local read cache is off") || strings.Contains(logged[0], key) {
				t.Fatalf("log line %q", logged[0])
			}
		})
	}
}

// Close stops the tracker's goroutines and closes its connection, whether
// the tracker ran or not. Not parallel: it counts goroutines.
func TestCacheCloseLeaksNothing(t *testing.T) {
	srv := standalone(t)
	admin := srv.Client()
	if err := admin.Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()

	never, err := New(Config{Addresses: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := never.Close(); err != nil {
		t.Fatalf("Close of a store never used: %v", err)
	}

	s, err := New(Config{Addresses: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	key := storage.Key("close")
	create(t, s, key, time.Minute)
	warm(t, s, key)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.Load(t.Context(), key); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Load after Close = %v, want ErrUnavailable (the cache must not serve)", err)
	}

	deadline := time.Now().Add(3 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		n := runtime.NumGoroutine()
		list, _ := admin.ClientList(t.Context()).Result()
		conns := strings.Count(strings.TrimSpace(list), "\n") + 1
		if n <= base && !strings.Contains(stacks, "(*tracker)") && conns == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before the stores; %d connections on the server, want 1 (this test's):\n%s\n%s",
				n, base, conns, list, stacks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A Redis that dies closes the tracking connection: the cache turns off at
// once (well within liveWindow), Loads fail fast as without it, and a
// Redis back up empty (no persistence) is not papered over by old entries.
func TestCacheServerKilled(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := standalone(t)
	s := newStore(t, Config{Addresses: []string{srv.Addr()}})
	key := storage.Key("killed-server")
	create(t, s, key, time.Minute)
	warm(t, s, key)

	srv.Kill()
	killed := time.Now()
	var lastHit time.Duration
	for {
		before := time.Since(killed)
		start := time.Now()
		_, err := s.Load(t.Context(), key)
		if err != nil {
			if !errors.Is(err, storage.ErrUnavailable) {
				t.Fatalf("Load with Redis dead = %v, want ErrUnavailable", err)
			}
			if took := time.Since(start); took > slowBound {
				t.Fatalf("Load with Redis dead took %s, want under %s", took, slowBound)
			}
			break
		}
		lastHit = before
		if lastHit > liveWindow {
			t.Fatalf("the cache still served %s after Redis died", lastHit)
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("last cache hit %s after Redis died", lastHit)

	srv.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.Load(t.Context(), key)
		if errors.Is(err, storage.ErrNotFound) {
			break
		}
		if err == nil {
			t.Fatal("the cache served a session that the restarted Redis no longer holds")
		}
		if time.Now().After(deadline) {
			t.Fatalf("Load still failing 5s after the restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	create(t, s, key, time.Minute)
	warm(t, s, key) // the cache is back by itself
}

// FLUSHALL reaches the cache as an invalidation without keys (go-redis
// reports it as an error, which ends the subscription): everything goes,
// and the cache comes back.
func TestCacheFlushAll(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := standalone(t)
	admin := srv.Client()
	s := newStore(t, Config{Addresses: []string{srv.Addr()}})
	key := storage.Key("flushed")
	create(t, s, key, time.Minute)
	warm(t, s, key)
	if err := admin.FlushAll(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "FLUSHALL seen", func() bool {
		_, err := s.Load(t.Context(), key)
		return errors.Is(err, storage.ErrNotFound)
	})
	create(t, s, key, time.Minute)
	warm(t, s, key)
}

// TestCacheReadAfterWriteAcrossInstances: once another instance's write
// has been answered, the next Load here sees it, with no waiting. In BCAST
// mode Redis writes the invalidations in the same event-loop iteration as
// the writer's reply, just after it; the test marks "just after" with a
// PING from a third connection (answered in a later iteration), as a
// browser's next request, which must first go through the writer, does by
// taking far longer. A hit needs the tracking socket to be quiet, so the
// invalidation that has reached it is never overtaken, even before the
// tracker goroutine has run: without that check this test fails within a
// few dozen writes.
func TestCacheReadAfterWriteAcrossInstances(t *testing.T) {
	t.Parallel()
	srv := standalone(t)
	ctl := srv.Client()
	a := newStore(t, Config{Addresses: []string{srv.Addr()}})
	b := newStore(t, Config{URL: "redis://" + srv.Addr()})
	key := storage.Key("read-after-write")
	create(t, a, key, time.Minute)
	hits := 0
	for i := range 300 {
		warm(t, a, key)
		want := fmt.Sprintf(`"v%d"`, i)
		merge(t, b, key, "b", want)
		if err := ctl.Ping(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
		if got := valueOf(t, a, key, "b"); got != want {
			t.Fatalf("write %d: read %s right after another instance wrote %s", i, got, want)
		}
		if cachedKey(a, key) {
			hits++
		}
	}
	t.Logf("300 writes, each seen at once; the read after it was cached %d times", hits)
}
