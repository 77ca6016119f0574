package storetest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// RunIndexer runs the conformance subtests of storage.Indexer against
// stores made by newStore, which must implement it:
//
//	func TestIndexer(t *testing.T) {
//		storetest.RunIndexer(t, func(t *testing.T) storage.Store { return mystore.New(...) })
//	}
//
// Every subtest indexes a name of its own, then writes; the kit does not
// require that sessions written before Index are found (a store may or may
// not index them). The subtests, by name: Finds, ValueChanged, KeyDeleted,
// SessionDeleted, Rotated, JSONValue (values are compared as JSON values,
// not as text: see storage.IndexValue), Audience (DeleteByValue's audience
// filter and its per-audience counts), NotIndexed, Release, Many. The
// kit's own tests run each of JSONValue and Audience against a store with
// a bug planted for it.
func RunIndexer(t *testing.T, newStore func(t *testing.T) storage.Store) {
	t.Helper()
	for _, c := range indexCases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			ix, ok := s.(storage.Indexer)
			if !ok {
				t.Fatalf("%T does not implement storage.Indexer", s)
			}
			c.run(&indexKit{kit: kit{T: t, s: s, o: Options{}.withDefaults(), ctx: context.Background()}, ix: ix})
		})
	}
}

type indexKit struct {
	kit
	ix storage.Indexer
}

var indexCases = []struct {
	name string
	run  func(*indexKit)
}{
	{"Finds", testIndexFinds},
	{"ValueChanged", testIndexValueChanged},
	{"KeyDeleted", testIndexKeyDeleted},
	{"SessionDeleted", testIndexSessionDeleted},
	{"Rotated", testIndexRotated},
	{"JSONValue", testIndexJSONValue},
	{"Audience", testIndexAudience},
	{"NotIndexed", testIndexNotIndexed},
	{"Release", testIndexRelease},
	{"Many", testIndexMany},
}

// indexName returns a fresh indexed name, so that stores shared between
// subtests (one Redis) keep them apart.
func indexName() string {
	return "cust" + strings.ToLower(rand.Text()[:10])
}

// indexValue returns a fresh value as JSON text.
func indexValue() json.RawMessage {
	return json.RawMessage(`"c_` + rand.Text()[:12] + `"`)
}

// index indexes a fresh name until the test ends and returns it.
func (k *indexKit) index() string {
	name := indexName()
	release := k.ix.Index(name)
	k.Cleanup(release)
	return name
}

// write creates a session holding name = value (and another key).
func (k *indexKit) write(name string, value json.RawMessage) string {
	k.Helper()
	key := newKey()
	now := time.Now()
	k.create(key, map[string]json.RawMessage{name: value, "cart": json.RawMessage(`[1,2]`)}, now, now.Add(time.Hour), 0)
	return key
}

// merge merges patch into an existing session.
func (k *indexKit) merge(key string, patch map[string]json.RawMessage) {
	k.Helper()
	now := time.Now()
	if _, err := k.s.Merge(k.ctx, key, patch, storage.MergeOptions{Now: now, Deadline: now.Add(time.Hour)}); err != nil {
		k.Fatalf("Merge into an existing session: %v", err)
	}
}

// deleteBy runs DeleteByValue for every audience and checks how many it
// reports.
func (k *indexKit) deleteBy(step, name string, value json.RawMessage, want int) {
	k.Helper()
	var w map[string]int
	if want > 0 {
		w = map[string]int{"": want}
	}
	k.deleteByAudience(step, name, value, "", w)
}

// deleteByAudience runs DeleteByValue with an audience filter and checks
// the counts it reports per audience (want nil or empty: none deleted).
func (k *indexKit) deleteByAudience(step, name string, value json.RawMessage, audience string, want map[string]int) {
	k.Helper()
	got, err := k.ix.DeleteByValue(k.ctx, name, value, audience)
	if err != nil {
		k.Fatalf("%s: DeleteByValue(%s, audience %q): %v", step, value, audience, err)
	}
	if got == nil {
		k.Fatalf("%s: DeleteByValue(%s, audience %q) returned a nil map, want an empty one when it deleted nothing", step, value, audience)
	}
	if len(want) == 0 {
		want = map[string]int{}
	}
	if !maps.Equal(got, want) {
		k.Fatalf("%s: DeleteByValue(%s, audience %q) deleted %v sessions by audience, want %v (audiences with no deletion are left out)",
			step, value, audience, got, want)
	}
}

func testIndexFinds(k *indexKit) {
	name := k.index()
	a, b := indexValue(), indexValue()
	var as, bs []string
	for range 5 {
		as = append(as, k.write(name, a))
	}
	for range 3 {
		bs = append(bs, k.write(name, b))
	}
	other := newKey()
	now := time.Now()
	k.create(other, vals("cart", `[3]`), now, now.Add(time.Hour), 0)

	k.deleteBy("first call", name, a, 5)
	for _, key := range as {
		k.missing("a session of the deleted value", key)
	}
	for _, key := range bs {
		k.load("a session of another value", key)
	}
	k.load("a session without the name", other)
	k.deleteBy("second call", name, a, 0)
}

func testIndexValueChanged(k *indexKit) {
	name := k.index()
	a, b := indexValue(), indexValue()
	key := k.write(name, a)
	k.merge(key, map[string]json.RawMessage{name: b})
	k.deleteBy("by the old value", name, a, 0)
	k.load("after a delete by its old value", key)
	k.deleteBy("by the new value", name, b, 1)
	k.missing("after a delete by its new value", key)

	// And back: a session given a value again is found again.
	key = k.write(name, a)
	k.merge(key, map[string]json.RawMessage{name: b})
	k.merge(key, map[string]json.RawMessage{name: a})
	k.deleteBy("by a value set twice", name, a, 1)
}

func testIndexKeyDeleted(k *indexKit) {
	name := k.index()
	a := indexValue()
	key := k.write(name, a)
	k.merge(key, map[string]json.RawMessage{name: nil})
	k.deleteBy("after the key was deleted", name, a, 0)
	k.load("a session whose indexed key was deleted", key)
}

func testIndexSessionDeleted(k *indexKit) {
	name := k.index()
	a := indexValue()
	key := k.write(name, a)
	keep := k.write(name, a)
	if err := k.s.Delete(k.ctx, key); err != nil {
		k.Fatalf("Delete: %v", err)
	}
	k.deleteBy("after one session was deleted", name, a, 1)
	k.missing("the other session", keep)
}

func testIndexRotated(k *indexKit) {
	name := k.index()
	a := indexValue()
	old := k.write(name, a)
	newK := newKey()
	if err := k.s.Rotate(k.ctx, old, newK); err != nil {
		k.Fatalf("Rotate: %v", err)
	}
	k.deleteBy("after a rotation", name, a, 1)
	k.missing("the rotated session", newK)
	k.missing("the old key", old)
}

// Values are compared as JSON values, not as the text a client sent: a
// PHP json_encode escapes "/" as "\/" and non-ASCII as "\u00fc", another
// encoder writes 1e2 for 100. All are found by any spelling of their
// value. The string "42" and the number 42 are different values.
func testIndexJSONValue(k *indexKit) {
	name := k.index()
	found := []struct{ stored, asked string }{
		{`"gid:\/\/shopify\/Customer\/7001"`, `"gid://shopify/Customer/7001"`},
		{`"gid://shopify/Customer/7002"`, `"gid:\/\/shopify\/Customer\/7002"`},
		{`"M\u00fcller"`, `"Müller"`},
		{`"Schr\u00f6der"`, `"Schr\u00F6der"`},
		{`1e2`, `100`},
		{`250`, `2.5E+2`},
		{`{"id":7,"shop":"a"}`, `{ "shop" : "a", "id" : 7.0 }`},
	}
	for _, c := range found {
		key := k.write(name, json.RawMessage(c.stored))
		k.deleteBy(fmt.Sprintf("%s stored, %s asked", c.stored, c.asked), name, json.RawMessage(c.asked), 1)
		k.missing(fmt.Sprintf("the session holding %s after a delete by %s", c.stored, c.asked), key)
	}

	num := k.write(name, json.RawMessage(`42`))
	str := k.write(name, json.RawMessage(`"42"`))
	k.deleteBy("the number 42", name, json.RawMessage(`42`), 1)
	k.missing("the number's session", num)
	k.load("the string's session after a delete by the number", str)
	k.deleteBy("the string \"42\"", name, json.RawMessage(`"42"`), 1)
	k.missing("the string's session", str)

	if _, err := k.ix.DeleteByValue(k.ctx, name, json.RawMessage(`{"a":`), ""); err == nil {
		k.Fatalf("DeleteByValue of a value that is not JSON: no error; want one saying so")
	}
}

// DeleteByValue with an audience deletes only that audience's sessions;
// without one, every audience's, counted per audience.
func testIndexAudience(k *indexKit) {
	name := k.index()
	a := indexValue()
	writeFor := func(audience string) string {
		k.Helper()
		key := newKey()
		now := time.Now()
		rec, err := k.s.Merge(k.ctx, key, map[string]json.RawMessage{name: a}, storage.MergeOptions{
			Create: true, Now: now, Deadline: now.Add(time.Hour), Audience: audience,
		})
		if err != nil {
			k.Fatalf("Merge(Create=true, Audience %q): %v", audience, err)
		}
		if rec.Audience != audience {
			k.Fatalf("Merge(Create=true, Audience %q) returned a record of audience %q", audience, rec.Audience)
		}
		return key
	}
	shopA := writeFor("a.example")
	shopB := writeFor("b.example")
	shopB2 := writeFor("b.example")
	none := writeFor("")

	k.deleteByAudience("audience a.example", name, a, "a.example", map[string]int{"a.example": 1})
	k.missing("a.example's session", shopA)
	k.load("b.example's session after a delete for a.example", shopB)
	k.load("the session without an audience after a delete for a.example", none)
	k.deleteByAudience("audience a.example again", name, a, "a.example", nil)
	k.deleteByAudience("an audience no session has", name, a, "c.example", nil)

	k.deleteByAudience("every audience", name, a, "", map[string]int{"b.example": 2, "": 1})
	for _, key := range []string{shopB, shopB2, none} {
		k.missing("after a delete for every audience", key)
	}
}

func testIndexNotIndexed(k *indexKit) {
	_, err := k.ix.DeleteByValue(k.ctx, indexName(), indexValue(), "")
	if !errors.Is(err, storage.ErrNotIndexed) {
		k.Fatalf("DeleteByValue of a name never indexed: %v, want an error wrapping storage.ErrNotIndexed", err)
	}
}

// The index of a name indexed twice outlives the first release.
func testIndexRelease(k *indexKit) {
	name := indexName()
	r1 := k.ix.Index(name)
	r2 := k.ix.Index(name)
	a := indexValue()
	k.write(name, a)
	r1()
	r1() // twice: no effect
	k.deleteBy("after one of two releases", name, a, 1)
	r2()
	if _, err := k.ix.DeleteByValue(k.ctx, name, a, ""); !errors.Is(err, storage.ErrNotIndexed) {
		k.Fatalf("DeleteByValue after the last release: %v, want an error wrapping storage.ErrNotIndexed", err)
	}
}

// Many sessions written at once: all of one value go, none of another.
func testIndexMany(k *indexKit) {
	name := k.index()
	a, b := indexValue(), indexValue()
	var mu sync.Mutex
	keys := map[string]json.RawMessage{}
	var wg sync.WaitGroup
	for i := range 70 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := a
			if i%7 < 2 {
				v = b // 20 of 70
			}
			key := newKey()
			now := time.Now()
			_, err := k.s.Merge(k.ctx, key, map[string]json.RawMessage{name: v}, storage.MergeOptions{
				Create: true, Now: now, Deadline: now.Add(time.Hour),
			})
			if err != nil {
				k.Errorf("Merge: %v", err)
				return
			}
			mu.Lock()
			keys[key] = v
			mu.Unlock()
		}()
	}
	wg.Wait()
	if k.Failed() {
		return
	}
	k.deleteBy("50 sessions of one value", name, a, 50)
	for key, v := range keys {
		step := fmt.Sprintf("a session of value %s", v)
		if string(v) == string(a) {
			k.missing(step, key)
		} else {
			k.load(step, key)
		}
	}
}
