package storetest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// testVersions: Record.Version starts at MergeOptions.Version, changes
// with every Merge of a non-empty patch and with nothing else; a
// conditional Merge (CheckVersion) applies only at that version, changes
// nothing otherwise and answers a *VersionError holding the current
// record; of writers racing with one version exactly one wins (S48); and,
// for a storage.VersionedDeleter, DeleteVersion honours the version too.
func testVersions(k *kit) {
	now := time.Now()
	const start = 1000
	key := newKey()
	rec, err := k.s.Merge(k.ctx, key, vals("cart", `[1]`), storage.MergeOptions{
		Create: true, Now: now, Deadline: now.Add(time.Hour), IdleTimeout: 10 * time.Minute, Version: start,
	})
	if err != nil {
		k.Fatalf("create: %v", err)
	}
	k.sameVersion("created", rec, start)
	k.sameVersion("Load after create", k.load("after create", key), start)

	merge := func(patch string, opts storage.MergeOptions) (*storage.Record, error) {
		opts.Now, opts.IdleTimeout = time.Now(), 10*time.Minute
		p := vals()
		if patch != "" {
			p = vals("cart", patch)
		}
		return k.s.Merge(k.ctx, key, p, opts)
	}
	rec, err = merge(`[1,2]`, storage.MergeOptions{})
	if err != nil {
		k.Fatalf("Merge: %v", err)
	}
	v1 := rec.Version
	if v1 == start {
		k.Fatalf("a Merge of a non-empty patch left the version at %d", start)
	}
	k.sameVersion("Load after a Merge", k.load("after a Merge", key), v1)

	// No data change, no version change.
	if rec, err = merge("", storage.MergeOptions{}); err != nil {
		k.Fatalf("Merge of an empty patch: %v", err)
	}
	k.sameVersion("Merge of an empty patch", rec, v1)
	if err := k.s.Touch(k.ctx, key, time.Now().Add(20*time.Minute)); err != nil {
		k.Fatalf("Touch: %v", err)
	}
	k.sameVersion("after Touch", k.load("after Touch", key), v1)
	rotated := newKey()
	if err := k.s.Rotate(k.ctx, key, rotated); err != nil {
		k.Fatalf("Rotate: %v", err)
	}
	key = rotated
	k.sameVersion("after Rotate", k.load("after Rotate", key), v1)

	// Conditional: at the version it applies, at another it is refused
	// and changes nothing.
	rec, err = merge(`[1,2,3]`, storage.MergeOptions{CheckVersion: true, IfVersion: v1})
	if err != nil {
		k.Fatalf("Merge at the current version: %v", err)
	}
	v2 := rec.Version
	if v2 == v1 {
		k.Fatal("a conditional Merge left the version as it was")
	}
	rec, err = merge(`["stale"]`, storage.MergeOptions{CheckVersion: true, IfVersion: v1})
	var ve *storage.VersionError
	if !errors.As(err, &ve) || ve.Current == nil {
		k.Fatalf("Merge at a stale version = (%s, %v), want a *VersionError with the current record", describe(rec), err)
	}
	k.sameVersion("the VersionError's record", ve.Current, v2)
	k.sameValues("the VersionError's record", ve.Current.Values, vals("cart", `[1,2,3]`))
	cur := k.load("after a refused conditional Merge", key)
	k.sameVersion("after a refused conditional Merge", cur, v2)
	k.sameValues("after a refused conditional Merge", cur.Values, vals("cart", `[1,2,3]`))

	// A conditional Merge of a missing session creates nothing.
	missing := newKey()
	if _, err := k.s.Merge(k.ctx, missing, vals("a", `1`), storage.MergeOptions{
		Create: true, CheckVersion: true, IfVersion: 0, Now: now, Deadline: now.Add(time.Hour),
	}); !errors.Is(err, storage.ErrNotFound) {
		k.Fatalf("conditional Merge of a missing session = %v, want ErrNotFound", err)
	}
	k.missing("after a conditional Merge of a missing session", missing)

	// Racing writers with one version: exactly one wins.
	for round := range k.o.Rounds {
		at := k.load("before the race", key).Version
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
				v := fmt.Sprintf(`["g%d"]`, i)
				_, err := merge(v, storage.MergeOptions{CheckVersion: true, IfVersion: at})
				var ve *storage.VersionError
				switch {
				case err == nil:
					wins.Add(1)
					winner.Store(v)
				case !errors.As(err, &ve):
					k.Errorf("round %d, writer %d: %v", round, i, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if k.Failed() {
			return
		}
		if n := wins.Load(); n != 1 {
			k.Fatalf("round %d: %d of %d writers with version %d succeeded, want exactly 1", round, n, g, at)
		}
		k.sameValues(fmt.Sprintf("round %d: after the race", round), k.load("after the race", key).Values,
			vals("cart", winner.Load().(string)))
	}

	d, ok := k.s.(storage.VersionedDeleter)
	if !ok {
		return
	}
	at := k.load("before DeleteVersion", key).Version
	if err := d.DeleteVersion(k.ctx, key, at+7); !errors.As(err, &ve) || ve.Current == nil || ve.Current.Version != at {
		k.Fatalf("DeleteVersion at a stale version = %v, want a *VersionError with the current record", err)
	}
	k.sameVersion("after a refused DeleteVersion", k.load("after a refused DeleteVersion", key), at)
	if err := d.DeleteVersion(k.ctx, key, at); err != nil {
		k.Fatalf("DeleteVersion at the current version: %v", err)
	}
	k.missing("after DeleteVersion", key)
	if err := d.DeleteVersion(k.ctx, key, at); !errors.Is(err, storage.ErrNotFound) {
		k.Fatalf("DeleteVersion of a missing session = %v, want ErrNotFound", err)
	}
}

// sameVersion fails the test when rec is not at version want.
func (k *kit) sameVersion(step string, rec *storage.Record, want uint64) {
	k.Helper()
	if rec.Version != want {
		k.Fatalf("%s: Version = %d, want %d", step, rec.Version, want)
	}
}
