package cookie

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Test secrets: recognisable, so that a test can tell whether one leaked
// into an error message.
var (
	secretA = []byte("secret-A-0123456789abcdefghijklmnopqrstuvwxyz")
	secretB = []byte("secret-B-0123456789abcdefghijklmnopqrstuvwxyz")
	secretC = []byte("secret-C-0123456789abcdefghijklmnopqrstuvwxyz")
)

func mustCodec(t testing.TB, secrets ...[]byte) *Codec {
	t.Helper()
	c, err := NewCodec(secrets)
	if err != nil {
		t.Fatalf("NewCodec: %v", err)
	}
	return c
}

type testSession struct {
	ID      string         `json:"id"`
	Created int64          `json:"created"`
	Data    map[string]any `json:"data"`
}

func TestCodecRoundTrip(t *testing.T) {
	c := mustCodec(t, secretA)
	tests := []struct {
		name string
		v    any
		dst  func() any
	}{
		{"map", map[string]any{"countryCode": "CA", "n": 42.0, "ok": true, "nested": map[string]any{"a": []any{"x", 1.0}}}, func() any { return &map[string]any{} }},
		{"empty map", map[string]any{}, func() any { return &map[string]any{} }},
		{"struct", testSession{ID: NewID(), Created: 1700000000, Data: map[string]any{"cart-id": "c1"}}, func() any { return &testSession{} }},
		{"string", "just an ID", func() any { var s string; return &s }},
		{"unicode and controls", map[string]any{"v": "é\u2028<script>\x00\r\n"}, func() any { return &map[string]any{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, err := c.Encode("__session", "", tt.v)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			for i := range len(enc) {
				if !isCookieOctet(enc[i]) {
					t.Fatalf("encoded value has byte %q at %d, which a cookie cannot carry", enc[i], i)
				}
			}
			dst := tt.dst()
			stale, err := c.Decode("__session", "", enc, dst)
			if err != nil || stale {
				t.Fatalf("Decode = stale %v, err %v; want false, nil", stale, err)
			}
			got := reflect.ValueOf(dst).Elem().Interface()
			if !reflect.DeepEqual(got, tt.v) {
				t.Errorf("round trip: got %#v, want %#v", got, tt.v)
			}
		})
	}
}

// TestCodecEncrypts checks that the payload is not readable in the cookie
// (securecookie only signs unless given a block key).
func TestCodecEncrypts(t *testing.T) {
	c := mustCodec(t, secretA)
	const marker = "customer-marker-7f3a9c"
	enc, err := c.Encode("__session", "", map[string]string{"customerId": marker})
	if err != nil {
		t.Fatal(err)
	}
	outer, err := base64.URLEncoding.DecodeString(enc)
	if err != nil {
		t.Fatalf("outer base64: %v", err)
	}
	parts := bytes.SplitN(outer, []byte("|"), 3)
	if len(parts) != 3 {
		t.Fatalf("want timestamp|payload|mac, got %d parts", len(parts))
	}
	inner, err := base64.URLEncoding.DecodeString(string(parts[1]))
	if err != nil {
		t.Fatalf("inner base64: %v", err)
	}
	if bytes.Contains(inner, []byte(marker)) || bytes.Contains(inner, []byte("customerId")) {
		t.Fatalf("payload is readable in the cookie: not encrypted")
	}
	// Two encodings of one value differ (random IV): equal sessions are
	// not linkable by their cookies.
	enc2, _ := c.Encode("__session", "", map[string]string{"customerId": marker})
	if enc == enc2 {
		t.Fatalf("two encodings of the same value are equal")
	}
}

// TestCodecTamper changes every byte of an encoded value in turn: each
// change must fail, except for the ones base64 cannot see (the unused low
// bits of the last character before the padding).
func TestCodecTamper(t *testing.T) {
	c := mustCodec(t, secretA)
	enc, err := c.Encode("__session", "", map[string]any{"customerId": "c_42", "cart": "x"})
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := base64.URLEncoding.DecodeString(enc)
	failed, total := 0, 0
	for i := range len(enc) {
		for _, r := range []byte("AQgw_-9z=.%") {
			if enc[i] == r {
				continue
			}
			total++
			tampered := enc[:i] + string(r) + enc[i+1:]
			var dst map[string]any
			_, err := c.Decode("__session", "", tampered, &dst)
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Decode error %v does not wrap ErrInvalid", err)
				}
				failed++
				continue
			}
			if raw, derr := base64.URLEncoding.DecodeString(tampered); derr != nil || !bytes.Equal(raw, orig) {
				t.Fatalf("tampering byte %d (%q -> %q) still decodes", i, enc[i], r)
			}
		}
	}
	if failed < total*9/10 {
		t.Fatalf("only %d of %d tamperings failed", failed, total)
	}
	for _, v := range []string{enc[:len(enc)-1], enc[:len(enc)/2], enc[1:], enc + "A", enc + "AAAA", strings.ToUpper(enc)} {
		var dst map[string]any
		if _, err := c.Decode("__session", "", v, &dst); err == nil {
			t.Errorf("a truncated or extended value decodes (len %d of %d)", len(v), len(enc))
		}
	}
}

func TestCodecWrongName(t *testing.T) {
	c := mustCodec(t, secretA)
	enc, err := c.Encode("__session", "", map[string]any{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"__session.1", "__Session", "__Host-session", "other", "", "__session|1"} {
		var dst map[string]any
		if _, err := c.Decode(name, "", enc, &dst); err == nil {
			t.Errorf("a value minted for __session decodes under %q", name)
		}
	}
	var dst map[string]any
	if _, err := c.Decode("__session", "", enc, &dst); err != nil {
		t.Fatalf("control: %v", err)
	}
}

func TestCodecRotation(t *testing.T) {
	want := map[string]any{"customerId": "c_42"}
	encA, err := mustCodec(t, secretA).Encode("__session", "", want)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		secrets   [][]byte
		wantStale bool
		wantErr   bool
	}{
		{"same secret", [][]byte{secretA}, false, false},
		{"first of two", [][]byte{secretA, secretB}, false, false},
		{"rotated: older verifies", [][]byte{secretB, secretA}, true, false},
		{"third of three", [][]byte{secretC, secretB, secretA}, true, false},
		{"removed", [][]byte{secretB}, false, true},
		{"removed among others", [][]byte{secretC, secretB}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got map[string]any
			stale, err := mustCodec(t, tt.secrets...).Decode("__session", "", encA, &got)
			if tt.wantErr {
				if err == nil || !errors.Is(err, ErrInvalid) {
					t.Fatalf("Decode err = %v, want an ErrInvalid", err)
				}
				if stale || got != nil {
					t.Fatalf("failed Decode returned stale %v, dst %v", stale, got)
				}
				return
			}
			if err != nil || stale != tt.wantStale || !reflect.DeepEqual(got, want) {
				t.Fatalf("Decode = %v, stale %v, err %v; want %v, stale %v", got, stale, err, want, tt.wantStale)
			}
		})
	}
	// After rotation, new cookies are minted under the first secret only.
	encB, _ := mustCodec(t, secretB, secretA).Encode("__session", "", want)
	var got map[string]any
	if _, err := mustCodec(t, secretA).Decode("__session", "", encB, &got); err == nil {
		t.Fatal("a cookie minted after rotation decodes under the old secret alone")
	}
	if stale, err := mustCodec(t, secretB).Decode("__session", "", encB, &got); err != nil || stale {
		t.Fatalf("Decode under the new secret: stale %v, err %v", stale, err)
	}
}

// TestCodecStable: the same secret gives the same keys in another Codec
// (another process, after a restart): S7.
func TestCodecStable(t *testing.T) {
	enc, err := mustCodec(t, secretA).Encode("__session", "", "v")
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if _, err := mustCodec(t, secretA).Decode("__session", "", enc, &s); err != nil || s != "v" {
		t.Fatalf("Decode in a fresh Codec: %q, %v", s, err)
	}
}

// TestCodecKeyDerivationPinned builds a cookie by hand from the documented
// derivation (HKDF-SHA256, no salt, the info strings) and securecookie's
// layout. Changing the derivation would log every user out on upgrade: this
// test makes that a deliberate act. It also shows that an old timestamp
// still decodes (MaxAge(0): lifetimes are the caller's).
func TestCodecKeyDerivationPinned(t *testing.T) {
	hashKey, _ := hkdf.Key(sha256.New, secretA, nil, "caddy-session cookie v1: HMAC-SHA256 key", 64)
	blockKey, _ := hkdf.Key(sha256.New, secretA, nil, "caddy-session cookie v1: AES-256 key", 32)
	block, err := aes.NewCipher(blockKey)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := json.Marshal(map[string]any{"k": "v"})
	iv := bytes.Repeat([]byte{7}, aes.BlockSize)
	ct := make([]byte, len(plain))
	cipher.NewCTR(block, iv).XORKeyStream(ct, plain)
	payload := base64.URLEncoding.EncodeToString(append(iv, ct...))
	ts := time.Now().Add(-400 * 24 * time.Hour).Unix() // older than any MaxAge
	// The MAC binds the cookie name and the audience: "<name>\x00aud=<audience>".
	macName := "__session\x00aud=shop.example"
	signed := fmt.Sprintf("%s|%d|%s", macName, ts, payload)
	m := hmac.New(sha256.New, hashKey)
	m.Write([]byte(signed))
	value := base64.URLEncoding.EncodeToString(append([]byte(signed[len(macName+"|"):]+"|"), m.Sum(nil)...))

	var got map[string]any
	stale, err := mustCodec(t, secretA).Decode("__session", "shop.example", value, &got)
	if err != nil || stale || got["k"] != "v" {
		t.Fatalf("hand-built cookie: got %v, stale %v, err %v", got, stale, err)
	}

	refKey, _ := hkdf.Key(sha256.New, secretA, nil, "caddy-session cookie v1: ref key", 32)
	rm := hmac.New(sha256.New, refKey)
	rm.Write([]byte("some-id"))
	if want, got := hex.EncodeToString(rm.Sum(nil)[:8]), mustCodec(t, secretA).Ref("some-id"); got != want {
		t.Fatalf("Ref = %s, want %s", got, want)
	}
}

func TestNewCodecErrors(t *testing.T) {
	short := []byte("short-secret")                    // 12 bytes
	almost := []byte("almost-long-enough-secret-31by") // 30
	almost = append(almost, 'X')                       // 31
	exact := []byte("exactly-32-bytes-of-secret-here!")
	tests := []struct {
		name    string
		secrets [][]byte
		want    string // substring of the error; "" for no error
	}{
		{"nil", nil, "no secret"},
		{"empty list", [][]byte{}, "openssl rand"},
		{"empty secret", [][]byte{{}}, "secret #1 is 0 bytes"},
		{"short first", [][]byte{short}, "secret #1 is 12 bytes; a secret must be at least 32 bytes: generate one with `openssl rand -base64 48`"},
		{"short second", [][]byte{secretA, short}, "secret #2 is 12 bytes"},
		{"31 bytes", [][]byte{almost}, "secret #1 is 31 bytes"},
		{"32 bytes", [][]byte{exact}, ""},
		{"duplicate", [][]byte{secretA, secretB, secretA}, "secret #3 repeats secret #1"},
		{"duplicate adjacent", [][]byte{secretA, secretB, bytes.Clone(secretB)}, "secret #3 repeats secret #2"},
		{"three distinct", [][]byte{secretA, secretB, secretC}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewCodec(tt.secrets)
			if tt.want == "" {
				if err != nil || c == nil {
					t.Fatalf("NewCodec: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("NewCodec succeeded, want an error containing %q", tt.want)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not contain %q", msg, tt.want)
			}
			for _, s := range tt.secrets {
				if len(s) == 0 {
					continue
				}
				for _, leak := range []string{string(s), string(s[:min(len(s), 8)]), hex.EncodeToString(s), base64.StdEncoding.EncodeToString(s)} {
					if strings.Contains(msg, leak) {
						t.Errorf("error %q reveals a secret", msg)
					}
				}
			}
		})
	}
}

func TestRef(t *testing.T) {
	a := mustCodec(t, secretA)
	id := NewID()
	r := a.Ref(id)
	if len(r) != 16 || strings.Trim(r, "0123456789abcdef") != "" {
		t.Fatalf("Ref = %q, want 16 lowercase hex characters", r)
	}
	if a.Ref(id) != r || mustCodec(t, secretA, secretB).Ref(id) != r {
		t.Error("Ref is not stable for the same first secret")
	}
	if a.Ref(NewID()) == r {
		t.Error("two IDs share a Ref")
	}
	if mustCodec(t, secretB, secretA).Ref(id) == r {
		t.Error("Ref does not depend on the first secret")
	}
	if strings.Contains(id, r) {
		t.Error("Ref is part of the ID")
	}
}

func TestDecodeGarbage(t *testing.T) {
	c := mustCodec(t, secretA, secretB)
	good, _ := c.Encode("__session", "", map[string]any{"k": "v"})
	b64 := base64.URLEncoding.EncodeToString
	tests := []string{
		"",
		"=",
		"|||",
		"not base64 at all!",
		b64([]byte("")),
		b64([]byte("||")),
		b64([]byte("1|2|3")),
		b64([]byte("abc|" + b64([]byte("x")) + "|" + strings.Repeat("m", 32))),
		b64([]byte("1|" + b64(make([]byte, 16)) + "|")),
		b64([]byte("1|" + b64(make([]byte, 3)) + "|" + strings.Repeat("\x00", 32))),
		good[:20],
		strings.Repeat("A", 100000),
		strings.Repeat(good, 3),
	}
	for i, v := range tests {
		var dst map[string]any
		stale, err := c.Decode("__session", "", v, &dst)
		if err == nil || stale || !errors.Is(err, ErrInvalid) {
			t.Errorf("garbage %d: stale %v, err %v; want an ErrInvalid", i, stale, err)
		}
	}
	// Bad destinations are errors too, not panics.
	for _, dst := range []any{nil, map[string]any{}, 3, new(int)} {
		if _, err := c.Decode("__session", "", good, dst); err == nil {
			t.Errorf("Decode into %T succeeded", dst)
		}
	}
	var nilCodec *Codec
	if _, err := nilCodec.Decode("__session", "", good, new(map[string]any)); err == nil {
		t.Error("nil Codec decodes")
	}
}

func TestEncodeError(t *testing.T) {
	c := mustCodec(t, secretA)
	if _, err := c.Encode("__session", "", map[string]any{"f": func() {}}); err == nil {
		t.Error("Encode of a func succeeded")
	}
}

// S5, S41: a value minted for one audience never decodes under another,
// nor under a name/audience split of the same bytes, and a value minted
// without an audience (by a version before audiences) decodes under none.
func TestCodecAudience(t *testing.T) {
	c := mustCodec(t, secretA)
	enc, err := c.Encode("__session", "shop-a.example", map[string]any{"customerId": "c_42"})
	if err != nil {
		t.Fatal(err)
	}
	var dst map[string]any
	if _, err := c.Decode("__session", "shop-a.example", enc, &dst); err != nil {
		t.Fatalf("control: %v", err)
	}
	for _, tt := range []struct{ name, aud string }{
		{"__session", "shop-b.example"},
		{"__session", "Shop-A.example"},
		{"__session", "shop-a.example."},
		{"__session", "shop-a.example:443"},
		{"__session", ""},
		{"__session\x00aud=shop-a.example", ""},
		{"__session\x00aud=shop-a", ".example"},
	} {
		dst = nil
		if _, err := c.Decode(tt.name, tt.aud, enc, &dst); err == nil {
			t.Errorf("a value minted for audience shop-a.example decodes under name %q audience %q", tt.name, tt.aud)
		}
	}
	// A value from before audiences: securecookie over the bare name.
	sc := c.codecs[0]
	old, err := sc.Encode("__session", map[string]any{"customerId": "c_42"})
	if err != nil {
		t.Fatal(err)
	}
	for _, aud := range []string{"", "shop-a.example"} {
		if _, err := c.Decode("__session", aud, old, &dst); err == nil {
			t.Errorf("an unbound value (earlier version) decodes under audience %q", aud)
		}
	}
}
