package cookie

import (
	"crypto/rand"
	"encoding/base64"
)

// idBytes is the entropy of a session ID: 256 bits, so IDs can neither be
// guessed nor collide (checklist S1).
const idBytes = 32

// IDLen is the length of a session ID as NewID returns it.
const IDLen = 43 // base64.RawURLEncoding.EncodedLen(idBytes)

// NewID returns a new session ID: 32 bytes from crypto/rand, encoded as
// unpadded base64url (43 characters).
func NewID() string {
	var b [idBytes]byte
	// crypto/rand.Read never fails since Go 1.24: it crashes the program
	// rather than return predictable bytes.
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ValidID reports whether s has the form NewID returns.
func ValidID(s string) bool {
	if len(s) != IDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b64Index(s[i]) < 0 {
			return false
		}
	}
	// 43 characters carry 258 bits for 256: the last character's two low
	// bits are padding and zero in a canonical encoding, so each ID has
	// exactly one spelling (stores key on the string).
	return b64Index(s[len(s)-1])&3 == 0
}

// b64Index returns the value of c in the base64url alphabet, or -1.
func b64Index(c byte) int {
	switch {
	case 'A' <= c && c <= 'Z':
		return int(c - 'A')
	case 'a' <= c && c <= 'z':
		return int(c-'a') + 26
	case '0' <= c && c <= '9':
		return int(c-'0') + 52
	case c == '-':
		return 62
	case c == '_':
		return 63
	}
	return -1
}
