package storage

import (
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
)

// values builds a session's values from key, JSON text pairs.
func values(kv ...string) map[string]json.RawMessage {
	m := make(map[string]json.RawMessage, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = json.RawMessage(kv[i+1])
	}
	return m
}

// applyKept runs Apply and fails the test if it modified current.
func applyKept(t *testing.T, current, patch map[string]json.RawMessage, limits Limits) (map[string]json.RawMessage, error) {
	t.Helper()
	before := maps.Clone(current)
	out, err := Apply(current, patch, limits)
	if !maps.EqualFunc(current, before, func(a, b json.RawMessage) bool { return string(a) == string(b) }) {
		t.Fatalf("Apply modified current: %s, was %s", current, before)
	}
	return out, err
}

func TestValidKey(t *testing.T) {
	long := "k" + strings.Repeat("x", 63)
	for _, k := range []string{"a", "Z", "customerId", "customer_id", "Customer-Id", "a1", "a-b_c9", long} {
		if !ValidKey(k) {
			t.Errorf("ValidKey(%q) = false", k)
		}
	}
	for _, k := range []string{"", "1a", "_a", "-a", "a.b", "a b", "a:b", "a\x00", "ä", "aä", long + "x", "{a}"} {
		if ValidKey(k) {
			t.Errorf("ValidKey(%q) = true", k)
		}
	}
}

// TestApplyKeySyntax: every patch key is checked, deletions too, and a
// refused patch changes nothing.
func TestApplyKeySyntax(t *testing.T) {
	current := values("a", `1`)
	for _, k := range []string{"", "1a", "a.b", "a b", strings.Repeat("k", 65)} {
		for _, v := range []string{`"v"`, `null`} {
			out, err := applyKept(t, current, values(k, v), Limits{})
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != k || ke.Other != "" || out != nil {
				t.Errorf("key %q = %s: got %v, %v; want a *KeyError for it", k, v, out, err)
			}
		}
	}
}

func TestHeaderKeyAndName(t *testing.T) {
	for _, tc := range []struct{ key, headerKey, name string }{
		{"customerId", "customerid", "X-Session-customerId"},
		{"customer_id", "customer-id", "X-Session-customer-id"},
		{"Customer-Id", "customer-id", "X-Session-Customer-Id"},
		{"CUSTOMERID", "customerid", "X-Session-CUSTOMERID"},
	} {
		if got := HeaderKey(tc.key); got != tc.headerKey {
			t.Errorf("HeaderKey(%q) = %q, want %q", tc.key, got, tc.headerKey)
		}
		if got := HeaderName(tc.key); got != tc.name {
			t.Errorf("HeaderName(%q) = %q, want %q", tc.key, got, tc.name)
		}
	}
}

// TestApplyCollisions: two keys forwarded as one header (case aside, '_'
// read as '-') cannot both be in a session; keys whose headers differ can.
func TestApplyCollisions(t *testing.T) {
	for _, tc := range []struct {
		name           string
		current, patch map[string]json.RawMessage
		key, other     string // the *KeyError wanted; "" for none
	}{
		{"customerId and customer_id are two headers",
			values("customerId", `1`), values("customer_id", `2`), "", ""},
		{"customerId and customer_id and Customer-Id in one patch",
			nil, values("customerId", `1`, "customer_id", `2`, "Customer-Id", `3`), "customer_id|Customer-Id", "customer_id|Customer-Id"},
		{"customer_id then Customer-Id",
			values("customer_id", `1`), values("Customer-Id", `2`), "Customer-Id", "customer_id"},
		{"customerId then customerid",
			values("customerId", `1`), values("customerid", `2`), "customerid", "customerId"},
		{"customerId then CUSTOMERID",
			values("customerId", `1`), values("CUSTOMERID", `2`), "CUSTOMERID", "customerId"},
		{"two spellings in one patch",
			nil, values("cart_id", `1`, "Cart-Id", `2`), "cart_id|Cart-Id", "cart_id|Cart-Id"},
		{"the same key again replaces it",
			values("customer_id", `1`), values("customer_id", `2`), "", ""},
		{"a renamed spelling: delete one, set the other",
			values("customer_id", `1`), values("customer_id", `null`, "Customer-Id", `2`), "", ""},
		{"deleting a colliding spelling that is not there",
			values("customer_id", `1`), values("Customer-Id", `null`), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := applyKept(t, tc.current, tc.patch, Limits{})
			if tc.key == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ke *KeyError
			if !errors.As(err, &ke) || out != nil {
				t.Fatalf("got %s, %v; want a *KeyError", out, err)
			}
			if !strings.Contains("|"+tc.key+"|", "|"+ke.Key+"|") || !strings.Contains("|"+tc.other+"|", "|"+ke.Other+"|") || ke.Key == ke.Other {
				t.Errorf("KeyError{%q, %q}, want %s colliding with %s", ke.Key, ke.Other, tc.key, tc.other)
			}
			if !strings.Contains(err.Error(), "collides") {
				t.Errorf("message %q", err)
			}
		})
	}
}

// TestApplyNullDeletes: a JSON null or an empty value deletes a key; the
// string "null" is a value.
func TestApplyNullDeletes(t *testing.T) {
	current := values("a", `1`, "b", `"x"`, "c", `true`)
	out, err := applyKept(t, current, map[string]json.RawMessage{
		"a":      json.RawMessage(`null`),
		"b":      nil,
		"absent": json.RawMessage(`null`),
		"d":      json.RawMessage(`"null"`),
	}, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := values("c", `true`, "d", `"null"`)
	if !maps.EqualFunc(out, want, func(a, b json.RawMessage) bool { return string(a) == string(b) }) {
		t.Errorf("got %s, want %s", out, want)
	}
	if out, err := applyKept(t, values("a", `1`), values("a", `null`), Limits{}); err != nil || len(out) != 0 || out == nil {
		t.Errorf("deleting the last key: %v, %v; want an empty map", out, err)
	}
}

// TestApplyMaxKeys: the count after the merge (deletions first) is
// bounded; zero means DefaultMaxKeys.
func TestApplyMaxKeys(t *testing.T) {
	three := values("a", `1`, "b", `2`, "c", `3`)
	if _, err := applyKept(t, three, nil, Limits{MaxKeys: 3}); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	_, err := applyKept(t, three, values("d", `4`), Limits{MaxKeys: 3})
	var le *LimitError
	if !errors.As(err, &le) || le.What != "keys" || le.Limit != 3 || le.Got != 4 {
		t.Errorf("over the limit: %v, want LimitError{keys, 3, 4}", err)
	}
	if _, err := applyKept(t, three, values("a", `null`, "d", `4`), Limits{MaxKeys: 3}); err != nil {
		t.Errorf("one out, one in: %v", err)
	}
	if _, err := applyKept(t, three, values("c", `33`), Limits{MaxKeys: 3}); err != nil {
		t.Errorf("replacing a key at the limit: %v", err)
	}

	many := map[string]json.RawMessage{}
	for i := 0; i < DefaultMaxKeys; i++ {
		many["k"+strings.Repeat("x", i)] = json.RawMessage(`1`)
	}
	if _, err := applyKept(t, many, nil, Limits{}); err != nil {
		t.Errorf("DefaultMaxKeys keys: %v", err)
	}
	_, err = applyKept(t, many, values("y", `1`), Limits{})
	if !errors.As(err, &le) || le.What != "keys" || le.Limit != DefaultMaxKeys {
		t.Errorf("one over DefaultMaxKeys: %v", err)
	}
}

// TestApplyMaxSize: the size is the merged session's JSON object's length;
// zero means DefaultMaxSize.
func TestApplyMaxSize(t *testing.T) {
	current := values("a", `"xyz"`) // {"a":"xyz"}: 11 bytes
	patch := values("b", `12`)      // ,"b":12: 7 more
	if _, err := applyKept(t, current, patch, Limits{MaxSize: 18}); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	_, err := applyKept(t, current, patch, Limits{MaxSize: 17})
	var le *LimitError
	if !errors.As(err, &le) || le.What != "size" || le.Limit != 17 || le.Got != 18 {
		t.Errorf("one byte over: %v, want LimitError{size, 17, 18}", err)
	}
	if _, err := applyKept(t, current, values("a", `null`, "b", `12`), Limits{MaxSize: 8}); err != nil {
		t.Errorf("a deletion makes room: %v", err)
	}

	big := values("a", `"`+strings.Repeat("x", DefaultMaxSize-8)+`"`) // {"a":"…"}: DefaultMaxSize bytes
	if n := Size(big); n != DefaultMaxSize {
		t.Fatalf("test setup: size %d", n)
	}
	if _, err := applyKept(t, big, nil, Limits{}); err != nil {
		t.Errorf("DefaultMaxSize bytes: %v", err)
	}
	_, err = applyKept(t, big, values("b", `1`), Limits{})
	if !errors.As(err, &le) || le.What != "size" || le.Limit != DefaultMaxSize {
		t.Errorf("over DefaultMaxSize: %v", err)
	}
}

// TestSize: Size is the length of the values marshalled as one object.
func TestSize(t *testing.T) {
	for _, m := range []map[string]json.RawMessage{
		nil,
		values("a", `1`),
		values("a", `1`, "bb", `"two"`, "c", `{"x":[1,2]}`),
	} {
		enc, err := json.Marshal(m)
		if m == nil {
			enc = []byte("{}")
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := Size(m); got != len(enc) {
			t.Errorf("Size(%s) = %d, want %d", enc, got, len(enc))
		}
	}
}

// TestApplyLeavesCurrent: Apply returns a new map, on success and on every
// refusal, and never writes into current.
func TestApplyLeavesCurrent(t *testing.T) {
	current := values("a", `1`, "b", `2`)
	for _, patch := range []map[string]json.RawMessage{
		values("a", `null`, "c", `3`),
		values("A", `9`),           // collision
		values("9", `9`),           // bad key
		values("c", `3`, "d", `4`), // over MaxKeys
	} {
		out, _ := applyKept(t, current, patch, Limits{MaxKeys: 3})
		if out != nil {
			out["z"] = json.RawMessage(`0`)
			if _, ok := current["z"]; ok {
				t.Fatal("the result shares its map with current")
			}
		}
	}
}
