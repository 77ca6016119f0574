package redis

import (
	"encoding/json"
	"errors"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// topologies are the servers the state tests run on: a standalone server
// (with the local read cache) and a Cluster (Rotate in two steps).
var topologies = map[string]func(t *testing.T) Config{
	"standalone": func(t *testing.T) Config { return Config{Addresses: []string{standalone(t).Addr()}} },
	"cluster":    func(t *testing.T) Config { return Config{Addresses: addrs(cluster(t))} },
}

// Audience is set when a session is created, kept by every later merge
// (whatever the merge's own Audience), and moved by Rotate with the New
// state, in one script or in two steps.
func TestAudienceAndNewKept(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	for name, topo := range topologies {
		t.Run(name, func(t *testing.T) {
			s := newStore(t, topo(t))
			ctx := t.Context()
			now := time.Now()
			key, next := storage.Key(t.Name()+"1"), storage.Key(t.Name()+"2")
			rec, err := s.Merge(ctx, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)},
				storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), Audience: "shop.example.com", NewTTL: time.Minute})
			if err != nil || rec.Audience != "shop.example.com" || !rec.New {
				t.Fatalf("created %+v, %v; want the audience, New", rec, err)
			}
			rec, err = s.Merge(ctx, key, map[string]json.RawMessage{"b": json.RawMessage(`2`)},
				storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), Audience: "other.example", NewTTL: time.Minute})
			if err != nil || rec.Audience != "shop.example.com" || !rec.New {
				t.Fatalf("merged %+v, %v; want the stored audience, still New", rec, err)
			}
			if err := s.Rotate(ctx, key, next); err != nil {
				t.Fatal(err)
			}
			rec, err = s.Load(ctx, next)
			if err != nil || rec.Audience != "shop.example.com" || !rec.New || len(rec.Values) != 2 {
				t.Fatalf("after Rotate: %+v, %v; want audience, New and both values", rec, err)
			}
			if pttl := s.client.PTTL(ctx, s.prefix+next).Val(); pttl <= 0 || pttl > time.Minute {
				t.Fatalf("rotated New session's TTL %s; want at most the new-session TTL", pttl)
			}
			// Confirmed, it stays confirmed through another Rotate.
			if err := s.Confirm(ctx, next, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if err := s.Rotate(ctx, next, storage.Key(t.Name()+"3")); err != nil {
				t.Fatal(err)
			}
			rec, err = s.Load(ctx, storage.Key(t.Name()+"3"))
			if err != nil || rec.Audience != "shop.example.com" || rec.New {
				t.Fatalf("after Confirm and Rotate: %+v, %v; want the audience, confirmed", rec, err)
			}
		})
	}
}

// New sessions: created New with an expiry, and a key TTL, of at most
// Created + NewTTL; an unconfirmed merge or a Touch never moves it past
// that; Confirm (or a merge with Confirm) clears New and extends the
// expiry and the TTL; Confirm never creates.
func TestNewSessions(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	s := newStore(t, Config{Addresses: []string{standalone(t).Addr()}, LocalCache: -1})
	ctx := t.Context()
	const newTTL = 10 * time.Minute
	// An odd nanosecond: the scripts add NewTTL to Created exactly.
	created := time.Now().Add(-time.Second).Truncate(time.Second).Add(123456789) // in the past: the TTL checks compare with now
	deadline := created.Add(24 * time.Hour)
	opts := func(now time.Time, confirm bool) storage.MergeOptions {
		return storage.MergeOptions{Create: true, Now: now, Deadline: deadline,
			IdleTimeout: time.Hour, NewTTL: newTTL, Confirm: confirm}
	}
	patch := func(v string) map[string]json.RawMessage { return map[string]json.RawMessage{"a": json.RawMessage(v)} }
	key := storage.Key(t.Name())
	pttl := func() time.Duration { return s.client.PTTL(ctx, s.prefix+key).Val() }
	check := func(step string, rec *storage.Record, wantNew bool, wantExpires time.Time) {
		t.Helper()
		if rec.New != wantNew || !rec.Expires.Equal(wantExpires) {
			t.Fatalf("%s: New %v, Expires created%+v; want %v, created%+v", step, rec.New, rec.Expires.Sub(created), wantNew, wantExpires.Sub(created))
		}
		got, err := s.Load(ctx, key)
		if err != nil || got.New != wantNew || !got.Expires.Equal(wantExpires) {
			t.Fatalf("%s: Load = %+v, %v", step, got, err)
		}
	}

	rec, err := s.Merge(ctx, key, patch(`1`), opts(created, false))
	if err != nil {
		t.Fatal(err)
	}
	check("created", rec, true, created.Add(newTTL))
	if p := pttl(); p <= 0 || p > newTTL {
		t.Fatalf("a New session's key TTL is %s; want at most NewTTL (%s), not max_age", p, newTTL)
	}
	if v := s.client.HGet(ctx, s.prefix+key, fieldNew).Val(); v != nanos(created.Add(newTTL)) {
		t.Fatalf("field new = %q, want %q", v, nanos(created.Add(newTTL)))
	}

	rec, err = s.Merge(ctx, key, patch(`2`), opts(created.Add(time.Minute), false))
	if err != nil {
		t.Fatal(err)
	}
	check("unconfirmed merge", rec, true, created.Add(newTTL))
	// Without NewTTL in the options (new_session_ttl turned off by a
	// reload), the end stored with the session still holds.
	o := opts(created.Add(2*time.Minute), false)
	o.NewTTL = 0
	if rec, err = s.Merge(ctx, key, patch(`3`), o); err != nil {
		t.Fatal(err)
	}
	check("unconfirmed merge without NewTTL", rec, true, created.Add(newTTL))
	// A shorter NewTTL than the session was created with: the shorter.
	o = opts(created.Add(2*time.Minute), false)
	o.NewTTL = 5 * time.Minute
	if rec, err = s.Merge(ctx, key, patch(`3`), o); err != nil {
		t.Fatal(err)
	}
	check("unconfirmed merge with a shorter NewTTL", rec, true, created.Add(5*time.Minute))

	if err := s.Touch(ctx, key, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	rec, _ = s.Load(ctx, key)
	check("touch", rec, true, created.Add(5*time.Minute))
	if p := pttl(); p > 5*time.Minute {
		t.Fatalf("Touch extended a New session's TTL to %s", p)
	}

	confirmed := time.Now().Add(time.Hour)
	if err := s.Confirm(ctx, key, confirmed); err != nil {
		t.Fatal(err)
	}
	rec, _ = s.Load(ctx, key)
	check("confirmed", rec, false, time.Unix(0, confirmed.UnixNano()))
	if string(rec.Values["a"]) != `3` {
		t.Fatalf("Confirm changed the values: %s", rec.Values)
	}
	if p := pttl(); p <= newTTL {
		t.Fatalf("a confirmed session's TTL is %s; want its confirmed expiry (about an hour)", p)
	}
	if s.client.HExists(ctx, s.prefix+key, fieldNew).Val() {
		t.Fatal("Confirm left the new field")
	}
	// A second Confirm only moves the expiry, never past the deadline.
	if err := s.Confirm(ctx, key, deadline.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	rec, _ = s.Load(ctx, key)
	check("confirmed twice", rec, false, deadline)

	// A merge with Confirm into a New session confirms it.
	key2 := storage.Key(t.Name() + "2")
	if _, err := s.Merge(ctx, key2, patch(`1`), opts(time.Now(), false)); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rec, err = s.Merge(ctx, key2, patch(`2`), opts(now, true))
	if err != nil || rec.New || !rec.Expires.Equal(time.Unix(0, now.Add(time.Hour).UnixNano())) {
		t.Fatalf("merge with Confirm: %+v, %v; want confirmed, idle expiry", rec, err)
	}
	if p := s.client.PTTL(ctx, s.prefix+key2).Val(); p <= newTTL {
		t.Fatalf("confirmed by a merge, TTL %s; want about an hour", p)
	}

	// Confirm never creates.
	missing := storage.Key(t.Name() + "missing")
	if err := s.Confirm(ctx, missing, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := s.client.Exists(ctx, s.prefix+missing).Val(); n != 0 {
		t.Fatal("Confirm of a missing session created a key")
	}
	// Without NewTTL, sessions are created confirmed, with no new field.
	o = opts(time.Now(), false)
	o.NewTTL = 0
	plain := storage.Key(t.Name() + "plain")
	if rec, err = s.Merge(ctx, plain, patch(`1`), o); err != nil || rec.New {
		t.Fatalf("created without NewTTL: %+v, %v; want confirmed", rec, err)
	}
	if s.client.HExists(ctx, s.prefix+plain, fieldNew).Val() || s.client.HExists(ctx, s.prefix+plain, fieldAudience).Val() {
		t.Fatal("a confirmed session without audience has a new or aud field")
	}
}

// A New session that is never confirmed leaves Redis at its new-session
// end.
func TestNewSessionExpires(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	s := newStore(t, Config{Addresses: []string{standalone(t).Addr()}})
	ctx := t.Context()
	key := storage.Key(t.Name())
	now := time.Now()
	if _, err := s.Merge(ctx, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)},
		storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), NewTTL: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	if _, err := s.Load(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Load after NewTTL: %v, want ErrNotFound", err)
	}
	if n := s.client.Exists(ctx, s.prefix+key).Val(); n != 0 {
		t.Fatal("the key of an unconfirmed session outlived its new-session TTL")
	}
}

// A hash written before aud and new existed reads as a confirmed session
// of no audience, and is counted as one.
func TestOldHashReadable(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	s := newStore(t, Config{Addresses: []string{standalone(t).Addr()}, LocalCache: -1})
	ctx := t.Context()
	key := storage.Key(t.Name())
	now := time.Now()
	if err := s.client.HSet(ctx, s.prefix+key, fieldCreated, nanos(now), fieldDeadline, nanos(now.Add(time.Hour)),
		fieldExpires, nanos(now.Add(time.Hour)), "v:customerId", `"c_42"`).Err(); err != nil {
		t.Fatal(err)
	}
	s.client.PExpire(ctx, s.prefix+key, time.Hour)
	rec, err := s.Load(ctx, key)
	if err != nil || rec.New || rec.Audience != "" || string(rec.Values["customerId"]) != `"c_42"` {
		t.Fatalf("old hash read as %+v, %v", rec, err)
	}
	rec, err = s.Merge(ctx, key, map[string]json.RawMessage{"b": json.RawMessage(`1`)},
		storage.MergeOptions{Now: time.Now(), NewTTL: time.Minute, Audience: "x"})
	if err != nil || rec.New || rec.Audience != "" || len(rec.Values) != 2 {
		t.Fatalf("merge into an old hash: %+v, %v; want confirmed, no audience", rec, err)
	}
	if c, err := s.Count(ctx); err != nil || c != (storage.Counts{Confirmed: 1}) {
		t.Fatalf("Count = %+v, %v; want one confirmed", c, err)
	}
}

// The local cache stays coherent across Confirm: the next Load of this
// process sees the session confirmed, with no wait.
func TestCacheConfirm(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	s := newStore(t, Config{Addresses: []string{standalone(t).Addr()}})
	ctx := t.Context()
	key := storage.Key(t.Name())
	now := time.Now()
	if _, err := s.Merge(ctx, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)},
		storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), NewTTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if rec := warm(t, s, key); !rec.New {
		t.Fatal("created New, cached as confirmed")
	}
	if err := s.Confirm(ctx, key, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if cachedKey(s, key) {
		t.Fatal("Confirm left the session in the local cache")
	}
	rec, err := s.Load(ctx, key)
	if err != nil || rec.New || rec.Expires.Sub(now) < 50*time.Minute {
		t.Fatalf("Load after Confirm = %+v, %v; want confirmed, an hour's expiry", rec, err)
	}
}

// Count tells New sessions from confirmed ones, and counts neither a
// rotation's tombstone nor an index set.
func TestCountNewAndConfirmed(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	for name, topo := range topologies {
		t.Run(name, func(t *testing.T) {
			s := newStore(t, topo(t))
			defer s.Index("customerId")()
			ctx := t.Context()
			now := time.Now()
			for i := range 30 {
				var newTTL time.Duration
				if i%3 == 0 {
					newTTL = time.Minute
				}
				key := storage.Key(t.Name() + strconv.Itoa(i))
				if _, err := s.Merge(ctx, key, map[string]json.RawMessage{"customerId": json.RawMessage(`"c_1"`)},
					storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), NewTTL: newTTL}); err != nil {
					t.Fatal(err)
				}
				switch i {
				case 0:
					if err := s.Confirm(ctx, key, now.Add(time.Hour)); err != nil {
						t.Fatal(err)
					}
				case 1, 3: // one confirmed, one New: their tombstones stay a few seconds
					if err := s.Rotate(ctx, key, storage.Key(t.Name()+"rotated"+strconv.Itoa(i))); err != nil {
						t.Fatal(err)
					}
				}
			}
			if c, err := s.Count(ctx); err != nil || c != (storage.Counts{New: 9, Confirmed: 21}) {
				t.Fatalf("Count = %+v, %v; want 9 new, 21 confirmed", c, err)
			}
		})
	}
}

// DeleteByValue compares JSON values, not text, and filters by audience.
func TestDeleteByJSONValue(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	for name, topo := range topologies {
		t.Run(name, func(t *testing.T) {
			s := newStore(t, topo(t))
			defer s.Index("customerId")()
			ctx := t.Context()
			now := time.Now()
			i := 0
			write := func(raw, audience string) string {
				t.Helper()
				i++
				key := storage.Key(t.Name() + strconv.Itoa(i))
				if _, err := s.Merge(ctx, key, map[string]json.RawMessage{"customerId": json.RawMessage(raw)},
					storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), Audience: audience}); err != nil {
					t.Fatal(err)
				}
				return key
			}
			del := func(value, audience string, want map[string]int) {
				t.Helper()
				got, err := s.DeleteByValue(ctx, "customerId", json.RawMessage(value), audience)
				if err != nil || got == nil || !maps.Equal(got, want) {
					t.Fatalf("DeleteByValue(%s, %q) = %v, %v; want %v", value, audience, got, err, want)
				}
			}
			php := write(`"gid:\/\/shopify\/Customer\/7001"`, "a.example") // PHP's json_encode
			write(`"gid://shopify/Customer/7001"`, "b.example")
			write(`"gid://shopify/Customer/7001"`, "")
			write(`"M\u00fcller"`, "a.example")
			write(`1e2`, "a.example")
			num := write(`42`, "a.example")
			write(`"42"`, "a.example")
			// A session rotated keeps its index entry, under its new key.
			moved := storage.Key(t.Name() + "moved")
			if err := s.Rotate(ctx, php, moved); err != nil {
				t.Fatal(err)
			}

			del(`"gid://shopify/Customer/7001"`, "a.example", map[string]int{"a.example": 1})
			if _, err := s.Load(ctx, moved); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("the rotated PHP-encoded session survived: %v", err)
			}
			del(`"gid:\/\/shopify\/Customer\/7001"`, "", map[string]int{"b.example": 1, "": 1})
			del(`"gid://shopify/Customer/7001"`, "", map[string]int{})
			del(`"Müller"`, "b.example", map[string]int{})
			del(`"Müller"`, "a.example", map[string]int{"a.example": 1})
			del(`100.0`, "", map[string]int{"a.example": 1})
			del(`"42"`, "", map[string]int{"a.example": 1})
			if _, err := s.Load(ctx, num); err != nil {
				t.Fatalf("the number 42 went with the string \"42\": %v", err)
			}
			del(` 42 `, "", map[string]int{"a.example": 1})

			if _, err := s.DeleteByValue(ctx, "customerId", json.RawMessage(`{"a":`), ""); err == nil || !strings.Contains(err.Error(), "JSON") {
				t.Fatalf("DeleteByValue of invalid JSON: %v, want an error saying so", err)
			}
			if c, err := s.Count(ctx); err != nil || c.Total() != 0 {
				t.Fatalf("left %+v, %v; want none", c, err)
			}
		})
	}
}

// A session whose value was rewritten in another encoding between
// DeleteByValue's read and its delete is left alone (the delete checks
// the text it read); one indexed by an earlier version, under the set
// named after its text, is still found with that text.
func TestDeleteByValueChecks(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	s := newStore(t, Config{Addresses: []string{standalone(t).Addr()}})
	defer s.Index("customerId")()
	ctx := t.Context()
	key := storage.Key(t.Name())
	now := time.Now()
	if _, err := s.Merge(ctx, key, map[string]json.RawMessage{"customerId": json.RawMessage(`"c_\u0031"`)},
		storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	field := valuePrefix + "customerId"
	// The text read was "c_\u0031"; the session now holds "c_1".
	s.client.HSet(ctx, s.prefix+key, field, `"c_1"`)
	if n, err := deleteIfScript.Run(ctx, s.client, []string{s.prefix + key}, field, `"c_\u0031"`, "").Int(); err != nil || n != 0 {
		t.Fatalf("deleteIfScript with outdated text = %d, %v; want 0", n, err)
	}
	if n, err := deleteIfScript.Run(ctx, s.client, []string{s.prefix + key}, field, `"c_1"`, "other").Int(); err != nil || n != 0 {
		t.Fatalf("deleteIfScript with another audience = %d, %v; want 0", n, err)
	}
	if _, err := s.Load(ctx, key); err != nil {
		t.Fatalf("the session went: %v", err)
	}

	// An earlier version's set: named after the text, not the canonical form.
	old := storage.Key(t.Name() + "old")
	raw := `"gid:\/\/x"`
	s.client.HSet(ctx, s.prefix+old, fieldCreated, nanos(now), fieldDeadline, nanos(now.Add(time.Hour)),
		fieldExpires, nanos(now.Add(time.Hour)), field, raw)
	s.client.PExpire(ctx, s.prefix+old, time.Hour)
	if err := indexScript.Run(ctx, s.client, []string{s.indexKey("customerId", []byte(raw))},
		old, strconv.FormatInt(now.Add(time.Hour).UnixMilli(), 10), strconv.FormatInt(now.UnixMilli(), 10)).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := s.DeleteByValue(ctx, "customerId", json.RawMessage(raw), "")
	if err != nil || !maps.Equal(got, map[string]int{"": 1}) {
		t.Fatalf("DeleteByValue of a session in an earlier version's set = %v, %v; want one", got, err)
	}
}
