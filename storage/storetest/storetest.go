// Package storetest is the conformance kit for storage.Store: one call runs
// every behaviour the handler relies on against a store, ours or a third
// party's.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storage.Store {
//			s := mystore.New(...)
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The subtests, by name (stable, for -run and -skip): LoadMissing,
// MergeMissingWithoutCreate, MergeCreate, MergeSemantics, MergeRejected,
// Isolation, Touch, Delete, Rotate, RotationGrace, Versions, InternalNames,
// LargeValue, ManySessions,
// ConcurrentMerge, ConcurrentCreate, ExclusiveCreate, NoResurrectionAfterDelete,
// NoResurrectionAfterRotate, Audience, NewSession, Confirm, Counts,
// ExpiryIdle, ExpiryDeadline, ExpiryExtended, SetDeadline,
// NewSessionExpires. The kit's
// own tests run each against a store with a bug planted for it, to show
// that it fails.
//
// Optional interfaces: the New state (Record.New, MergeOptions.NewTTL and
// Confirm) is required, with storage.Confirmer: NewSession, Confirm and
// NewSessionExpires fail for a store that does not implement it, unless
// Options.NoNewState says the store deliberately keeps none (then
// NewSession checks that New stays false, and the other two skip). Counts
// runs when the store implements storage.Counter and skips otherwise.
// RunIndexer is the kit of storage.Indexer.
//
// Values are compared as JSON, by meaning: a store may re-encode them. The
// kit changes the maps it gets back from a store, never the bytes of a
// value, which a store may share with its own copy.
//
// newStore is called once per subtest, so each subtest may get a fresh store;
// a store backed by a shared server may also return the same one, since the
// kit only ever uses fresh random keys. The kit waits for real time to pass in
// its expiry subtests (a few seconds, run in parallel), so run it with the
// store's real clock. Run it with -race: several subtests race goroutines
// against each other on purpose.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// Options tune the kit to a store. The zero value suits a store that keeps
// times to the millisecond or better and shares the test's clock.
type Options struct {
	// Precision is the coarsest time step the store keeps: a time read back
	// may differ from the one written by up to this much. Default 1ms
	// (Redis keeps expiries in milliseconds). It also stretches the expiry
	// subtests, which wait at least 4 × Precision and never less than 1s.
	Precision time.Duration

	// ExpiryGrace is how long after a record's expiry the kit waits before
	// it requires Load to miss the record. It absorbs clock skew between the
	// test and a store on another host, nothing else: the contract is that
	// a record is never served past its Expires. Default 50ms.
	ExpiryGrace time.Duration

	// Sessions is how many sessions the ManySessions subtest writes.
	// Default 1000.
	Sessions int

	// Goroutines is how many goroutines the concurrency subtests race.
	// Default 20.
	Goroutines int

	// Rounds is how many times the NoResurrection subtests repeat their
	// race (each round is short). Default 20.
	Rounds int

	// NoNewState declares a store that keeps no New state (Record.New
	// always false, no storage.Confirmer): NewSession then checks that
	// New stays false, Confirm and NewSessionExpires skip. Leave it unset
	// for a store that is to hold sessions created by a handler with
	// new_session_ttl (every built-in store): without the New state, a
	// flood of single-use sessions cannot be told from real ones.
	NoNewState bool
}

func (o Options) withDefaults() Options {
	if o.Precision <= 0 {
		o.Precision = time.Millisecond
	}
	if o.ExpiryGrace <= 0 {
		o.ExpiryGrace = 50 * time.Millisecond
	}
	if o.Sessions <= 0 {
		o.Sessions = 1000
	}
	if o.Goroutines <= 0 {
		o.Goroutines = 20
	}
	if o.Rounds <= 0 {
		o.Rounds = 20
	}
	return o
}

// expiryUnit is the time scale of the expiry subtests: long enough that a
// loaded CI machine keeps the order of events, short enough to stay fast.
func (o Options) expiryUnit() time.Duration {
	if u := 4 * o.Precision; u > time.Second {
		return u
	}
	return time.Second
}

// Run runs the conformance kit with default Options.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	t.Helper()
	Options{}.Run(t, newStore)
}

// Run runs every conformance subtest against stores made by newStore (see
// the package documentation for the list). A store must keep the New
// state and implement storage.Confirmer unless o.NoNewState is set; the
// Counts subtest runs only for a storage.Counter.
func (o Options) Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	t.Helper()
	o = o.withDefaults()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.slow {
				// The expiry subtests mostly sleep: overlap them.
				t.Parallel()
			}
			s := newStore(t)
			if s == nil {
				t.Fatal("newStore returned nil")
			}
			c.run(&kit{T: t, s: s, o: o, ctx: context.Background()})
		})
	}
}

// kit is what every subtest gets: the store, the options, and helpers that
// fail the test with a message naming the step.
type kit struct {
	*testing.T
	s   storage.Store
	o   Options
	ctx context.Context
}

// cases lists the subtests in the order they run; the names are stable so a
// store's CI can -run or skip one.
var cases = []struct {
	name string
	slow bool
	run  func(*kit)
}{
	{"LoadMissing", false, testLoadMissing},
	{"MergeMissingWithoutCreate", false, testMergeMissingWithoutCreate},
	{"MergeCreate", false, testMergeCreate},
	{"MergeSemantics", false, testMergeSemantics},
	{"MergeRejected", false, testMergeRejected},
	{"Isolation", false, testIsolation},
	{"Touch", false, testTouch},
	{"Delete", false, testDelete},
	{"Rotate", false, testRotate},
	{"RotationGrace", false, testRotationGrace},
	{"Versions", false, testVersions},
	{"InternalNames", false, testInternalNames},
	{"LargeValue", false, testLargeValue},
	{"ManySessions", false, testManySessions},
	{"ConcurrentMerge", false, testConcurrentMerge},
	{"ConcurrentCreate", false, testConcurrentCreate},
	{"ExclusiveCreate", false, testExclusiveCreate},
	{"NoResurrectionAfterDelete", false, testNoResurrectionAfterDelete},
	{"NoResurrectionAfterRotate", false, testNoResurrectionAfterRotate},
	{"Audience", false, testAudience},
	{"NewSession", false, testNewSession},
	{"Confirm", false, testConfirm},
	{"Counts", false, testCounts},
	{"ExpiryIdle", true, testExpiryIdle},
	{"ExpiryDeadline", true, testExpiryDeadline},
	{"ExpiryExtended", true, testExpiryExtended},
	{"SetDeadline", true, testSetDeadline},
	{"NewSessionExpires", true, testNewSessionExpires},
}

// newKey returns a fresh store key, shaped as the handler makes them.
func newKey() string {
	return storage.Key(rand.Text())
}

// vals builds a values map from key, JSON-text pairs.
func vals(kv ...string) map[string]json.RawMessage {
	if len(kv)%2 != 0 {
		panic("storetest: vals needs key, value pairs")
	}
	m := make(map[string]json.RawMessage, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = json.RawMessage(kv[i+1])
	}
	return m
}

// create is a Merge that must create the session: it fails the test
// otherwise.
func (k *kit) create(key string, values map[string]json.RawMessage, now, deadline time.Time, idle time.Duration) *storage.Record {
	k.Helper()
	rec, err := k.s.Merge(k.ctx, key, values, storage.MergeOptions{
		Create: true, Now: now, Deadline: deadline, IdleTimeout: idle,
	})
	if err != nil {
		k.Fatalf("Merge(Create=true) of a new session: %v", err)
	}
	if rec == nil {
		k.Fatal("Merge(Create=true) returned a nil record and no error")
	}
	return rec
}

// load is a Load that must find the session.
func (k *kit) load(step, key string) *storage.Record {
	k.Helper()
	rec, err := k.s.Load(k.ctx, key)
	if err != nil {
		k.Fatalf("%s: Load: %v, want the session", step, err)
	}
	if rec == nil {
		k.Fatalf("%s: Load returned a nil record and no error", step)
	}
	return rec
}

// missing requires Load to report ErrNotFound.
func (k *kit) missing(step, key string) {
	k.Helper()
	rec, err := k.s.Load(k.ctx, key)
	if !errors.Is(err, storage.ErrNotFound) {
		k.Fatalf("%s: Load = (%s, %v), want ErrNotFound", step, describe(rec), err)
	}
}

// sameValues fails unless got holds exactly want, comparing JSON values by
// meaning (a store may re-encode them, e.g. compact them).
func (k *kit) sameValues(step string, got, want map[string]json.RawMessage) {
	k.Helper()
	if d := diffValues(got, want); d != "" {
		k.Fatalf("%s: values differ: %s", step, d)
	}
}

// sameTime fails unless got is want within the store's precision.
func (k *kit) sameTime(step, what string, got, want time.Time) {
	k.Helper()
	if d := got.Sub(want); d > k.o.Precision || d < -k.o.Precision {
		k.Fatalf("%s: %s = %s, want %s (±%s); off by %s", step, what,
			got.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano), k.o.Precision, d)
	}
}

// sameRecord compares a whole record: values and the three times.
func (k *kit) sameRecord(step string, got, want *storage.Record) {
	k.Helper()
	k.sameValues(step, got.Values, want.Values)
	k.sameTime(step, "Created", got.Created, want.Created)
	k.sameTime(step, "Deadline", got.Deadline, want.Deadline)
	k.sameTime(step, "Expires", got.Expires, want.Expires)
}

// diffValues describes how got differs from want, or returns "".
func diffValues(got, want map[string]json.RawMessage) string {
	var d []string
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			d = append(d, fmt.Sprintf("%q missing (want %s)", name, short(w)))
			continue
		}
		if !jsonEqual(g, w) {
			d = append(d, fmt.Sprintf("%q = %s, want %s", name, short(g), short(w)))
		}
	}
	for name, g := range got {
		if _, ok := want[name]; !ok {
			d = append(d, fmt.Sprintf("unexpected %q = %s", name, short(g)))
		}
	}
	sort.Strings(d)
	return strings.Join(d, "; ")
}

// jsonEqual compares two JSON texts by meaning.
func jsonEqual(a, b json.RawMessage) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return string(a) == string(b)
	}
	return reflect.DeepEqual(va, vb)
}

// short keeps failure messages readable when a value is 60 KB.
func short(v json.RawMessage) string {
	if len(v) > 80 {
		return fmt.Sprintf("%s…(%d bytes)", v[:60], len(v))
	}
	return string(v)
}

// describe prints a record for a failure message.
func describe(r *storage.Record) string {
	if r == nil {
		return "nil"
	}
	names := make([]string, 0, len(r.Values))
	for n := range r.Values {
		names = append(names, n)
	}
	sort.Strings(names)
	return fmt.Sprintf("record{keys %v, expires %s}", names, r.Expires.Format(time.RFC3339Nano))
}

// sleepUntil sleeps until t (no-op when t has passed).
func sleepUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		time.Sleep(d)
	}
}
