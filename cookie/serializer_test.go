package cookie

import (
	"testing"

	"github.com/gorilla/securecookie"
)

// serializerCases are JSON texts a *string may be decoded from: the fast
// path's (IDs), and others that must go the slow way with the same result.
var serializerCases = []string{
	"\"" + NewID() + "\"\n",
	"\"" + NewID() + "\"",
	`""`,
	`"abc_-XYZ019"`,
	`"with space"`,
	`"esc\u0041ped"`,
	`"quote\"inside"`,
	`"unterminated`,
	`unquoted`,
	`42`,
	`null`,
	`{"id":"x"}`,
	`"a" "b"`,
	"",
	`"`,
	"\n",
}

// TestSerializerMatchesJSONEncoder: for every input, the serializer decodes
// a string exactly as securecookie's JSONEncoder does (value and whether
// it fails), and encodes byte for byte the same.
func TestSerializerMatchesJSONEncoder(t *testing.T) {
	for _, src := range serializerCases {
		checkSerializer(t, []byte(src))
	}
	for _, v := range []any{NewID(), "x y", map[string]int{"a": 1}, cookieValue{ID: NewID()}} {
		a, errA := serializer{}.Serialize(v)
		b, errB := securecookie.JSONEncoder{}.Serialize(v)
		if string(a) != string(b) || (errA == nil) != (errB == nil) {
			t.Errorf("Serialize(%v) = %q, %v; JSONEncoder: %q, %v", v, a, errA, b, errB)
		}
	}
}

// cookieValue stands for a cookie store's payload: not a *string, so the
// serializer must hand it to encoding/json.
type cookieValue struct {
	ID string `json:"id"`
}

func TestSerializerStruct(t *testing.T) {
	var got cookieValue
	if err := (serializer{}).Deserialize([]byte(`{"id":"abc"}`+"\n"), &got); err != nil || got.ID != "abc" {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func checkSerializer(t *testing.T, src []byte) {
	t.Helper()
	want, got := "unchanged", "unchanged"
	errWant := securecookie.JSONEncoder{}.Deserialize(src, &want)
	errGot := serializer{}.Deserialize(src, &got)
	if got != want || (errGot == nil) != (errWant == nil) {
		t.Errorf("Deserialize(%q) = %q, %v; JSONEncoder: %q, %v", src, got, errGot, want, errWant)
	}
}

func FuzzSerializer(f *testing.F) {
	for _, src := range serializerCases {
		f.Add([]byte(src))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		checkSerializer(t, src)
	})
}
