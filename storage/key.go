package storage

import (
	"crypto/sha256"
	"encoding/hex"
)

// Key returns the store key of a session ID: a domain-separated SHA-256 of
// it, in hex. The ID holds 256 random bits, so the key can neither be
// reversed nor guessed, and a listing of a store yields no usable cookie.
//
// The hash is not keyed with the cookie secrets on purpose: a secret
// rotation would otherwise orphan every stored session.
func Key(id string) string {
	h := sha256.New()
	h.Write([]byte("caddy-session store key v1\x00"))
	h.Write([]byte(id))
	return hex.EncodeToString(h.Sum(nil))
}
