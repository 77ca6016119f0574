package memory

import "crypto/sha256"

// keyBytes is a store key as the map holds it: the 32 bytes a storage.Key
// spells in hex. Half the size of the hex string, and no pointer for the
// garbage collector to follow.
type keyBytes [32]byte

// unhex maps an ASCII byte to its value as a lowercase hex digit, or 0xff.
var unhex = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c - 'a' + 10)
	}
	return t
}()

// parseKey turns a store key into keyBytes. A storage.Key (64 lowercase hex
// digits) is decoded; any other string, which a store used outside the
// handler might be given, is hashed instead. The two cannot collide short
// of a SHA-256 preimage, and uppercase hex goes the hashing way so that two
// spellings never share a session.
func parseKey(key string) (k keyBytes) {
	if len(key) == 2*len(k) {
		ok := true
		for i := range k {
			hi, lo := unhex[key[2*i]], unhex[key[2*i+1]]
			if hi > 15 || lo > 15 {
				ok = false
				break
			}
			k[i] = hi<<4 | lo
		}
		if ok {
			return k
		}
	}
	h := sha256.New()
	h.Write([]byte("caddy-session memory store key\x00"))
	h.Write([]byte(key))
	h.Sum(k[:0])
	return k
}
