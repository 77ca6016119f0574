package cookie

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/gorilla/securecookie"
)

// MinSecretLen is the shortest secret NewCodec accepts, in bytes.
const MinSecretLen = 32

// ErrInvalid is wrapped by every error Decode returns, so a caller can
// treat them all alike: a cookie that does not decode is no session.
var ErrInvalid = errors.New("invalid session cookie")

// HKDF info strings: each derived key has one purpose, so a key leaked or
// misused in one role tells nothing about the others. Changing one
// invalidates every cookie in circulation.
const (
	infoHashKey  = "caddy-session cookie v1: HMAC-SHA256 key"
	infoBlockKey = "caddy-session cookie v1: AES-256 key"
	infoRefKey   = "caddy-session cookie v1: ref key"
)

const (
	hashKeyLen  = 64 // HMAC-SHA256 block size
	blockKeyLen = 32 // AES-256
	refKeyLen   = 32
)

// secretHint tells an operator how to make a good secret.
const secretHint = "generate one with `openssl rand -base64 48`"

// Codec signs, encrypts and timestamps cookie values with a list of secrets:
// the first encodes, every one decodes.
type Codec struct {
	codecs []*securecookie.SecureCookie // one per secret, current first
	refKey []byte
}

// NewCodec returns a Codec for secrets (current first, then older ones). It
// fails when there is none, when one is shorter than MinSecretLen, or when
// two are equal; the error names the secret's position (1-based), never its
// value.
func NewCodec(secrets [][]byte) (*Codec, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("no secret: configure at least one of at least %d bytes; %s", MinSecretLen, secretHint)
	}
	for i, s := range secrets {
		if len(s) < MinSecretLen {
			return nil, fmt.Errorf("secret #%d is %d bytes; a secret must be at least %d bytes: %s", i+1, len(s), MinSecretLen, secretHint)
		}
		for j := range i {
			if bytes.Equal(s, secrets[j]) {
				return nil, fmt.Errorf("secret #%d repeats secret #%d: each secret must be different; remove the repeat", i+1, j+1)
			}
		}
	}
	// HKDF without a salt (RFC 5869 section 3.1): the secrets are long and
	// random, and the keys must depend on the secret alone so that every
	// instance and restart derives the same ones (S7).
	c := &Codec{codecs: make([]*securecookie.SecureCookie, len(secrets))}
	for i, s := range secrets {
		hashKey, err := hkdf.Key(sha256.New, s, nil, infoHashKey, hashKeyLen)
		if err != nil {
			return nil, fmt.Errorf("secret #%d: deriving keys: %w", i+1, err)
		}
		blockKey, err := hkdf.Key(sha256.New, s, nil, infoBlockKey, blockKeyLen)
		if err != nil {
			return nil, fmt.Errorf("secret #%d: deriving keys: %w", i+1, err)
		}
		c.codecs[i] = securecookie.New(hashKey, blockKey).
			SetSerializer(serializer{}).
			// Sizes are bounded by chunking (Options.Chunks), and the
			// session's deadlines live inside the value, where the
			// caller checks them with more than securecookie's
			// one-second, creation-only timestamp.
			MaxLength(0).
			MaxAge(0)
	}
	refKey, err := hkdf.Key(sha256.New, secrets[0], nil, infoRefKey, refKeyLen)
	if err != nil {
		return nil, fmt.Errorf("secret #1: deriving keys: %w", err)
	}
	c.refKey = refKey
	return c, nil
}

// Encode returns v, JSON-encoded, signed with name and audience bound into
// the MAC, encrypted and base64url-encoded, under the first secret. No
// length limit is applied: callers bound sizes themselves.
//
// The audience is the site the value belongs to (a host name, a cookie
// domain, or a name an operator chose): a value minted for one audience
// never decodes under another, so a cookie copied from one site to another
// on the same gateway and secrets is no session there.
func (c *Codec) Encode(name, audience string, v any) (string, error) {
	s, err := c.codecs[0].Encode(macName(name, audience), v)
	if err != nil {
		return "", fmt.Errorf("encoding cookie %q: %w", name, err)
	}
	return s, nil
}

// Decode verifies and decrypts value (minted for name and audience) into
// dst. stale is true when only an older secret verified it, so the caller
// re-issues it under the first. Any failure returns an error and never
// panics; a value minted for another name or audience, or by a version
// that bound no audience, fails like a tampered one.
//
// The errors wrap ErrInvalid and carry no part of the value. When the MAC
// verifies but the JSON does not fit dst, dst may be partly filled.
func (c *Codec) Decode(name, audience, value string, dst any) (stale bool, err error) {
	if c == nil || len(c.codecs) == 0 {
		return false, fmt.Errorf("%w: no codec", ErrInvalid)
	}
	mac := macName(name, audience)
	var first error
	for i, sc := range c.codecs {
		err := sc.Decode(mac, value, dst)
		if err == nil {
			return i > 0, nil
		}
		if first == nil {
			first = err
		}
	}
	return false, fmt.Errorf("%w: %w", ErrInvalid, first)
}

// macName is the name securecookie binds into the MAC (it signs
// "name|time|value"): the cookie's name and its audience, separated by a
// byte no cookie name holds, and tagged so that a value minted before
// audiences existed (its MAC bound the bare name) never verifies.
func macName(name, audience string) string {
	return name + "\x00aud=" + audience
}

// Ref returns a short keyed hash of a session ID (16 hex characters, keyed
// by a key derived from the first secret): for logs and the
// {http.session.ref} placeholder; useless as a credential.
func (c *Codec) Ref(id string) string {
	m := hmac.New(sha256.New, c.refKey)
	_, _ = io.WriteString(m, id)
	var sum [sha256.Size]byte
	return hex.EncodeToString(m.Sum(sum[:0])[:8])
}
