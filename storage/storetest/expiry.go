package storetest

import (
	"errors"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// The expiry subtests wait for real time to pass. Checks that a record is
// still served are made only while the machine kept the schedule (a loaded
// CI box may oversleep); checks that it is gone only grow surer with time,
// so they always run.

// onTime reports whether a check that the record is live can still be made
// before expires, with room for the store's precision.
func (k *kit) onTime(expires time.Time) bool {
	if time.Now().Add(k.o.Precision).Before(expires) {
		return true
	}
	k.Logf("machine too slow: skipped a check due before %s", expires.Format(time.RFC3339Nano))
	return false
}

// past sleeps until t is past by the store's precision and the grace.
func (k *kit) past(t time.Time) {
	sleepUntil(t.Add(k.o.Precision + k.o.ExpiryGrace))
}

func testExpiryIdle(k *kit) {
	unit := k.o.expiryUnit()
	key := newKey()
	now := time.Now()
	rec := k.create(key, vals("a", `1`), now, now.Add(time.Hour), unit)
	if k.onTime(rec.Expires) {
		k.load("before the idle timeout", key)
	}

	k.past(rec.Expires)
	k.missing("after the idle timeout", key)

	// An expired record is missing to every method.
	later := time.Now()
	_, err := k.s.Merge(k.ctx, key, vals("b", `2`), storage.MergeOptions{Now: later, IdleTimeout: unit})
	if !errors.Is(err, storage.ErrNotFound) {
		k.Fatalf("Merge(Create=false) after the idle timeout = %v, want ErrNotFound", err)
	}
	if err := k.s.Touch(k.ctx, key, later.Add(time.Hour)); err != nil {
		k.Fatalf("Touch after the idle timeout = %v, want nil", err)
	}
	k.missing("after Touch of an expired session", key)
	target := newKey()
	if err := k.s.Rotate(k.ctx, key, target); !errors.Is(err, storage.ErrNotFound) {
		k.Fatalf("Rotate of an expired session = %v, want ErrNotFound", err)
	}
	k.missing("target of Rotate of an expired session", target)

	// Creating again starts from nothing: the old values do not come back.
	rec = k.create(key, vals("b", `2`), later, later.Add(time.Hour), 0)
	want := &storage.Record{Values: vals("b", `2`), Created: later, Deadline: later.Add(time.Hour), Expires: later.Add(time.Hour)}
	k.sameRecord("session created over an expired one: record Merge returned", rec, want)
	k.sameRecord("session created over an expired one: record Load returned", k.load("re-created", key), want)
}

func testExpiryDeadline(k *kit) {
	unit := k.o.expiryUnit()
	key := newKey()
	now := time.Now()
	deadline := now.Add(unit)
	k.create(key, vals("a", `1`), now, deadline, 0)

	// Neither a write with a long idle timeout nor a touch moves the
	// deadline (the touch comes last: a store that served records by
	// Expires alone would then serve this one past its deadline).
	rec, err := k.s.Merge(k.ctx, key, vals("b", `2`), storage.MergeOptions{Now: time.Now(), IdleTimeout: time.Hour})
	if err != nil {
		k.Fatalf("Merge(Create=false) before the deadline: %v", err)
	}
	k.sameTime("Merge with a long idle timeout", "Expires", rec.Expires, deadline)
	if err := k.s.Touch(k.ctx, key, now.Add(time.Hour)); err != nil {
		k.Fatalf("Touch: %v", err)
	}
	if k.onTime(deadline) {
		got := k.load("before the deadline", key)
		k.sameTime("after a Touch and a Merge past the deadline", "Expires", got.Expires, deadline)
		k.sameTime("after a Touch and a Merge past the deadline", "Deadline", got.Deadline, deadline)
	}

	k.past(deadline)
	k.missing("after the deadline", key)
	if err := k.s.Touch(k.ctx, key, time.Now().Add(time.Hour)); err != nil {
		k.Fatalf("Touch after the deadline = %v, want nil", err)
	}
	k.missing("after Touch past the deadline", key)
}

func testExpiryExtended(k *kit) {
	unit := k.o.expiryUnit()
	touched, merged := newKey(), newKey()
	now := time.Now()
	first := k.create(touched, vals("a", `1`), now, now.Add(time.Hour), 2*unit)
	k.create(merged, vals("a", `1`), now, now.Add(time.Hour), 2*unit)

	// Halfway through the idle timeout, one is touched and one written to.
	sleepUntil(now.Add(unit))
	at := time.Now()
	if err := k.s.Touch(k.ctx, touched, at.Add(2*unit)); err != nil {
		k.Fatalf("Touch: %v", err)
	}
	rec, err := k.s.Merge(k.ctx, merged, vals("b", `2`), storage.MergeOptions{Now: at, IdleTimeout: 2 * unit})
	if err != nil {
		k.Fatalf("Merge(Create=false): %v", err)
	}
	k.sameTime("Merge halfway through the idle timeout", "Expires", rec.Expires, at.Add(2*unit))
	extended := at.Add(2 * unit)

	// Past the first expiry, both are still served.
	k.past(first.Expires)
	if k.onTime(extended) {
		k.sameValues("touched session past its first expiry", k.load("touched session past its first expiry", touched).Values, vals("a", `1`))
		k.sameValues("written session past its first expiry", k.load("written session past its first expiry", merged).Values, vals("a", `1`, "b", `2`))
	}

	k.past(extended)
	k.missing("touched session after its extended expiry", touched)
	k.missing("written session after its extended expiry", merged)
}

// testSetDeadline: MergeOptions.SetDeadline moves an existing session's
// deadline later and earlier, with Expires (and the store's own expiry)
// following; it applies to a session Merge creates too; it creates
// nothing without Create; and later writes and touches keep it.
func testSetDeadline(k *kit) {
	unit := k.o.expiryUnit()
	now := time.Now()

	// Later: a session created for an hour now lasts two days.
	later := newKey()
	k.create(later, vals("a", `1`), now, now.Add(time.Hour), 0)
	far := now.Add(48 * time.Hour)
	rec, err := k.s.Merge(k.ctx, later, nil, storage.MergeOptions{Now: now, SetDeadline: far})
	if err != nil {
		k.Fatalf("Merge with SetDeadline (empty patch): %v", err)
	}
	want := &storage.Record{Values: vals("a", `1`), Created: now, Deadline: far, Expires: far}
	k.sameRecord("Merge moving the deadline later: record Merge returned", rec, want)
	k.sameRecord("Merge moving the deadline later: record Load returned", k.load("deadline moved later", later), want)

	// A later write without SetDeadline keeps the moved deadline; its
	// idle timeout and a touch extend within it.
	at := time.Now()
	rec, err = k.s.Merge(k.ctx, later, vals("b", `2`), storage.MergeOptions{Now: at, Deadline: at.Add(time.Hour), IdleTimeout: 10 * time.Minute})
	if err != nil {
		k.Fatalf("Merge after SetDeadline: %v", err)
	}
	k.sameTime("a write after SetDeadline", "Deadline", rec.Deadline, far)
	k.sameTime("a write after SetDeadline", "Expires", rec.Expires, at.Add(10*time.Minute))
	if err := k.s.Touch(k.ctx, later, at.Add(30*time.Hour)); err != nil {
		k.Fatalf("Touch: %v", err)
	}
	got := k.load("touched past the old deadline", later)
	k.sameTime("touched past the old deadline", "Expires", got.Expires, at.Add(30*time.Hour))
	k.sameTime("touched past the old deadline", "Deadline", got.Deadline, far)

	// Created with SetDeadline: it wins over Deadline.
	created := newKey()
	rec, err = k.s.Merge(k.ctx, created, vals("a", `1`), storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), SetDeadline: now.Add(3 * time.Hour)})
	if err != nil {
		k.Fatalf("Merge(Create=true) with SetDeadline: %v", err)
	}
	k.sameTime("created with SetDeadline", "Deadline", rec.Deadline, now.Add(3*time.Hour))
	k.sameTime("created with SetDeadline", "Deadline", k.load("created with SetDeadline", created).Deadline, now.Add(3*time.Hour))

	// Without Create, SetDeadline creates nothing.
	none := newKey()
	if _, err := k.s.Merge(k.ctx, none, nil, storage.MergeOptions{Now: now, SetDeadline: far}); !errors.Is(err, storage.ErrNotFound) {
		k.Fatalf("Merge(Create=false) with SetDeadline of a missing session = %v, want ErrNotFound", err)
	}
	k.missing("after SetDeadline on a missing session", none)

	// Earlier: a session created for an hour ends after one unit, and no
	// touch brings it back past that.
	sooner := newKey()
	k.create(sooner, vals("a", `1`), now, now.Add(time.Hour), 0)
	at = time.Now()
	end := at.Add(unit)
	rec, err = k.s.Merge(k.ctx, sooner, nil, storage.MergeOptions{Now: at, SetDeadline: end, IdleTimeout: time.Hour})
	if err != nil {
		k.Fatalf("Merge moving the deadline earlier: %v", err)
	}
	k.sameTime("Merge moving the deadline earlier", "Deadline", rec.Deadline, end)
	k.sameTime("Merge moving the deadline earlier", "Expires", rec.Expires, end)
	if err := k.s.Touch(k.ctx, sooner, at.Add(time.Hour)); err != nil {
		k.Fatalf("Touch: %v", err)
	}
	if k.onTime(end) {
		got := k.load("before the earlier deadline", sooner)
		k.sameTime("touched after the deadline moved earlier", "Expires", got.Expires, end)
	}
	k.past(end)
	k.missing("after the deadline moved earlier", sooner)
}
