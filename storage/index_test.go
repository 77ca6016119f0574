package storage

import (
	"encoding/json"
	"testing"
)

func TestIndexValueEncodingsAgree(t *testing.T) {
	groups := [][]string{
		{`"gid://shopify/Customer/7001"`, `"gid:\/\/shopify\/Customer\/7001"`, ` "gid:\u002f\u002fshopify/Customer/7001" `},
		{`"Müller"`, `"M\u00fcller"`, `"M\u00FCller"`},
		{`"<a&b>"`, `"\u003ca\u0026b\u003e"`},
		{`100`, `1e2`, `100.0`, `1.00E+2`, `100.000`},
		{`0.5`, `5e-1`, `0.50`},
		{`-0`, `0`, `0.0`},
		{`{"a":1,"b":[true,"x"]}`, `{ "b": [true, "\u0078"], "a": 1.0 }`},
		{`123456789012345678901234567890`, `1.23456789012345678901234567890e29`},
		{`1e400`, `10e399`, `0.001e403`},
		{`0.000001`, `1e-6`, `10e-7`},
		{`-12.5`, `-1.25e1`, `-125e-1`},
	}
	for _, g := range groups {
		want, err := IndexValue([]byte(g[0]))
		if err != nil {
			t.Fatalf("IndexValue(%s): %v", g[0], err)
		}
		for _, v := range g[1:] {
			got, err := IndexValue([]byte(v))
			if err != nil {
				t.Fatalf("IndexValue(%s): %v", v, err)
			}
			if string(got) != string(want) {
				t.Errorf("IndexValue(%s) = %s, IndexValue(%s) = %s: one value, two forms", v, got, g[0], want)
			}
		}
	}
}

func TestIndexValueTellsValuesApart(t *testing.T) {
	distinct := []string{`"42"`, `42`, `42.5`, `"c_42"`, `true`, `"true"`, `[42]`, `{"a":42}`,
		`123456789012345678901234567890`, `123456789012345678901234567891`, `"a/b"`, `"a\\/b"`}
	seen := map[string]string{}
	for _, v := range distinct {
		got, err := IndexValue([]byte(v))
		if err != nil {
			t.Fatalf("IndexValue(%s): %v", v, err)
		}
		if prev, dup := seen[string(got)]; dup {
			t.Errorf("IndexValue(%s) = IndexValue(%s) = %s: two values, one form", v, prev, got)
		}
		seen[string(got)] = v
	}
}

func TestIndexValueRefuses(t *testing.T) {
	for _, v := range []string{``, `null`, ` null `, `{`, `"a" "b"`, `1 2`, `nul`} {
		if got, err := IndexValue([]byte(v)); err == nil {
			t.Errorf("IndexValue(%q) = %s, want an error", v, got)
		}
	}
}

// FuzzIndexValue: any two encodings of one JSON value index alike, and the
// canonical form is a fixed point that decodes to the same value.
func FuzzIndexValue(f *testing.F) {
	for _, s := range []string{`"gid:\/\/x"`, `"\u00fc"`, `1e2`, `{"b":1,"a":[2]}`, `"<>&"`, `0.1`, `[1,"\ud83d\ude00"]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := IndexValue([]byte(s))
		if err != nil {
			return
		}
		if !json.Valid(c) {
			t.Fatalf("IndexValue(%q) = %q: not JSON", s, c)
		}
		again, err := IndexValue(c)
		if err != nil || string(again) != string(c) {
			t.Fatalf("IndexValue is not a fixed point: %q -> %q -> %q (%v)", s, c, again, err)
		}
		// Another encoding of the same value: Go's own, with HTML escaping
		// and indentation.
		var x any
		if json.Unmarshal([]byte(s), &x) != nil {
			return
		}
		other, err := json.MarshalIndent(x, "", " ")
		if err != nil {
			return
		}
		o, err := IndexValue(other)
		if err != nil {
			t.Fatalf("IndexValue(%q) (re-encoded from %q): %v", other, s, err)
		}
		// float64 re-encoding may round a number: compare only when s has
		// no number Go cannot hold exactly.
		if string(o) != string(c) && !hasNumber(s) {
			t.Fatalf("two encodings of one value index apart: %q -> %q, %q -> %q", s, c, other, o)
		}
	})
}

func hasNumber(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= '0' && c <= '9' || c == '-' {
			return true
		}
	}
	return false
}
