package storetest

import (
	"fmt"
	"sync"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// The subtests of what a session carries besides its values: its audience,
// its New state (confirmation) and the counts an operator reads.

func testAudience(k *kit) {
	key := newKey()
	now := time.Now()
	deadline := now.Add(time.Hour)
	const aud = "shop.example.com"
	rec, err := k.s.Merge(k.ctx, key, vals("a", `1`), storage.MergeOptions{
		Create: true, Now: now, Deadline: deadline, Audience: aud,
	})
	if err != nil {
		k.Fatalf("Merge(Create=true, Audience %q): %v", aud, err)
	}
	k.sameAudience("record Merge returned on create", rec, aud)
	k.sameAudience("record Load returned", k.load("after create", key), aud)

	// A merge keeps the stored audience, whatever its options say: the
	// Audience option is for creating.
	rec, err = k.s.Merge(k.ctx, key, vals("b", `2`), storage.MergeOptions{Now: now, Deadline: deadline})
	if err != nil {
		k.Fatalf("Merge without an Audience into the session: %v", err)
	}
	k.sameAudience("Merge without an Audience: record Merge returned", rec, aud)
	k.sameAudience("Merge without an Audience: record Load returned", k.load("after a merge", key), aud)
	rec, err = k.s.Merge(k.ctx, key, vals("c", `3`), storage.MergeOptions{Create: true, Now: now, Deadline: deadline, Audience: "other.example"})
	if err != nil {
		k.Fatalf("Merge with another Audience into the session: %v", err)
	}
	k.sameAudience("Merge with another Audience: record Merge returned", rec, aud)
	k.sameAudience("Merge with another Audience: record Load returned", k.load("after a merge", key), aud)

	// Rotate moves it with the session.
	rotated := newKey()
	if err := k.s.Rotate(k.ctx, key, rotated); err != nil {
		k.Fatalf("Rotate: %v", err)
	}
	k.sameAudience("after Rotate", k.load("after Rotate", rotated), aud)

	// Sessions of two audiences side by side, and one of none.
	other, none := newKey(), newKey()
	if _, err := k.s.Merge(k.ctx, other, vals("a", `1`), storage.MergeOptions{Create: true, Now: now, Deadline: deadline, Audience: "b\u00fccher.example"}); err != nil {
		k.Fatalf("Merge(Create=true) of a second audience: %v", err)
	}
	k.create(none, vals("a", `1`), now, deadline, 0)
	k.sameAudience("a session of another audience", k.load("another audience", other), "b\u00fccher.example")
	k.sameAudience("a session created without an Audience", k.load("no audience", none), "")
	k.sameAudience("the first session after others were created", k.load("first session", rotated), aud)
}

// sameAudience fails unless rec belongs to aud.
func (k *kit) sameAudience(step string, rec *storage.Record, aud string) {
	k.Helper()
	if rec.Audience != aud {
		k.Fatalf("%s: Audience = %q, want %q", step, rec.Audience, aud)
	}
}

// sameNew fails unless rec's New state is want; a store that keeps none
// (Options.NoNewState) must always say false.
func (k *kit) sameNew(step string, rec *storage.Record, want bool) {
	k.Helper()
	if k.o.NoNewState {
		want = false
	}
	if rec.New != want {
		k.Fatalf("%s: New = %v, want %v", step, rec.New, want)
	}
}

// confirmer returns the store as a storage.Confirmer, or fails the test:
// a store keeps the New state unless Options.NoNewState says it does not.
func (k *kit) confirmer() storage.Confirmer {
	k.Helper()
	c, ok := k.s.(storage.Confirmer)
	if !ok {
		k.Fatalf("%T does not implement storage.Confirmer, so the handler cannot confirm its new sessions "+
			"(Record.New) and they cannot be told from real ones (S42). Implement Confirm (see storage.Confirmer); "+
			"a store that deliberately keeps no New state sets storetest.Options.NoNewState", k.s)
	}
	return c
}

func testNewSession(k *kit) {
	if !k.o.NoNewState {
		k.confirmer()
	}
	const ttl, idle = 10 * time.Minute, 30 * time.Minute
	key := newKey()
	now := time.Now()
	deadline := now.Add(time.Hour)
	values := vals("a", `1`)
	opts := storage.MergeOptions{Create: true, Now: now, Deadline: deadline, IdleTimeout: idle, NewTTL: ttl}

	// Created new: its expiry is capped at Created + NewTTL.
	rec, err := k.s.Merge(k.ctx, key, values, opts)
	if err != nil {
		k.Fatalf("Merge(Create=true, NewTTL %s): %v", ttl, err)
	}
	want := &storage.Record{Values: values, Created: now, Deadline: deadline, Expires: now.Add(ttl), New: true}
	if k.o.NoNewState {
		want.Expires = opts.ExpiresOf(now, deadline, false)
	}
	k.sameNewRecord("created with a NewTTL: record Merge returned", rec, want)
	k.sameNewRecord("created with a NewTTL: record Load returned", k.load("after create", key), want)

	// Written to without Confirm (a request that did not present the
	// cookie): still new, still capped, even with a long idle timeout.
	later := now.Add(2 * time.Second)
	rec, err = k.s.Merge(k.ctx, key, vals("b", `2`), storage.MergeOptions{Now: later, IdleTimeout: idle, NewTTL: ttl})
	if err != nil {
		k.Fatalf("Merge without Confirm into a new session: %v", err)
	}
	want.Values = vals("a", `1`, "b", `2`)
	if k.o.NoNewState {
		want.Expires = later.Add(idle)
	}
	k.sameNewRecord("Merge without Confirm: record Merge returned", rec, want)
	k.sameNewRecord("Merge without Confirm: record Load returned", k.load("after a merge without Confirm", key), want)

	// Rotated: still new.
	rotated := newKey()
	if err := k.s.Rotate(k.ctx, key, rotated); err != nil {
		k.Fatalf("Rotate of a new session: %v", err)
	}
	k.sameNewRecord("after Rotate", k.load("after Rotate", rotated), want)
	key = rotated

	// Written to with Confirm: confirmed, and its expiry is the normal one.
	rec, err = k.s.Merge(k.ctx, key, vals("c", `3`), storage.MergeOptions{Now: later, IdleTimeout: idle, NewTTL: ttl, Confirm: true})
	if err != nil {
		k.Fatalf("Merge with Confirm into a new session: %v", err)
	}
	want.Values, want.Expires, want.New = vals("a", `1`, "b", `2`, "c", `3`), later.Add(idle), false
	k.sameNewRecord("Merge with Confirm: record Merge returned", rec, want)
	k.sameNewRecord("Merge with Confirm: record Load returned", k.load("after a merge with Confirm", key), want)

	// Confirmed for good: a later write without Confirm neither makes it
	// new again nor caps it.
	last := later.Add(time.Second)
	rec, err = k.s.Merge(k.ctx, key, vals("d", `4`), storage.MergeOptions{Now: last, IdleTimeout: idle, NewTTL: ttl})
	if err != nil {
		k.Fatalf("Merge without Confirm into a confirmed session: %v", err)
	}
	want.Values, want.Expires = vals("a", `1`, "b", `2`, "c", `3`, "d", `4`), last.Add(idle)
	k.sameNewRecord("Merge without Confirm into a confirmed session: record Merge returned", rec, want)
	k.sameNewRecord("Merge without Confirm into a confirmed session: record Load returned", k.load("after a later merge", key), want)

	// Without a NewTTL, sessions are created confirmed.
	plain := newKey()
	rec = k.create(plain, values, now, deadline, idle)
	k.sameNewRecord("created without a NewTTL", rec, &storage.Record{Values: values, Created: now, Deadline: deadline, Expires: now.Add(idle)})
}

// sameNewRecord is sameRecord, and the New state.
func (k *kit) sameNewRecord(step string, got, want *storage.Record) {
	k.Helper()
	k.sameRecord(step, got, want)
	k.sameNew(step, got, want.New)
}

// testNewSessionExpires: a new session lives NewTTL at most, unless
// confirmed; a confirmed one created alongside it lives on.
func testNewSessionExpires(k *kit) {
	if k.o.NoNewState {
		k.Skip("Options.NoNewState: the store keeps no New state")
	}
	k.confirmer()
	unit := k.o.expiryUnit()
	now := time.Now()
	deadline := now.Add(time.Hour)
	create := func(key string, ttl time.Duration) {
		k.Helper()
		if _, err := k.s.Merge(k.ctx, key, vals("a", `1`), storage.MergeOptions{Create: true, Now: now, Deadline: deadline, NewTTL: ttl}); err != nil {
			k.Fatalf("Merge(Create=true, NewTTL %s): %v", ttl, err)
		}
	}
	fresh, confirmed, written := newKey(), newKey(), newKey()
	create(fresh, unit)
	create(confirmed, unit)
	create(written, unit)
	plain := newKey()
	k.create(plain, vals("a", `1`), now, deadline, 0)

	if err := k.confirmer().Confirm(k.ctx, confirmed, deadline); err != nil {
		k.Fatalf("Confirm: %v", err)
	}
	if _, err := k.s.Merge(k.ctx, written, vals("b", `2`), storage.MergeOptions{Now: time.Now(), NewTTL: unit, Confirm: true}); err != nil {
		k.Fatalf("Merge with Confirm: %v", err)
	}
	// A touch does not let a new session outlive its NewTTL.
	if err := k.s.Touch(k.ctx, fresh, deadline); err != nil {
		k.Fatalf("Touch: %v", err)
	}
	if k.onTime(now.Add(unit)) {
		k.load("a new session before its NewTTL", fresh)
	}

	k.past(now.Add(unit))
	k.missing("a new session (touched, never confirmed) after its NewTTL", fresh)
	k.sameNew("a session confirmed by Confirm, after the NewTTL", k.load("confirmed by Confirm", confirmed), false)
	k.sameNew("a session confirmed by a Merge, after the NewTTL", k.load("confirmed by a Merge", written), false)
	k.sameNew("a session created without a NewTTL, after the NewTTL", k.load("created confirmed", plain), false)
}

func testConfirm(k *kit) {
	if k.o.NoNewState {
		k.Skip("Options.NoNewState: the store keeps no New state")
	}
	c := k.confirmer()
	const ttl = 10 * time.Minute
	key := newKey()
	now := time.Now()
	deadline := now.Add(time.Hour)
	values := vals("a", `1`, "b", `"x"`)
	if _, err := k.s.Merge(k.ctx, key, values, storage.MergeOptions{Create: true, Now: now, Deadline: deadline, NewTTL: ttl}); err != nil {
		k.Fatalf("Merge(Create=true, NewTTL %s): %v", ttl, err)
	}

	// Confirmed: no longer new, its expiry moved, its values kept.
	if err := c.Confirm(k.ctx, key, now.Add(30*time.Minute)); err != nil {
		k.Fatalf("Confirm: %v", err)
	}
	want := &storage.Record{Values: values, Created: now, Deadline: deadline, Expires: now.Add(30 * time.Minute)}
	k.sameNewRecord("after Confirm", k.load("after Confirm", key), want)

	// Again, on a confirmed session: only the expiry moves, never past
	// the deadline.
	if err := c.Confirm(k.ctx, key, deadline.Add(time.Hour)); err != nil {
		k.Fatalf("Confirm of a confirmed session: %v", err)
	}
	want.Expires = deadline
	k.sameNewRecord("after Confirm past the deadline", k.load("after a second Confirm", key), want)

	// A missing session stays missing.
	gone := newKey()
	if err := c.Confirm(k.ctx, gone, now.Add(time.Hour)); err != nil {
		k.Fatalf("Confirm of a missing session = %v, want nil", err)
	}
	k.missing("after Confirm of a missing session", gone)

	// Confirm never rewrites values: writes of different keys racing
	// confirms all survive.
	raced := newKey()
	if _, err := k.s.Merge(k.ctx, raced, vals("base", `0`), storage.MergeOptions{Create: true, Now: now, Deadline: deadline, NewTTL: ttl}); err != nil {
		k.Fatalf("Merge(Create=true): %v", err)
	}
	g := k.o.Goroutines
	limits := storage.Limits{MaxKeys: g + 10}
	var wg sync.WaitGroup
	for i := range g {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for n := range 5 {
				if _, err := k.s.Merge(k.ctx, raced, vals(fmt.Sprintf("k%d", i), fmt.Sprint(n)), storage.MergeOptions{
					Now: time.Now(), NewTTL: ttl, Limits: limits,
				}); err != nil {
					k.Errorf("writer %d: Merge: %v", i, err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range 5 {
				if err := c.Confirm(k.ctx, raced, time.Now().Add(time.Hour)); err != nil {
					k.Errorf("Confirm: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if k.Failed() {
		return
	}
	wantValues := vals("base", `0`)
	for i := range g {
		wantValues[fmt.Sprintf("k%d", i)] = []byte(`4`)
	}
	got := k.load("after writes racing confirms", raced)
	k.sameValues(fmt.Sprintf("after %d writers raced %d confirmers", g, g), got.Values, wantValues)
	k.sameNew("after writes racing confirms", got, false)
}

// testCounts: Count tells new sessions from confirmed ones. It compares
// counts before and after its own writes, so the store must not be written
// by anyone else meanwhile (the kit's other subtests do not run during it).
func testCounts(k *kit) {
	counter, ok := k.s.(storage.Counter)
	if !ok {
		k.Skipf("%T does not implement storage.Counter", k.s)
	}
	count := func(step string) storage.Counts {
		k.Helper()
		c, err := counter.Count(k.ctx)
		if err != nil {
			k.Fatalf("%s: Count: %v", step, err)
		}
		return c
	}
	before := count("before")
	now := time.Now()
	deadline := now.Add(time.Hour)
	var keys []string
	for i := range 7 {
		key := newKey()
		keys = append(keys, key)
		ttl := time.Duration(0)
		if i < 4 {
			ttl = 10 * time.Minute
		}
		if _, err := k.s.Merge(k.ctx, key, vals("i", fmt.Sprint(i)), storage.MergeOptions{Create: true, Now: now, Deadline: deadline, NewTTL: ttl}); err != nil {
			k.Fatalf("Merge(Create=true): %v", err)
		}
	}
	// Of the 4 new ones, one is confirmed by a write and one is deleted;
	// of the 3 confirmed ones, one is deleted.
	if _, err := k.s.Merge(k.ctx, keys[0], vals("x", `1`), storage.MergeOptions{Now: now, NewTTL: 10 * time.Minute, Confirm: true}); err != nil {
		k.Fatalf("Merge with Confirm: %v", err)
	}
	for _, key := range []string{keys[1], keys[6]} {
		if err := k.s.Delete(k.ctx, key); err != nil {
			k.Fatalf("Delete: %v", err)
		}
	}
	after := count("after writes")
	want := storage.Counts{New: 2, Confirmed: 3}
	if k.o.NoNewState {
		want = storage.Counts{Confirmed: 5}
	}
	if got := (storage.Counts{New: after.New - before.New, Confirmed: after.Confirmed - before.Confirmed}); got != want {
		k.Fatalf("Count went from %+v to %+v: %+v more, want %+v more (2 new sessions, 3 confirmed)", before, after, got, want)
	}
	for _, key := range keys {
		if err := k.s.Delete(k.ctx, key); err != nil {
			k.Fatalf("Delete: %v", err)
		}
	}
	if got := count("after deleting them all"); got != before {
		k.Fatalf("Count = %+v after the subtest deleted its sessions, want %+v as before", got, before)
	}
}
