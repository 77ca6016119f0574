package storetest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// The concurrency subtests: what two requests of one browser (two tabs, a
// page and its API calls) do to one session at once.

// testConcurrentMerge: writes of different keys into one session all
// survive, even with touches racing them (a touch that rewrites values it
// read earlier loses writes).
func testConcurrentMerge(k *kit) {
	g := k.o.Goroutines
	limits := storage.Limits{MaxKeys: g + 10}
	key := newKey()
	now := time.Now()
	k.create(key, vals("base", `0`), now, now.Add(time.Hour), 10*time.Minute)

	const writes = 5
	start := make(chan struct{})
	var writers, touchers sync.WaitGroup
	var done atomic.Bool
	for i := range g {
		writers.Add(1)
		go func() {
			defer writers.Done()
			<-start
			for n := range writes {
				_, err := k.s.Merge(k.ctx, key, vals(fmt.Sprintf("k%d", i), fmt.Sprint(n)), storage.MergeOptions{
					Now: time.Now(), IdleTimeout: 10 * time.Minute, Limits: limits,
				})
				if err != nil {
					k.Errorf("writer %d, write %d: Merge: %v", i, n, err)
					return
				}
			}
		}()
	}
	for range 2 {
		touchers.Add(1)
		go func() {
			defer touchers.Done()
			<-start
			for !done.Load() {
				if err := k.s.Touch(k.ctx, key, time.Now().Add(10*time.Minute)); err != nil {
					k.Errorf("Touch: %v", err)
					return
				}
			}
		}()
	}
	close(start)
	writers.Wait()
	done.Store(true)
	touchers.Wait()
	if k.Failed() {
		return
	}

	want := vals("base", `0`)
	for i := range g {
		want[fmt.Sprintf("k%d", i)] = []byte(fmt.Sprint(writes - 1))
	}
	k.sameValues(fmt.Sprintf("after %d concurrent writers", g), k.load("after concurrent writes", key).Values, want)
}

// testConcurrentCreate: writes that all find no session and all create it
// still end in one session with every key.
func testConcurrentCreate(k *kit) {
	g := k.o.Goroutines
	limits := storage.Limits{MaxKeys: g + 10}
	key := newKey()
	now := time.Now()

	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := k.s.Merge(k.ctx, key, vals(fmt.Sprintf("k%d", i), fmt.Sprint(i)), storage.MergeOptions{
				Create: true, Now: now, Deadline: now.Add(time.Hour), Limits: limits,
			})
			if err != nil {
				k.Errorf("creator %d: Merge(Create=true): %v", i, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if k.Failed() {
		return
	}

	want := vals()
	for i := range g {
		want[fmt.Sprintf("k%d", i)] = []byte(fmt.Sprint(i))
	}
	k.sameValues(fmt.Sprintf("after %d concurrent creators", g), k.load("after concurrent creates", key).Values, want)
}

// racers hammer one session with touches and writes without Create, the
// traffic of in-flight requests when a logout (Delete) or a login (Rotate)
// lands. Each racer remembers the last write that succeeded.
type racers struct {
	k        *kit
	key      string
	n        int
	ended    atomic.Bool  // set once Delete or Rotate returned
	ops      atomic.Int64 // operations begun
	afterEnd atomic.Int64 // operations begun after ended was set
	stop     atomic.Bool
	wg       sync.WaitGroup
	lastOK   []int // per racer: the value of its last successful write, -1 if none
}

func (k *kit) startRacers(key string) *racers {
	r := &racers{k: k, key: key, n: max(2, k.o.Goroutines/2)}
	r.lastOK = make([]int, r.n)
	limits := storage.Limits{MaxKeys: r.n + 10}
	for i := range r.n {
		r.lastOK[i] = -1
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for n := 0; !r.stop.Load(); n++ {
				after := r.ended.Load()
				r.ops.Add(1)
				if n%2 == 0 {
					if err := k.s.Touch(k.ctx, key, time.Now().Add(10*time.Minute)); err != nil {
						k.Errorf("racer %d: Touch: %v", i, err)
						return
					}
				} else {
					_, err := k.s.Merge(k.ctx, key, vals(fmt.Sprintf("w%d", i), fmt.Sprint(n)), storage.MergeOptions{
						Now: time.Now(), IdleTimeout: 10 * time.Minute, Limits: limits,
					})
					switch {
					case err == nil && after:
						k.Errorf("racer %d: Merge(Create=false) begun after the session was removed succeeded: it revived the session", i)
					case err == nil:
						r.lastOK[i] = n
					case !errors.Is(err, storage.ErrNotFound):
						k.Errorf("racer %d: Merge(Create=false): %v", i, err)
						return
					}
				}
				if after {
					r.afterEnd.Add(1)
				}
			}
		}()
	}
	// Let every racer get going before the removal lands.
	waitFor(func() bool { return r.ops.Load() >= int64(2*r.n) })
	return r
}

// end marks the removal as returned, lets the racers run on a while (their
// late writes must all fail), then stops them.
func (r *racers) end() {
	r.ended.Store(true)
	waitFor(func() bool { return r.afterEnd.Load() >= int64(4*r.n) })
	r.stop.Store(true)
	r.wg.Wait()
}

// waitFor polls cond for up to 5 seconds.
func waitFor(cond func() bool) {
	deadline := time.Now().Add(5 * time.Second)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Microsecond)
	}
}

func testNoResurrectionAfterDelete(k *kit) {
	for round := range k.o.Rounds {
		key := newKey()
		now := time.Now()
		k.create(key, vals("a", `1`), now, now.Add(time.Hour), 10*time.Minute)
		r := k.startRacers(key)
		err := k.s.Delete(k.ctx, key)
		r.end()
		if err != nil {
			k.Fatalf("round %d: Delete: %v", round, err)
		}
		if k.Failed() {
			return
		}
		k.missing(fmt.Sprintf("round %d: after Delete raced by touches and writes", round), key)
	}
}

func testNoResurrectionAfterRotate(k *kit) {
	for round := range k.o.Rounds {
		oldKey, moved := newKey(), newKey()
		now := time.Now()
		k.create(oldKey, vals("a", `1`), now, now.Add(time.Hour), 10*time.Minute)
		r := k.startRacers(oldKey)
		err := k.s.Rotate(k.ctx, oldKey, moved)
		r.end()
		if err != nil {
			k.Fatalf("round %d: Rotate: %v", round, err)
		}
		if k.Failed() {
			return
		}
		step := fmt.Sprintf("round %d: after Rotate raced by touches and writes", round)
		k.missing(step+": old key", oldKey)

		// Every write that succeeded on the old key happened before the
		// move, so the new key holds each racer's last one.
		want := vals("a", `1`)
		for i, n := range r.lastOK {
			if n >= 0 {
				want[fmt.Sprintf("w%d", i)] = []byte(fmt.Sprint(n))
			}
		}
		k.sameValues(step+": new key", k.load(step, moved).Values, want)
	}
}

// testExclusiveCreate: an exclusive Merge (MergeOptions.Exclusive) creates
// a missing session, refuses a live one with ErrExists and changes
// nothing, and of concurrent exclusive creates of one key exactly one
// wins: the handler relies on it to move a session from a previous store
// once.
func testExclusiveCreate(k *kit) {
	now := time.Now()
	excl := func(key string, v string) (*storage.Record, error) {
		return k.s.Merge(k.ctx, key, vals("who", v), storage.MergeOptions{
			Create: true, Exclusive: true, Now: now, Deadline: now.Add(time.Hour),
		})
	}
	key := newKey()
	if _, err := excl(key, `"first"`); err != nil {
		k.Fatalf("exclusive Merge of a missing session: %v", err)
	}
	rec, err := excl(key, `"second"`)
	if !errors.Is(err, storage.ErrExists) {
		k.Fatalf("exclusive Merge of a live session = (%s, %v), want ErrExists", describe(rec), err)
	}
	k.sameValues("after a refused exclusive Merge", k.load("after a refused exclusive Merge", key).Values, vals("who", `"first"`))

	// A deleted session is missing again.
	if err := k.s.Delete(k.ctx, key); err != nil {
		k.Fatalf("Delete: %v", err)
	}
	if _, err := excl(key, `"third"`); err != nil {
		k.Fatalf("exclusive Merge after Delete: %v", err)
	}
	k.sameValues("exclusive Merge after Delete", k.load("after an exclusive Merge after Delete", key).Values, vals("who", `"third"`))

	// Concurrent exclusive creates of one key: exactly one wins, and the
	// session holds the winner's value.
	for round := range k.o.Rounds {
		key := newKey()
		g := k.o.Goroutines
		start := make(chan struct{})
		var wg sync.WaitGroup
		var wins atomic.Int32
		var winner atomic.Value
		for i := range g {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				v := fmt.Sprintf(`"g%d"`, i)
				_, err := excl(key, v)
				switch {
				case err == nil:
					wins.Add(1)
					winner.Store(v)
				case !errors.Is(err, storage.ErrExists):
					k.Errorf("round %d, goroutine %d: exclusive Merge: %v", round, i, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if k.Failed() {
			return
		}
		if n := wins.Load(); n != 1 {
			k.Fatalf("round %d: %d of %d concurrent exclusive Merges of one key succeeded, want exactly 1", round, n, g)
		}
		k.sameValues(fmt.Sprintf("round %d: after concurrent exclusive Merges", round),
			k.load("after concurrent exclusive Merges", key).Values, vals("who", winner.Load().(string)))
	}
}
