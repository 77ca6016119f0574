package cookie

import (
	"encoding/base64"
	"regexp"
	"strings"
	"testing"
)

var idForm = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

func TestNewID(t *testing.T) {
	const draws = 100000
	seen := make(map[string]struct{}, draws)
	for range draws {
		id := NewID()
		if !idForm.MatchString(id) {
			t.Fatalf("NewID() = %q: want 43 base64url characters", id)
		}
		raw, err := base64.RawURLEncoding.Strict().DecodeString(id)
		if err != nil || len(raw) != 32 {
			t.Fatalf("NewID() = %q decodes to %d bytes (err %v): want 32", id, len(raw), err)
		}
		if !ValidID(id) {
			t.Fatalf("ValidID(NewID()) = false for %q", id)
		}
		if _, dup := seen[id]; dup {
			t.Fatalf("NewID() repeated %q after %d draws", id, len(seen))
		}
		seen[id] = struct{}{}
	}
}

// TestNewIDBitsVary guards against an ID with constant bytes (a broken
// source or a short read): across many draws every character position
// takes many values.
func TestNewIDBitsVary(t *testing.T) {
	var positions [IDLen]map[byte]bool
	for i := range positions {
		positions[i] = map[byte]bool{}
	}
	for range 2000 {
		id := NewID()
		for i := range len(id) {
			positions[i][id[i]] = true
		}
	}
	for i, m := range positions {
		want := 40 // of 64 symbols
		if i == IDLen-1 {
			want = 12 // of the 16 a canonical last character can be
		}
		if len(m) < want {
			t.Errorf("position %d took only %d distinct characters over 2000 IDs", i, len(m))
		}
	}
}

func TestValidID(t *testing.T) {
	good := base64.RawURLEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	tests := []struct {
		name string
		id   string
		want bool
	}{
		{"canonical", good, true},
		{"all A", strings.Repeat("A", 43), true},
		{"all underscore but last", strings.Repeat("_", 42) + "w", true},
		{"empty", "", false},
		{"42 chars", good[:42], false},
		{"44 chars", good + "A", false},
		{"padded", good + "=", false},
		{"standard alphabet plus", "+" + good[1:], false},
		{"standard alphabet slash", good[:10] + "/" + good[11:], false},
		{"space", good[:20] + " " + good[21:], false},
		{"dot", good[:20] + "." + good[21:], false},
		{"non-canonical last char", strings.Repeat("A", 42) + "B", false},
		{"non-canonical last char 2", strings.Repeat("A", 42) + "_", false},
		{"non-ASCII", strings.Repeat("A", 41) + "é", false},
		{"NUL", strings.Repeat("A", 42) + "\x00", false},
		{"hex of 32 bytes", strings.Repeat("ab", 32), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidID(tt.id); got != tt.want {
				t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
}
