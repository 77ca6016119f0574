package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestHeaderValue(t *testing.T) {
	for in, want := range map[string]string{
		`"DE"`:                  `DE`,
		`"a b"`:                 `a b`,
		`42`:                    `42`,
		`true`:                  `true`,
		`{"a":[1,2]}`:           `{"a":[1,2]}`,
		`"line\nbreak"`:         `"line\nbreak"`,
		`"cr\rlf\n"`:            `"cr\rlf\n"`,
		`"nul\u0000"`:           `"nul\u0000"`,
		`"café"`:                `"caf\u00e9"`,
		`"😀"`:                   `"\ud83d\ude00"`,
		`{"name":"Zoë"}`:        `{"name":"Zo\u00eb"}`,
		"\"del\x7f\"":           `"del\u007f"`,
		"{\"a\":\n1}":           `{"a":1}`,
		`"quote\"inside"`:       `quote"inside`,
		`"\u00e9 escaped only"`: `"\u00e9 escaped only"`,
		// S45: white space an HTTP parser would trim travels inside JSON
		// quotes, so the upstream reads the value byte for byte.
		`"DE "`:          `"DE "`,
		`" DE"`:          `" DE"`,
		`"DE\t"`:         `"DE\t"`,
		`"\u0020DE"`:     `"\u0020DE"`,
		` "DE" `:         `DE`,
		" 42\n":          `42`,
		`" "`:            `" "`,
		`"in side"`:      `in side`,
		`""`:             ``,
		`"quote\" end "`: `"quote\" end "`,
	} {
		got := HeaderValue(json.RawMessage(in))
		if got != want {
			t.Errorf("HeaderValue(%s) = %s, want %s", in, got, want)
		}
		if !printableASCII(got) {
			t.Errorf("HeaderValue(%s) = %q is not printable ASCII", in, got)
		}
	}
}

// FuzzHeaderValue: whatever a store returns, the header is printable ASCII.
func FuzzHeaderValue(f *testing.F) {
	for _, s := range []string{`"x"`, `"\r\n"`, "\"\xff\xfe\"", `{"a":"é"}`, "\x00", `"` + "\u2028" + `"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		got := HeaderValue(v)
		if !printableASCII(got) {
			t.Errorf("HeaderValue(%q) = %q", v, got)
		}
		if got != strings.Trim(got, " \t") {
			t.Errorf("HeaderValue(%q) = %q: an HTTP parser would trim it", v, got)
		}
	})
}
