package caddymodule

import (
	"strings"
	"testing"
)

func TestParsePatch(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    map[string]string
		wantErr string
	}{
		{in: `{"countryCode":"DE","cart":{"items": [1, 2]}}`, want: map[string]string{"countryCode": `"DE"`, "cart": `{"items":[1,2]}`}},
		{in: `{"a":null}`, want: map[string]string{"a": "null"}},
		{in: ` {} `, want: map[string]string{}},
		{in: `{"n": 1.50}`, want: map[string]string{"n": "1.50"}},
		{in: `[1]`, wantErr: "JSON object"},
		{in: `"s"`, wantErr: "JSON object"},
		{in: `null`, wantErr: "JSON object"},
		{in: `{"a":1`, wantErr: "not valid JSON"},
		{in: `{"a":1}{"b":2}`, wantErr: "nothing after it"},
		{in: `{"a":1,"a":2}`, wantErr: "appears twice"},
		{in: "{\"a\":\"\xff\"}", wantErr: "UTF-8"},
		{in: `{"a":` + strings.Repeat("[", 33) + strings.Repeat("]", 33) + `}`, wantErr: "deeper"},
		{in: ``, wantErr: "not valid JSON"},
	} {
		got, err := ParsePatch([]byte(tc.in))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParsePatch(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePatch(%q): %v", tc.in, err)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("ParsePatch(%q) = %v, want %v", tc.in, got, tc.want)
		}
		for k, v := range tc.want {
			if string(got[k]) != v {
				t.Errorf("ParsePatch(%q)[%q] = %s, want %s", tc.in, k, got[k], v)
			}
		}
	}
}

// FuzzParsePatch: the API body and X-Session-Set parser never panics, and
// what it accepts is an object of compact, valid JSON values.
func FuzzParsePatch(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":{"b":[null,true,"x"]}}`, `{"a":1,"a":2}`, `[]`, `{"\u0000":1}`, "{\"a\":\"\xff\"}", `{"a":[[[[[[]]]]]]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		patch, err := ParsePatch(body)
		if err != nil {
			return
		}
		for k, v := range patch {
			if depth(v) > maxDepth {
				t.Errorf("accepted %q nested %d deep", k, depth(v))
			}
			if _, err := ParsePatch([]byte(`{"k":` + string(v) + `}`)); err != nil {
				t.Errorf("accepted value %q does not parse again: %v", v, err)
			}
		}
	})
}
