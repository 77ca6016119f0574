package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// The subtests of single-goroutine behaviour: what one request at a time
// sees.

func testLoadMissing(k *kit) {
	k.missing("unknown key", newKey())
}

func testMergeMissingWithoutCreate(k *kit) {
	key := newKey()
	now := time.Now()
	rec, err := k.s.Merge(k.ctx, key, vals("a", `1`), storage.MergeOptions{
		Create: false, Now: now, Deadline: now.Add(time.Hour),
	})
	if !errors.Is(err, storage.ErrNotFound) {
		k.Fatalf("Merge(Create=false) of a missing session = (%s, %v), want ErrNotFound", describe(rec), err)
	}
	k.missing("after Merge(Create=false) of a missing session", key)
}

func testMergeCreate(k *kit) {
	now := time.Now()
	deadline := now.Add(time.Hour)
	values := vals(
		"countryCode", `"CA"`,
		"cart-id", `"gid://shopify/Cart/c1"`,
		"customer_token", `{"id":42,"tags":["vip",null],"ok":true,"n":1.5}`,
	)

	// Without an idle timeout the record lives until its deadline.
	key := newKey()
	rec := k.create(key, values, now, deadline, 0)
	want := &storage.Record{Values: values, Created: now, Deadline: deadline, Expires: deadline}
	k.sameRecord("record Merge returned", rec, want)
	k.sameRecord("record Load returned", k.load("after create", key), want)

	// With one, it expires after it, counted from MergeOptions.Now.
	key = newKey()
	rec = k.create(key, values, now, deadline, 10*time.Minute)
	want.Expires = now.Add(10 * time.Minute)
	k.sameRecord("create with idle timeout: record Merge returned", rec, want)
	k.sameRecord("create with idle timeout: record Load returned", k.load("after create", key), want)

	// An idle timeout longer than the remaining life stops at the deadline.
	key = newKey()
	short := now.Add(5 * time.Minute)
	rec = k.create(key, values, now, short, time.Hour)
	want = &storage.Record{Values: values, Created: now, Deadline: short, Expires: short}
	k.sameRecord("idle timeout past the deadline: record Merge returned", rec, want)
	k.sameRecord("idle timeout past the deadline: record Load returned", k.load("after create", key), want)
}

func testMergeSemantics(k *kit) {
	key := newKey()
	now := time.Now()
	deadline := now.Add(time.Hour)
	k.create(key, vals("a", `1`, "b", `"two"`, "c", `[3]`, "d", `{"four":4}`), now, deadline, 10*time.Minute)

	// A later write: replaces a, deletes b with null and c with a nil
	// value, adds e, keeps d. It must not move Created or Deadline (even
	// when its own Deadline differs: that one is for creating), and
	// renews Expires from its own Now.
	later := now.Add(2 * time.Second)
	patch := vals("a", `"one"`, "b", `null`, "e", `5`)
	patch["c"] = nil
	rec, err := k.s.Merge(k.ctx, key, patch, storage.MergeOptions{
		Create: true, Now: later, Deadline: later.Add(24 * time.Hour), IdleTimeout: 10 * time.Minute,
	})
	if err != nil {
		k.Fatalf("Merge into an existing session: %v", err)
	}
	want := &storage.Record{
		Values:   vals("a", `"one"`, "d", `{"four":4}`, "e", `5`),
		Created:  now,
		Deadline: deadline,
		Expires:  later.Add(10 * time.Minute),
	}
	k.sameRecord("record Merge returned", rec, want)
	k.sameRecord("record Load returned", k.load("after merge", key), want)

	// Create=false on a live session merges the same way.
	rec, err = k.s.Merge(k.ctx, key, vals("d", `null`), storage.MergeOptions{Now: later, IdleTimeout: 10 * time.Minute})
	if err != nil {
		k.Fatalf("Merge(Create=false) into a live session: %v", err)
	}
	want.Values = vals("a", `"one"`, "e", `5`)
	k.sameRecord("Merge(Create=false): record Merge returned", rec, want)
	k.sameRecord("Merge(Create=false): record Load returned", k.load("after merge", key), want)

	// An empty patch changes no value.
	if _, err := k.s.Merge(k.ctx, key, nil, storage.MergeOptions{Now: later, IdleTimeout: 10 * time.Minute}); err != nil {
		k.Fatalf("Merge of an empty patch: %v", err)
	}
	k.sameRecord("after an empty patch", k.load("after an empty patch", key), want)

	// Another session is not touched by any of this.
	other := newKey()
	k.create(other, vals("a", `"other"`), now, deadline, 0)
	k.sameValues("other session", k.load("other session", other).Values, vals("a", `"other"`))
	k.sameValues("first session after another was created", k.load("first session", key).Values, want.Values)
}

func testMergeRejected(k *kit) {
	key := newKey()
	now := time.Now()
	deadline := now.Add(time.Hour)
	k.create(key, vals("a", `1`, "cart-id", `"c1"`), now, deadline, 10*time.Minute)
	before := k.load("before the rejected merges", key)

	// Each rejected merge comes later with an idle timeout, so a store that
	// half-applies it (touching the expiry, say) shows up in Expires.
	later := now.Add(time.Minute)
	rejected := []struct {
		name   string
		patch  map[string]json.RawMessage
		limits storage.Limits
		check  func(error) error
	}{
		{"bad key", vals("1bad", `1`, "z", `2`), storage.Limits{}, wantKeyError("1bad", "")},
		{"colliding key", vals("cart_id", `"c2"`), storage.Limits{}, wantKeyError("cart_id", "cart-id")},
		{"too many keys", vals("b", `2`, "c", `3`), storage.Limits{MaxKeys: 3}, wantLimitError("keys")},
		{"too large", vals("b", `"`+strings.Repeat("x", 100)+`"`), storage.Limits{MaxSize: 64}, wantLimitError("size")},
	}
	for _, r := range rejected {
		for _, create := range []bool{false, true} {
			_, err := k.s.Merge(k.ctx, key, r.patch, storage.MergeOptions{
				Create: create, Now: later, Deadline: later.Add(time.Hour), IdleTimeout: 10 * time.Minute, Limits: r.limits,
			})
			if e := r.check(err); e != nil {
				k.Fatalf("%s (Create=%v): %v", r.name, create, e)
			}
			k.sameRecord(fmt.Sprintf("%s (Create=%v): stored session", r.name, create), k.load(r.name, key), before)
		}
	}

	// Refused while creating: nothing is created.
	refusedNew := []struct {
		name   string
		patch  map[string]json.RawMessage
		limits storage.Limits
		check  func(error) error
	}{
		{"bad key", vals("z", `2`, "1bad", `1`), storage.Limits{}, wantKeyError("1bad", "")},
		{"colliding keys", vals("cart-id", `"c1"`, "cart_id", `"c2"`), storage.Limits{}, func(err error) error {
			var ke *storage.KeyError
			if !errors.As(err, &ke) || ke.Other == "" {
				return fmt.Errorf("Merge error = %v, want a *storage.KeyError naming both keys", err)
			}
			return nil
		}},
		{"too many keys", vals("a", `1`, "b", `2`, "c", `3`, "d", `4`), storage.Limits{MaxKeys: 3}, wantLimitError("keys")},
		{"too large", vals("b", `"`+strings.Repeat("x", 100)+`"`), storage.Limits{MaxSize: 64}, wantLimitError("size")},
	}
	for _, r := range refusedNew {
		fresh := newKey()
		_, err := k.s.Merge(k.ctx, fresh, r.patch, storage.MergeOptions{
			Create: true, Now: now, Deadline: deadline, Limits: r.limits,
		})
		if e := r.check(err); e != nil {
			k.Fatalf("%s on a new session: %v", r.name, e)
		}
		k.missing(r.name+" on a new session", fresh)
	}
}

// wantKeyError checks for a *storage.KeyError about key (and other).
func wantKeyError(key, other string) func(error) error {
	return func(err error) error {
		var ke *storage.KeyError
		if !errors.As(err, &ke) {
			return fmt.Errorf("Merge error = %v, want a *storage.KeyError", err)
		}
		if ke.Key != key || ke.Other != other {
			return fmt.Errorf("KeyError{Key: %q, Other: %q}, want {%q, %q}", ke.Key, ke.Other, key, other)
		}
		return nil
	}
}

// wantLimitError checks for a *storage.LimitError about what.
func wantLimitError(what string) func(error) error {
	return func(err error) error {
		var le *storage.LimitError
		if !errors.As(err, &le) {
			return fmt.Errorf("Merge error = %v, want a *storage.LimitError", err)
		}
		if le.What != what {
			return fmt.Errorf("LimitError.What = %q, want %q", le.What, what)
		}
		return nil
	}
}

// testIsolation: a caller may change the maps it gets from and gives to a
// store without changing what is stored.
func testIsolation(k *kit) {
	key := newKey()
	now := time.Now()
	patch := vals("a", `1`, "b", `2`)
	rec := k.create(key, patch, now, now.Add(time.Hour), 0)
	want := vals("a", `1`, "b", `2`)

	patch["c"] = json.RawMessage(`3`)
	delete(patch, "a")
	k.sameValues("after the caller changed its patch map", k.load("patch", key).Values, want)

	rec.Values["d"] = json.RawMessage(`4`)
	delete(rec.Values, "b")
	k.sameValues("after the caller changed the map Merge returned", k.load("merge result", key).Values, want)

	got := k.load("load", key)
	got.Values["e"] = json.RawMessage(`5`)
	delete(got.Values, "a")
	got.Expires = got.Expires.Add(time.Hour)
	again := k.load("load again", key)
	k.sameValues("after the caller changed the map Load returned", again.Values, want)
	k.sameTime("after the caller changed the record Load returned", "Expires", again.Expires, now.Add(time.Hour))
}

func testTouch(k *kit) {
	key := newKey()
	now := time.Now()
	deadline := now.Add(time.Hour)
	values := vals("a", `1`, "b", `"x"`)
	k.create(key, values, now, deadline, 10*time.Minute)

	// Forward: only Expires moves.
	if err := k.s.Touch(k.ctx, key, now.Add(20*time.Minute)); err != nil {
		k.Fatalf("Touch: %v", err)
	}
	want := &storage.Record{Values: values, Created: now, Deadline: deadline, Expires: now.Add(20 * time.Minute)}
	k.sameRecord("after Touch", k.load("after Touch", key), want)

	// Never past the deadline.
	if err := k.s.Touch(k.ctx, key, deadline.Add(time.Hour)); err != nil {
		k.Fatalf("Touch past the deadline: %v", err)
	}
	want.Expires = deadline
	k.sameRecord("after Touch past the deadline", k.load("after Touch past the deadline", key), want)

	// A missing session stays missing.
	gone := newKey()
	if err := k.s.Touch(k.ctx, gone, now.Add(time.Hour)); err != nil {
		k.Fatalf("Touch of a missing session = %v, want nil", err)
	}
	k.missing("after Touch of a missing session", gone)
}

func testDelete(k *kit) {
	key, other := newKey(), newKey()
	now := time.Now()
	k.create(key, vals("a", `1`), now, now.Add(time.Hour), 0)
	k.create(other, vals("a", `2`), now, now.Add(time.Hour), 0)

	if err := k.s.Delete(k.ctx, key); err != nil {
		k.Fatalf("Delete: %v", err)
	}
	k.missing("after Delete", key)
	if err := k.s.Delete(k.ctx, key); err != nil {
		k.Fatalf("second Delete = %v, want nil (Delete is idempotent)", err)
	}
	if err := k.s.Delete(k.ctx, newKey()); err != nil {
		k.Fatalf("Delete of a key never written = %v, want nil", err)
	}
	_, err := k.s.Merge(k.ctx, key, vals("b", `2`), storage.MergeOptions{Now: now, IdleTimeout: time.Minute})
	if !errors.Is(err, storage.ErrNotFound) {
		k.Fatalf("Merge(Create=false) after Delete = %v, want ErrNotFound", err)
	}
	if err := k.s.Touch(k.ctx, key, now.Add(time.Hour)); err != nil {
		k.Fatalf("Touch after Delete = %v, want nil", err)
	}
	k.missing("after Merge and Touch of the deleted session", key)
	k.sameValues("other session after Delete", k.load("other session", other).Values, vals("a", `2`))
}

func testRotate(k *kit) {
	oldKey, rotated := newKey(), newKey()
	now := time.Now()
	deadline := now.Add(time.Hour)
	values := vals("customerId", `"c_42"`, "cart", `{"lines":3}`)
	before := k.create(oldKey, values, now, deadline, 10*time.Minute)

	if err := k.s.Rotate(k.ctx, oldKey, rotated); err != nil {
		k.Fatalf("Rotate: %v", err)
	}
	k.sameRecord("new key after Rotate", k.load("new key after Rotate", rotated), before)
	k.missing("old key after Rotate", oldKey)

	// Nothing revives the old key: not a write without Create, not a touch.
	_, err := k.s.Merge(k.ctx, oldKey, vals("x", `1`), storage.MergeOptions{Now: now, IdleTimeout: time.Minute})
	if !errors.Is(err, storage.ErrNotFound) {
		k.Fatalf("Merge(Create=false) of the old key after Rotate = %v, want ErrNotFound", err)
	}
	if err := k.s.Touch(k.ctx, oldKey, now.Add(30*time.Minute)); err != nil {
		k.Fatalf("Touch of the old key after Rotate = %v, want nil", err)
	}
	k.missing("old key after Merge and Touch", oldKey)
	k.sameRecord("new key after writes to the old one", k.load("new key", rotated), before)

	// The moved session is a normal one.
	if _, err := k.s.Merge(k.ctx, rotated, vals("x", `1`), storage.MergeOptions{Now: now, IdleTimeout: 10 * time.Minute}); err != nil {
		k.Fatalf("Merge into the rotated session: %v", err)
	}
	k.sameValues("rotated session after a merge", k.load("rotated session", rotated).Values,
		vals("customerId", `"c_42"`, "cart", `{"lines":3}`, "x", `1`))

	// Rotating what is not there.
	if err := k.s.Rotate(k.ctx, oldKey, newKey()); !errors.Is(err, storage.ErrNotFound) {
		k.Fatalf("Rotate of the already rotated key = %v, want ErrNotFound", err)
	}
	target := newKey()
	if err := k.s.Rotate(k.ctx, newKey(), target); !errors.Is(err, storage.ErrNotFound) {
		k.Fatalf("Rotate of a key never written = %v, want ErrNotFound", err)
	}
	k.missing("target of a failed Rotate", target)
}

func testLargeValue(k *kit) {
	key := newKey()
	now := time.Now()
	// 60 KB, under the default 64 KiB max_size, with escapes and non-ASCII
	// text so that a store's encoding is exercised too.
	big := `"` + strings.Repeat(`0123456789abcdef\"\\\n€`, 60<<10/26) + `"`
	if !json.Valid([]byte(big)) {
		k.Fatal("bad test value")
	}
	k.create(key, vals("big", big, "small", `1`), now, now.Add(time.Hour), 0)
	k.sameValues("60 KB value", k.load("60 KB value", key).Values, vals("big", big, "small", `1`))

	if _, err := k.s.Merge(k.ctx, key, vals("small", `2`), storage.MergeOptions{Now: now}); err != nil {
		k.Fatalf("Merge next to a 60 KB value: %v", err)
	}
	k.sameValues("60 KB value after another key changed", k.load("after merge", key).Values, vals("big", big, "small", `2`))

	// Past the default 64 KiB: refused, and the session unchanged.
	huge := `"` + strings.Repeat("y", 70<<10) + `"`
	_, err := k.s.Merge(k.ctx, key, vals("huge", huge), storage.MergeOptions{Now: now})
	if e := wantLimitError("size")(err); e != nil {
		k.Fatalf("70 KB value under the default limits: %v", e)
	}
	k.sameValues("after a refused 70 KB value", k.load("after refusal", key).Values, vals("big", big, "small", `2`))
}

func testManySessions(k *kit) {
	n := k.o.Sessions
	now := time.Now()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = newKey()
		k.create(keys[i], vals("i", fmt.Sprint(i), "s", fmt.Sprintf(`"session %d"`, i)), now, now.Add(time.Hour), 0)
	}
	for i, key := range keys {
		if d := diffValues(k.load("many sessions", key).Values, vals("i", fmt.Sprint(i), "s", fmt.Sprintf(`"session %d"`, i))); d != "" {
			k.Fatalf("session %d of %d: %s", i, n, d)
		}
	}
	for i := 0; i < n; i += 2 {
		if err := k.s.Delete(k.ctx, keys[i]); err != nil {
			k.Fatalf("Delete of session %d: %v", i, err)
		}
	}
	for i, key := range keys {
		if i%2 == 0 {
			k.missing(fmt.Sprintf("session %d after Delete", i), key)
			continue
		}
		if d := diffValues(k.load("many sessions after deletes", key).Values, vals("i", fmt.Sprint(i), "s", fmt.Sprintf(`"session %d"`, i))); d != "" {
			k.Fatalf("session %d after half were deleted: %s", i, d)
		}
	}
}

// testRotationGrace: for storage.RotationGrace after a Rotate, the old key
// answers storage.ErrRotated to Load and Merge, and no Merge (not even
// with Create) makes a session there: a request that raced a sign-in must
// neither read the session nor start a new one under the old ID. A key
// that was never rotated away stays a plain miss.
func testRotationGrace(k *kit) {
	oldKey, rotated := newKey(), newKey()
	now := time.Now()
	values := vals("customerId", `"c_42"`)
	before := k.create(oldKey, values, now, now.Add(time.Hour), 10*time.Minute)
	if err := k.s.Rotate(k.ctx, oldKey, rotated); err != nil {
		k.Fatalf("Rotate: %v", err)
	}
	if _, err := k.s.Load(k.ctx, oldKey); !errors.Is(err, storage.ErrRotated) || !errors.Is(err, storage.ErrNotFound) {
		k.Fatalf("Load of the key a session was rotated away from = %v, want ErrRotated", err)
	}
	for _, create := range []bool{false, true} {
		rec, err := k.s.Merge(k.ctx, oldKey, vals("cart", `[1]`), storage.MergeOptions{
			Create: create, Now: now, Deadline: now.Add(time.Hour), IdleTimeout: 10 * time.Minute,
		})
		if !errors.Is(err, storage.ErrRotated) {
			k.Fatalf("Merge(Create=%v) of the rotated-away key = (%s, %v), want ErrRotated", create, describe(rec), err)
		}
	}
	if err := k.s.Touch(k.ctx, oldKey, now.Add(30*time.Minute)); err != nil {
		k.Fatalf("Touch of the rotated-away key = %v, want nil", err)
	}
	if _, err := k.s.Load(k.ctx, oldKey); !errors.Is(err, storage.ErrRotated) {
		k.Fatalf("Load of the rotated-away key after Merge and Touch = %v, want ErrRotated still", err)
	}
	k.sameRecord("new key after writes to the old one", k.load("new key", rotated), before)

	// A key never written, and the target of a failed Rotate, are plain
	// misses.
	never, target := newKey(), newKey()
	if err := k.s.Rotate(k.ctx, never, target); !errors.Is(err, storage.ErrNotFound) {
		k.Fatalf("Rotate of a key never written = %v, want ErrNotFound", err)
	}
	for _, key := range []string{never, target} {
		if _, err := k.s.Load(k.ctx, key); !errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrRotated) {
			k.Fatalf("Load of a key no session was rotated away from = %v, want ErrNotFound and not ErrRotated", err)
		}
	}
}

// testInternalNames: a store keeps the handler's internal names (a flash
// value, the end of a key: storage.FlashPrefix, storage.ExpiryPrefix) like
// any other, and a write of a key removes that key's end unless the write
// sets it (storage.Apply), so an expiry belongs to the value it was set
// for.
func testInternalNames(k *kit) {
	key := newKey()
	now := time.Now()
	k.create(key, vals("promo", `"a"`, storage.ExpiryPrefix+"promo", `1796000000000`, storage.FlashPrefix+"notice", `"hi"`),
		now, now.Add(time.Hour), 0)
	merge := func(step string, patch map[string]json.RawMessage, want map[string]json.RawMessage) {
		k.Helper()
		if _, err := k.s.Merge(k.ctx, key, patch, storage.MergeOptions{Now: now}); err != nil {
			k.Fatalf("%s: Merge: %v", step, err)
		}
		k.sameValues(step, k.load(step, key).Values, want)
	}
	merge("a write of the key", vals("promo", `"b"`),
		vals("promo", `"b"`, storage.FlashPrefix+"notice", `"hi"`))
	merge("a key and its end in one write", vals("cart", `1`, storage.ExpiryPrefix+"cart", `1796000000000`),
		vals("promo", `"b"`, "cart", `1`, storage.ExpiryPrefix+"cart", `1796000000000`, storage.FlashPrefix+"notice", `"hi"`))
	merge("deleting the key", vals("cart", `null`),
		vals("promo", `"b"`, storage.FlashPrefix+"notice", `"hi"`))
}
